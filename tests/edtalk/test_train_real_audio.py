"""Stage `audio` on real video (issue 18): `edtalk train --stage audio --dataset mead` on the real-face mini MEAD,
its records (cached mel and speech, emotion from the name, targets from the run's generator, landmark ground
truth), what it leaves out, and one line per kind of bad input."""
from __future__ import annotations

import dataclasses
import json
import shutil

import numpy as np
import pytest
import torch
from real_mead import TEST, TRAIN, build_mead

from edtalk.cli import main
from metrics.utils import safe_torch_load

N_FRAMES = 8
SIZE = 32  # the tiny generator's size: the cache holds frames at this size


@pytest.fixture(scope="module")
def mead(tmp_path_factory):
    return build_mead(tmp_path_factory.mktemp("mini-mead-audio"), n_frames=N_FRAMES, size=128)


def _generator_run(run):
    """A run directory holding a seeded tiny EDTalk as if stages 0-2 had trained it (model.pt, engine format)."""
    from edtalk.config import ModelConfig
    from edtalk.model import EDTalk

    torch.manual_seed(0)
    mcfg = ModelConfig(size=SIZE, latent_dim=32, channel_scale=0.0625, eem_hidden=16, flow_grid="pixel-centres")
    model = EDTalk(mcfg)
    run.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "edtalk-bench/model@1", "model_config": dataclasses.asdict(mcfg),
                "model": model.state_dict(), "variant": "full"}, run / "model.pt")
    return run


def _audio(mead, run, *extra, data=None, lists=None):
    return main(["train", "--preset", "smoke", "--stage", "audio", "--data", str(data or mead["root"]),
                 "--dataset", "mead", "--lists", str(lists or mead["lists"]), "--out", str(run),
                 "--cache", str(run.parent / "cache"), *extra])


def _small(cfg):
    """The smoke audio stage with small batches: each part a few seconds on 2 loaded cores."""
    return dataclasses.replace(cfg, mouth_batch=2, pose_batch=4, exp_batch=4, pose_window=6)


def test_audio_stage_trains_on_real_clips_and_records_what_it_used(mead, tmp_path, capsys, monkeypatch):
    import edtalk.presets as presets

    small = _small(presets.get_preset("smoke").audio)
    monkeypatch.setattr(presets, "audio_stage_preset", lambda name: dataclasses.replace(small))
    run = _generator_run(tmp_path / "run")
    assert _audio(mead, run, "--max-steps", "2") == 0
    results = json.loads((run / "audio" / "results.json").read_text())
    assert results["targets"] == "model" and results["dataset"] == "mead" and results["n_test_clips"] == 1
    assert results["test_identities"] == ["W009"]
    assert {"mouth_jaw_r", "pose_nll_per_frame", "emotion_acc_head"} <= set(results)
    assert all(np.isfinite(results[k]) for k in ("mouth_jaw_r", "pose_nll_per_frame", "expression_mse_test"))
    assert "landmark estimate, not a measured head pose" in results["ground_truth"]["pose_deg"]
    for part in ("mouth", "pose", "expression"):  # --max-steps 2 capped each part
        progress = safe_torch_load(run / "audio" / f"progress_{part}.pt")
        assert progress["iteration"] == 2 and progress["done"], part
    data = json.loads((run / "audio" / "data.json").read_text())
    assert data["audio_stage"]["records"] == {"train": 4, "test": 1} and data["audio_stage"]["skipped"] == {}
    log = (run / "logs" / "audio_data.log").read_text()
    assert "audio stage: 4 train / 1 held-out clips; left out: none" in log and "evaluation ground truth" in log
    assert json.loads((run / "audio" / "config.json").read_text())["data_record"]["clips"]["test"] == list(TEST)
    out = capsys.readouterr().out
    assert '"mouth_jaw_r"' in out and "audio2motion.pt" in out
    from edtalk.model.audio2motion import Audio2Motion

    assert Audio2Motion.load(run / "audio" / "audio2motion.pt") is not None


def test_records_hold_the_cache_the_generator_targets_and_landmark_ground_truth(mead, tmp_path):
    from edtalk.presets import audio_stage_preset
    from edtalk.train.audio_data import model_targets
    from edtalk.train.audio_real import jaw_opening, landmark_pose_deg, records_from_real
    from edtalk.train.audio_stage import load_trained_generator
    from edtalk.train.real_data import load_real_pools
    from metrics.functional.emotion import EMOTIONS

    model = load_trained_generator(_generator_run(tmp_path / "run"), "cpu")
    pools = load_real_pools(mead["root"], "mead", SIZE, mead["lists"], cache_dir=tmp_path / "cache")
    records, report = records_from_real(pools[:2], "mead", audio_stage_preset("smoke"), model, "cpu")
    assert [r.name for r in records] == list(TRAIN + TEST) and report["records"] == {"train": 4, "test": 1}
    by_name = {c.name: c for c in pools[0].clips + pools[1].clips}
    for r in records:
        clip = by_name[r.name]
        assert r.emotion == EMOTIONS.index(r.name.split("#")[1]) and r.identity == r.name[:4]
        np.testing.assert_array_equal(r.mel.numpy(), np.load(clip.gt["mel_path"]))
        targets = model_targets(model, clip.frames, "cpu")
        torch.testing.assert_close(r.mouth, targets["mouth"])
        torch.testing.assert_close(r.pose, targets["pose"])
        torch.testing.assert_close(r.expression, targets["expression"].mean(0))
        assert r.mouth.shape == (N_FRAMES, 20) and r.pose.shape == (N_FRAMES, 6) and r.speech.shape == (258,)
        np.testing.assert_allclose(r.gt_jaw.numpy(), jaw_opening(clip.landmarks), rtol=1e-6)
        np.testing.assert_allclose(r.gt_pose_deg.numpy(), landmark_pose_deg(clip.landmarks, SIZE), atol=1e-4)
    # The speech is the clip's own: the cache's speech.npy is its .m4a at 16 kHz.
    from benchmarks.media import read_audio

    clip = by_name[TRAIN[1]]
    np.testing.assert_allclose(np.load(clip.gt["speech_path"]), read_audio(mead["audio"][TRAIN[1]], 16000),
                               atol=1e-6)


