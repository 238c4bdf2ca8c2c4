"""Bad weight files and bad configurations: each is refused with one line that says what is wrong and
what to do — missing, truncated, wrong hash, wrong architecture, pickles that would run code, unknown
variant/protocol names, and ablation switches that contradict each other."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from metrics import weights
from metrics.errors import CheckpointMismatchError, InputError, MissingWeightsError, UserError
from metrics.utils import safe_torch_load

ROOT = Path(__file__).resolve().parents[2]


def one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert msg and "\n" not in msg, msg
    return msg


# --------------------------------------------------------------------------------------------------
# Pickles that need code. The marker file proves nothing ran: a weights-only load never calls os.system.
class _RunsShell:
    marker: str = ""

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CustomModel:  # an object pickled whole (torch.save(model)) instead of its state dict
    def __init__(self):
        self.weight = torch.zeros(3)


@pytest.fixture
def evil_files(tmp_path):
    marker = tmp_path / "MARKER"
    _RunsShell.marker = str(marker)
    torch_zip = tmp_path / "evil.pt"
    torch.save({"gen": {"w": torch.zeros(1)}, "hook": _RunsShell()}, torch_zip)
    raw = tmp_path / "evil.pkl"  # a raw (non-zip) pickle, as old .pkl checkpoints are
    raw.write_bytes(pickle.dumps({"state_dict": _RunsShell()}, protocol=2))
    raw4 = tmp_path / "evil4.pkl"  # protocol 4: the weights-only unpickler stops at its first opcode
    raw4.write_bytes(pickle.dumps({"state_dict": _RunsShell()}, protocol=4))
    custom = tmp_path / "custom.pt"
    torch.save(_CustomModel(), custom)
    return marker, {"torch-zip": torch_zip, "raw-pickle": raw, "raw-pickle-4": raw4, "custom-class": custom}


def _loaders():
    from benchmarks.evaluators.api import _load_net
    from edtalk import official
    from edtalk.trained import load_trained_model
    from metrics.emotion import load_emotion_fan
    from metrics.functional.lpips import load_lpips
    from metrics.inception import load_fid_inception
    from metrics.pose import load_hopenet
    from metrics.sync import load_syncnet

    return {
        "official.load_generator": official.load_generator,
        "official.load_audio2lip": official.load_audio2lip,
        "load_trained_model": load_trained_model,
        "evaluators._load_net": lambda p: _load_net(p, "landmarks"),
        "load_hopenet": lambda p: load_hopenet(p, verify=False),
        "load_emotion_fan": lambda p: load_emotion_fan(p, verify=False),
        "load_fid_inception": lambda p: load_fid_inception(p, verify=False),
        "load_lpips": lambda p: load_lpips(p, verify=False),
        "load_syncnet": load_syncnet,
    }


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("kind", ["torch-zip", "raw-pickle", "raw-pickle-4", "custom-class"])
def test_pickles_that_need_code_are_refused_by_every_loader(evil_files, kind):
    marker, files = evil_files
    for name, load in _loaders().items():
        with pytest.raises(CheckpointMismatchError) as exc:
            load(files[kind])
        msg = one_line(exc)
        assert str(files[kind]) in msg, (name, msg)
        if kind == "raw-pickle-4":  # refused before reaching the global: reported as not a torch file
            assert "not a readable torch file" in msg and "opcode" in msg, (name, msg)
            continue
        assert "refusing" in msg and "weights_only=True" in msg and "state_dict()" in msg, (name, msg)
        refused = "_CustomModel" if kind == "custom-class" else "system"
        assert f"references {'' if kind == 'custom-class' else 'posix.'}" in msg and refused in msg, msg
    assert not marker.exists(), "a checkpoint ran code while loading"


def test_numpy_scalars_in_a_checkpoint_are_allowed(tmp_path):
    # Emotion-FAN-style training checkpoints keep the best accuracy beside the weights.
    path = tmp_path / "ck.pt"
    torch.save({"epoch": 61, "prec1": np.float64(84.3655), "state_dict": {"w": torch.ones(2)}}, path)
    obj = safe_torch_load(path, "a checkpoint")
    assert obj["prec1"] == pytest.approx(84.3655) and torch.equal(obj["state_dict"]["w"], torch.ones(2))


def test_every_torch_load_in_the_repo_is_weights_only():
    offenders = []
    for py in ROOT.rglob("*.py"):
        if ".venv" in py.parts or "site-packages" in py.parts:
            continue
        text = py.read_text(errors="replace")
        for m in re.finditer(r"torch\.load\(", text):
            call = text[m.start():text.find(")", m.end()) + 1]
            if "weights_only=True" not in call:
                offenders.append(f"{py.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not offenders, f"torch.load without weights_only=True: {offenders}"


# --------------------------------------------------------------------------------------------------
def test_missing_weight_file_names_file_place_and_command(tmp_path):
    with pytest.raises(MissingWeightsError) as exc:
        weights.locate("syncnet-v2", directory=tmp_path)
    msg = one_line(exc)
    assert "syncnet_v2.model" in msg and str(tmp_path) in msg and "edtalk weights fetch syncnet-v2" in msg
    with pytest.raises(MissingWeightsError, match="did you mean 'hopenet'"):
        weights.locate("hopnet")
    assert weights.check_file("hopenet", tmp_path / "nope.pkl") == "missing"


def test_wrong_or_truncated_hash_is_corrupt(tmp_path, monkeypatch):
    good = b"stand-in weights " * 512
    digest = hashlib.sha256(good).hexdigest()
    w = weights.MANIFEST["syncnet-v2"]
    monkeypatch.setitem(weights.MANIFEST, "syncnet-v2", dataclasses.replace(w, sha256=digest))
    path = tmp_path / w.filename
    path.write_bytes(good)
    assert weights.check_file("syncnet-v2", path) == "ok"
    assert weights.locate("syncnet-v2", directory=tmp_path) == path
    for bad in (good[: len(good) // 2], b"x" + good[1:]):  # a truncated download, a flipped byte
        path.write_bytes(bad)
        assert weights.check_file("syncnet-v2", path).startswith("corrupt: sha256")
        with pytest.raises(MissingWeightsError) as exc:
            weights.locate("syncnet-v2", directory=tmp_path)
        msg = one_line(exc)
        assert str(path) in msg and "corrupt" in msg and "delete it and download" in msg
    # torch hub's hash-prefix convention (LPIPS' AlexNet): a wrong file fails the prefix check
    lp = tmp_path / weights.MANIFEST["alexnet-lpips"].filename
    lp.write_bytes(good)
    with pytest.raises(MissingWeightsError, match="does not start with 7be5be79"):
        weights.locate("alexnet-lpips", directory=tmp_path)


def test_truncated_or_foreign_file_without_hash_is_a_readable_error(tmp_path):
    from metrics.pose import load_hopenet

    full = tmp_path / "full.pt"
    torch.save({"fc_yaw.weight": torch.zeros(66, 2048)}, full)
    files = {"truncated": full.read_bytes()[:300], "empty": b"",
             "text": b"<html>quota exceeded</html>\n" * 20}
    for name, data in files.items():
        p = tmp_path / f"{name}.pkl"
        p.write_bytes(data)
        with pytest.raises(CheckpointMismatchError) as exc:
            load_hopenet(p, verify=False)
        msg = one_line(exc)
        assert str(p) in msg and "truncated or corrupt" in msg and "download" in msg, msg


def _wrong_architecture(state: dict, drop: str, shape_of: str) -> dict:
    state = dict(state)
    state.pop(drop)
    state["extra.weight"] = torch.zeros(1)
    state[shape_of] = torch.zeros(3)
    return state


def test_wrong_architecture_lists_every_difference_generator(tmp_path):
    from edtalk import official
    from edtalk.model import EDTalk
    from edtalk.presets import model_preset

    with torch.device("meta"):  # keys and shapes only: no memory, no init
        own = EDTalk(model_preset("paper")).state_dict()
    # expanded zeros: every tensor shares one element of storage, so the file stays tiny
    state = {k: torch.zeros(()).expand(v.shape) for k, v in own.items()}
    drop, reshaped = sorted(own)[0], sorted(own)[-1]
    path = tmp_path / "EDTalk.pt"
    torch.save({"gen": _wrong_architecture(state, drop, reshaped)}, path)
    with pytest.raises(CheckpointMismatchError) as exc:
        official.load_generator(path)
    msg = one_line(exc)
    assert f"1 missing ({drop})" in msg and "1 unexpected (extra.weight)" in msg, msg
    assert f"{reshaped}: file (3,) vs model {tuple(own[reshaped].shape)}" in msg, msg
    torch.save({"generator": state}, path)
    with pytest.raises(CheckpointMismatchError, match="has no 'gen' entry"):
        official.load_generator(path)


def test_wrong_architecture_lists_every_difference_metric_loader(tmp_path):
    from metrics.pose import Hopenet, load_hopenet

    own = Hopenet().state_dict()
    path = tmp_path / "hopenet_robust_alpha1.pkl"
    bad = _wrong_architecture(own, "layer1.0.conv1.weight", "fc_yaw.bias")
    torch.save({f"module.{k}": v for k, v in bad.items()}, path)
    with pytest.raises(CheckpointMismatchError) as exc:
        load_hopenet(path, verify=False)
    msg = one_line(exc)
    assert "1 missing (layer1.0.conv1.weight)" in msg and "1 unexpected (extra.weight)" in msg, msg
    assert "fc_yaw.bias: file (3,) vs model (66,)" in msg, msg


# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("typo, meant", [
    ("no-lip-bank", "no-mouth-bank"), ("no-exp-bank", "no-expression-bank"), ("edtalk-full", "full"),
    ("no_eem", "no-eem"), ("no-orthogonal", "no-orthogonality"), ("nobanks", "no-banks")])
def test_unknown_variant_suggests_the_closest(typo, meant):
    from ablations.variants import get_variant

    with pytest.raises(InputError) as exc:
        get_variant(typo)
    assert f"did you mean {meant!r}" in one_line(exc) and "edtalk variants" in str(exc.value)


@pytest.mark.parametrize("typo, msg", [("synthetic-smok", "did you mean 'synthetic-smoke'"),
                                       ("mead", "did you mean 'mead-edtalk'"),
                                       ("hdtf_edtalk", "did you mean 'hdtf-edtalk'"),
                                       ("synthetic-smoke@2", "is at version 1, not '2'")])
def test_unknown_protocol_suggests_the_closest(typo, msg):
    from benchmarks.protocols.registry import get_protocol

    with pytest.raises(InputError) as exc:
        get_protocol(typo)
    assert msg in one_line(exc)
    assert get_protocol("synthetic-smoke@1").name == "synthetic-smoke"


def test_sweep_with_a_misspelt_name_fails_before_touching_disk(tmp_path):
    from ablations.sweep import run_sweep

    for protocol, variants, hint in (("synthetic-smoke", "full,no-lip-bank", "no-mouth-bank"),
                                     ("synthetic-smok", "full", "synthetic-smoke")):
        with pytest.raises(InputError, match=hint):
            run_sweep(protocol, variants, 1, tmp_path / "sweep", tmp_path, progress=False)
    assert not (tmp_path / "sweep").exists()


def test_cli_reports_a_misspelt_variant_in_one_line(tmp_path, capsys):
    from edtalk.cli import main

    assert main(["train", "--variant", "no-exp-bank", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "did you mean 'no-expression-bank'" in err and "\n" not in err
    assert not (tmp_path / "run" / "model.pt").exists()


CONFLICTS = [
    ({"model": {"expression_bank": "off"}}, ["eem=true", "expression_bank='off'"]),
    ({"model": {"expression": False, "eem": True}}, ["eem=true", "expression=false"]),
    ({"model": {"orthogonal": True, "mouth_bank": "direct", "pose_bank": "direct",
                "expression_bank": "direct"}},
     ["orthogonal=true", "mouth_bank='direct'", "expression_bank='direct'"]),
    ({"model": {"orthogonal": False, "mouth_bank": "direct", "pose_bank": "off", "expression_bank": "off",
                "eem": False}}, ["orthogonal=false", "pose_bank='off'"]),
    ({"model": {"mouth_bank": "off", "pose_bank": "off"}, "cross_reconstruction": False},
     ["feature_loss=true", "mouth_bank='off'", "pose_bank='off'"]),
    ({"feature_loss": True, "losses": {"feature": 0.0}}, ["feature_loss=true", "losses.feature=0"]),
    ({"model": {"orthogonal": "false"}}, ["orthogonal must be true or false", "'false'"]),
    ({"model": {"orthognal": False}}, ["unknown model field 'orthognal'", "did you mean 'orthogonal'"]),
    ({"cross_reconstrucion": False},
     ["unknown training config field", "did you mean 'cross_reconstruction'"]),
    ({"model": {"mouth_bank": "bsaes"}}, ["mouth_bank must be one of", "did you mean 'bases'"]),
]


@pytest.mark.parametrize("overrides, names", CONFLICTS, ids=[str(i) for i in range(len(CONFLICTS))])
def test_contradicting_switches_are_refused_naming_the_fields(overrides, names):
    from ablations.variants import Variant
    from edtalk.train.config import validate_overrides

    with pytest.raises(InputError) as exc:
        validate_overrides(overrides)
    msg = one_line(exc)
    assert all(n in msg for n in names), msg
    with pytest.raises(InputError, match="variant 'mine'"):
        Variant("mine", "a user-defined row", overrides)


@pytest.mark.parametrize("overrides", [
    {"feature_loss": True, "cross_reconstruction": False},  # L_fea needs only the swapped frames' codes
    {"model": {"expression": False}},  # the lip/pose-only generator: ModelConfig drops EEM by itself
    {"model": {"expression_bank": "off", "eem": False}},
    {"model": {"mouth_bank": "off", "pose_bank": "off"}, "cross_reconstruction": False,
     "feature_loss": False},
    {"model": {"orthogonal": False, "expression_bank": "direct"}},  # mouth/pose bases are still QR'd
    {"joint_training": True, "cross_reconstruction": False},
])
def test_compatible_combinations_pass(overrides):
    from edtalk.train.config import validate_overrides

    validate_overrides(overrides)


def test_catalogue_variants_are_valid_and_resolve():
    from ablations.variants import list_variants, resolve_config
    from edtalk.train.config import validate_overrides

    for v in list_variants():
        validate_overrides(v.overrides)
        cfg = resolve_config("smoke", v.name)
        assert cfg.variant == v.name
    with pytest.raises(UserError):
        resolve_config("smoke", "no-lip-bank")
