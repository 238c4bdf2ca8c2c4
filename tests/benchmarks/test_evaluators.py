"""Synthetic-world evaluators: training, cache, reload, CLI, and held-out validation thresholds.

Fast tests train the "tiny" preset on a 4-identity, 4-emotion world (2 train, 2 test, 20 frames) in
seconds and check the machinery plus "better than a trivial predictor" bounds. The slow test trains
the default preset on the smoke world and asserts the thresholds the evaluators are used with.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmarks.datasets.synthetic import SyntheticWorld
from benchmarks.evaluators import load_evaluators, train_evaluators
from benchmarks.evaluators.data import load_split, mouth_crops
from benchmarks.evaluators.train import augment
from benchmarks.evaluators.validate import best_threshold, validate
from benchmarks.synthetic.writer import Preset, synthesize_world
from metrics.errors import InputError, UserError


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    preset = Preset(identities=4, test_identities=2, emotions=("angry", "happy", "neutral", "sad"), levels=(3,),
                    clips_per_level=1, n_frames=20, size=64)
    return synthesize_world(root, preset, seed=3)


@pytest.fixture(scope="module")
def trained(tiny_world):
    out = train_evaluators(tiny_world, config="tiny", seed=0, device="cpu", progress=False, threads=1)
    return out


def test_missing_cache_is_one_line_user_error(tiny_world, tmp_path):
    with pytest.raises(UserError, match=r"run `edtalk evaluators train --data .* --out .*`") as err:
        load_evaluators(tiny_world, cache_dir=tmp_path / "none", config="tiny")
    assert "\n" not in str(err.value)


def test_cache_layout_and_meta(trained, tiny_world):
    names = {p.name for p in trained.iterdir()}
    assert {"landmarks.pt", "pose.pt", "emotion.pt", "identity.pt", "syncnet.pt", "validation.json",
            "meta.json"} <= names
    assert trained.parent == tiny_world / "evaluators"
    meta = json.loads((trained / "meta.json").read_text())
    assert meta["key"] == trained.name and set(meta["train_seconds"]) == {"landmarks", "pose", "emotion", "identity",
                                                                         "syncnet"}
    assert meta["validation"] == json.loads((trained / "validation.json").read_text())
    assert "NOT Inception-FID" in meta["features"]


def test_outputs_shapes_and_ranges(trained, tiny_world):
    ev = load_evaluators(tiny_world, config="tiny", device="cpu")
    world = SyntheticWorld(tiny_world)
    clip = world.clips("test")[0]
    frames = world.frames(clip)
    t = len(frames)
    assert ev.landmarks(frames).shape == (t, 68, 2) and ev.pose(frames).shape == (t, 3)
    assert ev.emotion(frames).shape == (8,) and ev.emotion_frames(frames).shape == (t, 8)
    np.testing.assert_allclose(ev.emotion(frames), ev.emotion_frames(frames).mean(0), rtol=1e-5)
    emb = ev.identity(frames)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert ev.features(frames).shape == (t, 2 * ev.config.feat_dim)
    # frames of another size: landmarks come back in that frame's pixels
    big = np.repeat(np.repeat(frames, 2, axis=1), 2, axis=2)
    np.testing.assert_allclose(ev.landmarks(big), 2 * ev.landmarks(frames), atol=0.75)
    crops = ev.mouth_crops(frames)
    assert crops.shape == (t, ev.config.crop_size, ev.config.crop_size, 3) and crops.dtype == np.uint8
    r = ev.lse(frames, world.audio(clip))
    assert set(r) >= {"lse_c", "lse_d", "offset"} and r["protocol"]["crop_size"] == ev.config.crop_size
    with pytest.raises(InputError, match="uint8"):
        ev.pose(frames.astype(np.float32))


def test_reload_reproduces_validation_exactly(trained, tiny_world):
    """The cached nets give the very numbers computed with the in-memory nets right after training."""
    ev = load_evaluators(tiny_world, config="tiny", device="cpu")
    world = SyntheticWorld(tiny_world)
    train = load_split(world, "train", ev.config.input_size, ev.config.crop_size, ev.config.crop_margin, False)
    again, threshold = validate(ev, world, train, ev.config, ev.meta["seed"], progress=False)
    stored = dict(ev.meta["validation"])
    stored.pop("seconds")
    assert json.loads(json.dumps(again)) == stored and threshold == ev.identity_threshold


def test_resume_retrains_only_missing_nets(trained, tiny_world):
    before = {p.name: p.stat().st_mtime_ns for p in trained.glob("*.pt")}
    sync_before = torch.load(trained / "syncnet.pt", weights_only=True)["state_dict"]
    (trained / "meta.json").unlink()
    (trained / "syncnet.pt").unlink()
    assert train_evaluators(tiny_world, config="tiny", seed=0, device="cpu", progress=False, threads=1) == trained
    after = {p.name: p.stat().st_mtime_ns for p in trained.glob("*.pt")}
    assert all(after[k] == before[k] for k in before if k != "syncnet.pt")
    sync_after = torch.load(trained / "syncnet.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sync_before[k], sync_after[k]) for k in sync_before)  # seeded: same net again


def test_tiny_training_beats_trivial_predictors(trained, tiny_world):
    """Even 60 steps must beat predicting the training mean yaw on unseen identities."""
    v = json.loads((trained / "validation.json").read_text())
    world = SyntheticWorld(tiny_world)
    tr = [world.ground_truth(c) for c in world.clips("train")]
    te = [world.ground_truth(c) for c in world.clips("test")]
    pose_test = np.concatenate([g["pose"] for g in te])
    trivial = np.abs(pose_test - np.concatenate([g["pose"] for g in tr]).mean(0)).mean(0)
    assert v["pose"]["mae_deg"]["yaw"] < trivial[0]
    assert 0 <= v["sync"]["offset_accuracy"] <= 1 and v["sync"]["chance"] == pytest.approx(3 / 31)


def test_cli_prints_summary_from_cache(trained, tiny_world, capsys):
    from edtalk.cli import main

    assert main(["evaluators", "train", "--data", str(tiny_world), "--preset", "tiny", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "landmarks" in out and "SyncNet" in out and json.loads(out.strip().splitlines()[-1])["cache"] == str(trained)


def test_augment_moves_landmarks_with_the_image():
    img = np.zeros((1, 32, 32, 3), np.uint8)
    img[0, 10, 20] = 255  # a bright pixel whose centre is at (20.5, 10.5)
    gen = torch.Generator().manual_seed(0)
    x, lm = augment(torch.from_numpy(img), gen, "mild", 3, 0.2, torch.tensor([[[20.5, 10.5]]]))
    y, xx = np.unravel_index(x[0].mean(0).argmax().item(), (32, 32))
    assert abs(xx + 0.5 - lm[0, 0, 0].item()) <= 1 and abs(y + 0.5 - lm[0, 0, 1].item()) <= 1


def test_mouth_crops_follow_the_mouth():
    frames = np.zeros((6, 64, 64, 3), np.uint8)
    lm = np.zeros((6, 68, 2), np.float32)
    lm[:, 0], lm[:, 16] = (12, 30), (52, 30)            # jaw width 40 -> side 30
    lm[:, 48], lm[:, 54] = (25, 44), (39, 44)           # mouth centre (32, 44)
    frames[:, 43:45, 31:33] = (255, 0, 0)               # a red mouth (RGB) covering [31, 33) x [43, 45)
    c = mouth_crops(frames, lm, 30)                     # scale 1: crop pixel j = frame pixel j + 17
    assert c.shape == (6, 30, 30, 3)
    assert (c[:, 14:16, 14:16, 2] == 255).all() and c[:, 14:16, 14:16, 0].max() == 0  # BGR, centred
    assert c[:, 14:16, 16, 2].max() == 0 and c[:, 13, 14:16, 2].max() == 0
    with pytest.raises(InputError, match="landmark"):
        mouth_crops(frames, lm[:3], 30)


def test_best_threshold():
    scores = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.35])
    same = np.array([False, False, False, True, True, True])
    thr, acc = best_threshold(scores, same)
    assert acc == 1.0 and 0.3 < thr < 0.35


@pytest.mark.slow
def test_smoke_world_thresholds(tmp_path):
    """Thresholds on the smoke world's held-out identities (2 faces, 16 clips, 800 frames), default preset.

    landmarks < 1 px mean and < 0.8x the error of predicting the training mean shape (~1.2 px: the
    faces move little, so that trivial predictor is strong);
    pose MAE below the ground truth's own std on every axis (a constant predictor scores ~0.8 std);
    emotion accuracy >= 3x chance (0.375) per clip and per frame; identity verification >= 0.75
    (chance 0.5) with the threshold picked on the training faces; SyncNet finds the true offset within
    ±1 frame in >= 50% of clips (chance 3/31) and the 8-frame delay in >= 50%; LSE-C of the true audio
    above the delayed one's and above another clip's audio.
    """
    world = synthesize_world(tmp_path / "smoke", "smoke", seed=0)
    out = train_evaluators(world, device="cpu", progress=False, threads=1)
    v = json.loads((out / "validation.json").read_text())
    w = SyntheticWorld(world)
    mean_shape = np.concatenate([w.ground_truth(c)["landmarks"] for c in w.clips("train")]).mean(0)
    trivial = np.mean([np.linalg.norm(w.ground_truth(c)["landmarks"] - mean_shape, axis=-1).mean()
                       for c in w.clips("test")])
    assert v["landmarks"]["mean_px"] < min(1.0, 0.8 * trivial)
    for axis in ("yaw", "pitch", "roll"):
        assert v["pose"]["mae_deg"][axis] < v["pose"]["gt_std_deg"][axis]
    assert v["emotion"]["clip_accuracy"] >= 0.375 and v["emotion"]["frame_accuracy"] >= 0.375
    assert v["identity"]["verification_accuracy"] >= 0.75
    s = v["sync"]
    assert s["offset_accuracy"] >= 0.5 and s["shifted_offset_accuracy"] >= 0.5
    assert s["lse_c"]["true"] > s["lse_c"]["shifted"] and s["lse_c"]["true"] > s["lse_c"]["swapped"]
