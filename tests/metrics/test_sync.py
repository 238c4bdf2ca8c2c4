"""LSE reproduces syncnet_python's numbers (lse_seed4.npz) and fails loudly on bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.errors import InputError, MissingWeightsError
from metrics.functional.sync import lse
from metrics.sync import LipSyncError, SyncNet, load_syncnet


@pytest.mark.parametrize("k", [0, 1, 2])
def test_matches_syncnet_python(syncnet_seed4, lse_seed4, k):
    conf, dist, offset = lse_seed4[f"clip{k}_expected"]
    r = lse(lse_seed4[f"clip{k}_frames"], lse_seed4[f"clip{k}_audio"], weights=syncnet_seed4)
    assert r["offset"] == int(offset)
    assert abs(r["lse_d"] - dist) / dist < 1e-5
    assert abs(r["lse_c"] - conf) < 0.01


def test_streaming_metric_averages_clips(syncnet_seed4, lse_seed4):
    m = LipSyncError(weights=syncnet_seed4)
    for k in range(2):
        m.update(lse_seed4[f"clip{k}_frames"], lse_seed4[f"clip{k}_audio"])
    out = m.compute()
    assert out["clips"] == 2
    assert out["lse_c"] == pytest.approx(np.mean([lse_seed4[f"clip{k}_expected"][0] for k in range(2)]), abs=0.01)


def test_float_audio_equals_int16(syncnet_seed4, lse_seed4):
    a = lse_seed4["clip0_audio"]
    r_int = lse(lse_seed4["clip0_frames"], a, weights=syncnet_seed4)
    r_float = lse(lse_seed4["clip0_frames"], a.astype(np.float32) / 32768.0, weights=syncnet_seed4)
    assert r_int["offset"] == r_float["offset"] and r_float["lse_d"] == pytest.approx(r_int["lse_d"], rel=1e-5)


def test_bad_inputs(syncnet_seed4, lse_seed4, tmp_path):
    f, a = lse_seed4["clip0_frames"], lse_seed4["clip0_audio"]
    with pytest.raises(InputError, match="224, 224, 3"):
        lse(f[:, :112], a, weights=syncnet_seed4)
    with pytest.raises(InputError, match="16 kHz"):
        lse(f, a, sample_rate=22050, weights=syncnet_seed4)
    with pytest.raises(InputError, match="too short"):
        lse(f[:3], a, weights=syncnet_seed4)
    with pytest.raises(InputError, match="mono"):
        lse(f, np.stack([a, a], 1), weights=syncnet_seed4)
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
