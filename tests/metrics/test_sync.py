"""LSE reproduces syncnet_python's numbers (lse_seed4.npz) and fails loudly on bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.errors import InputError, MissingWeightsError
from metrics.functional.sync import lse
from metrics.sync import LipSyncError, SyncNet, load_syncnet


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from metrics.standin import syncnet_state_dict

    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(syncnet_state_dict(4), path)  # the seed-4 weights syncnet_python scored lse_seed4.npz with
    return path


@pytest.fixture(scope="module")
def clips(parity_dir):
    return dict(np.load(parity_dir / "lse_seed4.npz"))


@pytest.mark.parametrize("k", [0, 1, 2])
def test_matches_syncnet_python(weights, clips, k):
    conf, dist, offset = clips[f"clip{k}_expected"]
    r = lse(clips[f"clip{k}_frames"], clips[f"clip{k}_audio"], weights=weights)
    assert r["offset"] == int(offset)
    assert abs(r["lse_d"] - dist) / dist < 1e-5
    assert abs(r["lse_c"] - conf) < 0.01


def test_streaming_metric_averages_clips(weights, clips):
    m = LipSyncError(weights=weights)
    for k in range(2):
        m.update(clips[f"clip{k}_frames"], clips[f"clip{k}_audio"])
    out = m.compute()
    assert out["clips"] == 2
    assert out["lse_c"] == pytest.approx(np.mean([clips[f"clip{k}_expected"][0] for k in range(2)]), abs=0.01)


def test_float_audio_equals_int16(weights, clips):
    a = clips["clip0_audio"]
    r_int = lse(clips["clip0_frames"], a, weights=weights)
    r_float = lse(clips["clip0_frames"], a.astype(np.float32) / 32768.0, weights=weights)
    assert r_int["offset"] == r_float["offset"] and r_float["lse_d"] == pytest.approx(r_int["lse_d"], rel=1e-5)


def test_bad_inputs(weights, clips, tmp_path):
    f, a = clips["clip0_frames"], clips["clip0_audio"]
    with pytest.raises(InputError, match="224, 224, 3"):
        lse(f[:, :112], a, weights=weights)
    with pytest.raises(InputError, match="16 kHz"):
        lse(f, a, sample_rate=22050, weights=weights)
    with pytest.raises(InputError, match="too short"):
        lse(f[:3], a, weights=weights)
    with pytest.raises(InputError, match="mono"):
        lse(f, np.stack([a, a], 1), weights=weights)
    with pytest.raises(MissingWeightsError, match="syncnet_v2.model"):
        lse(f, a, weights=tmp_path / "nope.model")
    torch.save({"wrong.weight": torch.zeros(1)}, tmp_path / "wrong.model")
    with pytest.raises(InputError, match="not a syncnet_python"):
        load_syncnet(tmp_path / "wrong.model")


def test_state_dict_layout_matches_manifest(parity_dir):
    import json

    manifest = json.loads((parity_dir / "syncnet_manifest.json").read_text())
    own = {k: list(v.shape) for k, v in SyncNet().state_dict().items()}
    assert own == {k: v["shape"] for k, v in manifest.items()}