def test_landmark_ground_truth_measures_mouth_opening_and_rotation(mead):
    """The jaw opening grows with the lip gap and ignores scale; on a real face's dlib landmarks the PnP roll
    follows an in-plane rotation while yaw and pitch stay."""
    from train_fakes import face_landmarks

    from benchmarks.media import read_video
    from edtalk.train.audio_real import jaw_opening, landmark_pose_deg
    from edtalk.train.real_data import FastDlib68

    closed, opened = face_landmarks(128, 0.0, 0.1), face_landmarks(128, 0.0, 0.9)
    jaw = jaw_opening(np.stack([closed, opened, opened * 0.5]))
    assert jaw[1] > 2 * jaw[0] and jaw[2] == pytest.approx(jaw[1])
    face = FastDlib68()(read_video(mead["videos"][TRAIN[0]]).frames[:1])[0]
    centre = face.mean(0)
    rotated = []
    for deg in (0.0, 10.0, -15.0, 30.0):
        a = np.radians(deg)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        rotated.append((face - centre) @ rot.T + centre)
    pose = landmark_pose_deg(np.stack(rotated), 128)
    np.testing.assert_allclose(pose[1:, 2] - pose[0, 2], [10.0, -15.0, 30.0], atol=1.0)  # roll, degrees
    np.testing.assert_allclose(pose[1:, :2], pose[[0, 0, 0], :2], atol=2.0)  # yaw and pitch stay
    assert np.abs(pose[0]).max() < 10.0  # the mini MEAD faces look at the camera


def test_short_and_silent_clips_are_counted_and_a_resume_on_other_data_is_refused(mead, tmp_path, capsys,
                                                                                  monkeypatch):
    import edtalk.presets as presets
    from benchmarks.datasets.mini_mead import build_mini_mead

    small = _small(presets.get_preset("smoke").audio)
    monkeypatch.setattr(presets, "audio_stage_preset", lambda name: dataclasses.replace(small))
    root = tmp_path / "MEAD"
    shutil.copytree(mead["root"], root, ignore=shutil.ignore_patterns(".edtalk-train-cache"))
    (root / "M030/audio/happy/level_2/002.m4a").unlink()  # no speech at all: left out by the data loader
    short = build_mini_mead(tmp_path / "short", ("M003#sad#level_1#004",), n_frames=3, size=128,
                            lists_dir=tmp_path / "short-lists")
    for key in ("videos", "audio"):
        dest = root / short[key]["M003#sad#level_1#004"].relative_to(short["root"])
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(short[key]["M003#sad#level_1#004"], dest)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.json").write_text(json.dumps(list(TRAIN) + ["M003#sad#level_1#004"]))
    (lists / "test.json").write_text(json.dumps(list(TEST)))
    run = _generator_run(tmp_path / "run")
    assert _audio(mead, run, "--max-steps", "1", data=root, lists=lists) == 0
    data = json.loads((run / "audio" / "data.json").read_text())
    assert data["train"]["skipped"] == {"no_audio": 1}
    assert data["audio_stage"]["skipped"] == {"too_short": 1} and data["audio_stage"]["records"]["train"] == 3
    log = (run / "logs" / "audio_data.log").read_text()
    assert "skipped (no_audio) M030#happy#level_2#002" in log
    assert "skipped (too_short) M003#sad#level_1#004: 3 frames" in log
    capsys.readouterr()
    # The same data resumes (nothing left to train); other data is one line.
    assert _audio(mead, run, "--max-steps", "1", "--resume", data=root, lists=lists) == 0
    assert _audio(mead, run, "--max-steps", "1", "--resume", "--limit-clips", "2", data=root, lists=lists) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "was written for other data (--dataset mead, 3 train clips, now --dataset " \
        "mead, --limit-clips 2, 2 train clips)" in err, err


@pytest.mark.parametrize("case", ["no-generator", "targets-gt", "no-data", "shared-speaker", "bad-emotion"])
def test_bad_input_is_one_line(mead, tmp_path, capsys, case):
    run = tmp_path / "run"
    if case in ("shared-speaker", "bad-emotion"):
        extra = "W009#angry#level_1#001" if case == "shared-speaker" else "M003#angery#level_1#001"
        lists = tmp_path / "lists"
        lists.mkdir()
        (lists / "train.json").write_text(json.dumps(list(TRAIN) + [extra]))
        (lists / "test.json").write_text(json.dumps(list(TEST)))
        code = _audio(mead, _generator_run(run), lists=lists)
        expect = "MEAD test speakers also in the train list ('W009')" if case == "shared-speaker" else \
            "train.json: 1 of 5 clip names do not parse as MEAD <id>#<emotion>#level_<k>#<nnn>"
    elif case == "no-generator":
        code, expect = _audio(mead, run), "model.pt not found: train stages 0-2 on the same data first"
    elif case == "targets-gt":
        code = _audio(mead, _generator_run(run), "--targets", "gt")
        expect = "--targets gt needs a synthetic world's ground truth; on real video the targets are the trained"
    else:
        code = main(["train", "--stage", "audio", "--dataset", "mead", "--out", str(_generator_run(run))])
        expect = "--dataset mead needs --data ROOT, the MEAD root"
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expect in err, err
    assert not (run / "audio").exists()
