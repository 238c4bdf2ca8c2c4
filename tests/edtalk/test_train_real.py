"""Training on real video (issue 18): the MEAD-layout mini dataset of real faces through
`edtalk train --dataset mead`, its cache, exact resume, and one line per kind of bad input."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from real_mead import TEST, TRAIN, build_mead
from train_fakes import fake_build

from edtalk.cli import main
from metrics.errors import InputError

N_FRAMES = 8
SMOKE_SIZE = 64  # the smoke preset's model size: the cache holds frames at this size


@pytest.fixture(scope="module")
def mead(tmp_path_factory):
    return build_mead(tmp_path_factory.mktemp("mini-mead"), n_frames=N_FRAMES, size=128)


def _lists(path, train, test):
    path.mkdir(parents=True, exist_ok=True)
    (path / "train.json").write_text(json.dumps(list(train)))
    (path / "test.json").write_text(json.dumps(list(test)))
    return path


def _train(mead, out, *extra, data=None, lists=None):
    return main(["train", "--preset", "smoke", "--data", str(data or mead["root"]), "--dataset", "mead",
                 "--lists", str(lists or mead["lists"]), "--out", str(out), "--cache", str(out.parent / "cache"),
                 *extra])


def test_every_stage_trains_on_real_clips_and_the_cache_is_reused(mead, tmp_path, capsys):
    assert _train(mead, tmp_path / "run", "--max-steps", "2") == 0
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert {k: v["iterations"] for k, v in summary["stages"].items()} == \
        {"autoencoder": 2, "mouth_pose": 2, "expression": 2}
    data = json.loads((run / "data.json").read_text())
    assert data["train"]["used"] == 4 and data["train"]["frames"] == 4 * N_FRAMES and data["test"]["used"] == 1
    assert data["train"]["skipped"] == {} and data["train"]["missing"] == 0
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["identities"] == ["M003", "M030"] and config["frame_size"] == SMOKE_SIZE
    assert json.loads((run / "eval.json").read_text())["held_out_identities"] == ["W009"]
    assert "mead train: 4 clips (32 frames) used of 4 listed" in (run / "logs" / "data.log").read_text()
    # A second run reads the cache: nothing is decoded again.
    from edtalk.train.real_data import load_real_pools

    def no_detector():
        raise AssertionError("a cached clip was decoded again")
    _, _, report = load_real_pools(mead["root"], "mead", SMOKE_SIZE, mead["lists"], cache_dir=tmp_path / "cache",
                                   detector_factory=no_detector)
    assert report["train"]["decoded"] == 0 and report["train"]["used"] == 4


def test_cache_holds_frames_landmarks_and_mel_windows_aligned_to_frames(mead, tmp_path):
    from benchmarks.media import read_audio, read_video
    from edtalk.audio_features import mel_windows, melspectrogram
    from edtalk.train.real_data import FastDlib68, load_real_pools

    train, test, report = load_real_pools(mead["root"], "mead", SMOKE_SIZE, mead["lists"], cache_dir=tmp_path)
    assert report["train"]["decoded"] == 4 * N_FRAMES
    clip = next(c for c in train.clips if c.name == "M003#angry#level_3#001")
    assert clip.identity == "M003" and clip.emotion == "angry" and clip.split == "train"
    assert clip.frames.shape == (N_FRAMES, SMOKE_SIZE, SMOKE_SIZE, 3) and isinstance(clip.frames, np.memmap)
    assert np.isfinite(clip.landmarks).all() and clip.landmarks.shape == (N_FRAMES, 68, 2)
    # The mouth (48-67) lies in the lower half of a face crop, inside the frame.
    assert (clip.landmarks[:, 48:, 1].mean() > SMOKE_SIZE / 2) and clip.landmarks.max() < SMOKE_SIZE
    raw = read_video(mead["videos"]["M003#angry#level_3#001"]).frames
    assert abs(float(clip.frames.mean()) - float(raw.mean())) < 3.0  # the same pictures, resized
    np.testing.assert_array_equal(clip.landmarks, (FastDlib68()(raw) * SMOKE_SIZE / 128).astype(np.float32))
    mel = np.load(clip.gt["mel_path"])
    wav = read_audio(mead["audio"]["M003#angry#level_3#001"], 16000)
    assert mel.shape == (N_FRAMES, 80, 16)
    np.testing.assert_allclose(mel, mel_windows(melspectrogram(wav), N_FRAMES, fps=25), atol=1e-6)
    assert [c.identity for c in test.clips] == ["W009"]
    # Stage 2's pairs: a neutral clip is the identity source, an emotional one (with its label) the target.
    names = [c.name for c in train.clips]
    assert [names[k] for k in train.neutral["M030"]] == ["M030#neutral#level_1#001"]
    assert [names[k] for k in train.emotional["M030"]] == ["M030#happy#level_2#002"]
    assert report["train"]["emotions"] == {"angry": 1, "happy": 1, "neutral": 2} and report["train"]["speakers"] == 2


def test_dataloader_workers_read_the_cache_and_draw_the_same_batches(mead, tmp_path):
    import torch
    from torch.utils.data import DataLoader

    from edtalk.train.data import PairDataset
    from edtalk.train.real_data import load_real_pools

    pool = load_real_pools(mead["root"], "mead", SMOKE_SIZE, mead["lists"], cache_dir=tmp_path)[0]
    ds = PairDataset(pool, "mouth_pose", 8, seed=5)
    batches = [list(DataLoader(ds, batch_size=4, num_workers=w)) for w in (0, 2)]
    for a, b in zip(*batches, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(batches[0][0]["a"], batches[0][0]["b"])


@pytest.mark.slow  # two processes each load dlib and warm librosa: ~20 s on 2 loaded cores
def test_parallel_preparation_writes_what_one_process_writes(mead, tmp_path):
    from edtalk.train.real_data import load_real_pools

    one = load_real_pools(mead["root"], "mead", SMOKE_SIZE, mead["lists"], cache_dir=tmp_path / "one")
    two = load_real_pools(mead["root"], "mead", SMOKE_SIZE, mead["lists"], cache_dir=tmp_path / "two", workers=2)
    assert two[2]["train"]["decoded"] == 4 * N_FRAMES
    for a, b in zip(one[0].clips + one[1].clips, two[0].clips + two[1].clips, strict=True):
        assert a.name == b.name
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
        np.testing.assert_array_equal(np.load(a.gt["mel_path"]), np.load(b.gt["mel_path"]))


def test_kill_resumes_exactly_on_real_data(mead, tmp_path):
    from ablations.variants import resolve_config
    from edtalk.train.config import apply_overrides
    from edtalk.train.engine import Trainer, param_checksum
    from edtalk.train.real_data import load_real_pools

    cfg = resolve_config("smoke", "full", seed=1)
    cfg = apply_overrides(cfg, {"stages": [dict(name=s.name, iterations=3, batch_size=2, trainable=s.trainable)
                                           for s in cfg.stages],
                                "checkpoint_every": 1, "log_every": 1, "sample_every": 3,
                                "losses": {"perceptual": 0.0}})
    pool = load_real_pools(mead["root"], "mead", SMOKE_SIZE, mead["lists"], cache_dir=tmp_path / "cache")[0]
    full = Trainer(cfg, tmp_path / "a", pool, progress=False, build=fake_build)
    full.prepare_run_dir(resume=False)
    full.fit()
    killed = Trainer(cfg, tmp_path / "b", pool, progress=False, build=fake_build, stop_after=4)
    killed.prepare_run_dir(resume=False)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    resumed = Trainer(cfg, tmp_path / "b", pool, progress=False, build=fake_build)
    resumed.prepare_run_dir(resume=True)
    assert resumed.state["global_step"] == 4
    resumed.fit()
    assert param_checksum(resumed.model) == param_checksum(full.model)
    assert (tmp_path / "a" / "logs" / "mouth_pose.csv").read_text() == \
        (tmp_path / "b" / "logs" / "mouth_pose.csv").read_text()


def test_faceless_corrupt_and_silent_clips_are_counted_not_dropped_silently(mead, tmp_path):
    from benchmarks.datasets.mini_mead import write_m4a
    from benchmarks.media import write_video
    from edtalk.train.real_data import load_real_pools, report_lines

    root = tmp_path / "MEAD"
    shutil.copytree(mead["root"], root, ignore=shutil.ignore_patterns(".edtalk-train-cache"))
    (root / "M030/audio/happy/level_2/002.m4a").unlink()  # its video has no speech track either
    (root / "M003/video/front/angry/level_3/001.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x13" * 500)
    faceless = root / "M003/video/front/sad/level_1/004.mp4"
    faceless.parent.mkdir(parents=True)
    write_video(faceless, np.full((N_FRAMES, 128, 128, 3), 90, np.uint8), fps=25)
    (root / "M003/audio/sad/level_1").mkdir(parents=True)
    write_m4a(root / "M003/audio/sad/level_1/004.m4a", np.zeros(16000 * N_FRAMES // 25, np.float32))
    lists = _lists(tmp_path / "lists", TRAIN + ("M003#sad#level_1#004", "M030#sad#level_1#009"), TEST)
    train, _, report = load_real_pools(root, "mead", SMOKE_SIZE, lists, cache_dir=tmp_path / "cache")
    assert sorted(c.name for c in train.clips) == ["M003#neutral#level_1#001", "M030#neutral#level_1#001"]
    assert report["train"]["skipped"] == {"corrupt": 1, "no_audio": 1, "no_face": 1}
    assert report["train"]["missing"] == 1 and report["train"]["missing_names"] == ["M030#sad#level_1#009"]
    text = "\n".join(report_lines(report))
    assert "1 not under --data; skipped: " in text
    for reason, name in (("corrupt", "M003#angry"), ("no_audio", "M030#happy"), ("no_face", "M003#sad")):
        assert f"skipped ({reason}) {name}" in text


@pytest.mark.parametrize("case", ["shared-speaker", "bad-emotion", "options-without-dataset", "no-clip",
                                  "not-square"])
def test_bad_input_is_one_line(mead, tmp_path, capsys, case):
    from benchmarks.media import write_video

    data, lists, extra = mead["root"], None, []
    if case == "shared-speaker":
        lists = _lists(tmp_path / "lists", TRAIN + ("W009#angry#level_1#001",), TEST)
        expect = "MEAD test speakers also in the train list ('W009')"
    elif case == "bad-emotion":
        lists = _lists(tmp_path / "lists", TRAIN + ("M003#angery#level_1#001",), TEST)
        expect = "train.json: 1 of 5 clip names do not parse as MEAD <id>#<emotion>#level_<k>#<nnn> or HDTF " \
            "<video>#<k>: 'M003#angery#level_1#001'"
    elif case == "options-without-dataset":
        code = main(["train", "--preset", "smoke", "--out", str(tmp_path / "r"), "--limit-clips", "2"])
        assert code == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "--limit-clips only apply to real data: add --dataset" in err
        return
    elif case == "no-clip":
        data = tmp_path / "empty"
        data.mkdir()
        expect = "no usable MEAD training clip of the 4"
    else:
        data = tmp_path / "MEAD"
        write_video(data / "M003/video/front/neutral/level_1/001.mp4", np.zeros((4, 72, 128, 3), np.uint8), fps=25)
        lists = _lists(tmp_path / "lists", TRAIN[:1], TEST)
        expect = "is 128x72, not a square face crop; crop the tree first with `edtalk data crop"
    assert _train(mead, tmp_path / "run", "--max-steps", "1", *extra, data=data, lists=lists) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expect in err, err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_unknown_dataset_and_limit_are_refused(mead, tmp_path):
    from edtalk.train.real_data import load_real_pools

    with pytest.raises(InputError, match="--dataset must be one of mead, hdtf"):
        load_real_pools(mead["root"], "vox", SMOKE_SIZE, mead["lists"])
    with pytest.raises(InputError, match="--limit-clips must be at least 1"):
        load_real_pools(mead["root"], "mead", SMOKE_SIZE, mead["lists"], limit_clips=0)
    train, test, report = load_real_pools(mead["root"], "mead", SMOKE_SIZE, mead["lists"], limit_clips=1,
                                          cache_dir=tmp_path)
    assert [c.name for c in train.clips] == [TRAIN[0]] and report["train"]["limit_clips"] == 1


def test_hdtf_segments_are_cut_from_the_full_video_with_its_own_speech(tmp_path):
    """HDTF: ROOT/<video>.mp4 full length, `<video>#<k>` is seconds 5(k-1)..5k; speech from the video's track."""
    from benchmarks.media import read_audio, read_video, write_video
    from benchmarks.realfaces import talking_clip
    from edtalk.audio_features import mel_windows, melspectrogram
    from edtalk.train.real_data import load_real_pools

    root = tmp_path / "HDTF"
    videos = {"WDA_Alice_000": ("grace_hopper", 0), "WRA_Bob_001": ("astronaut", 0)}
    for vid, (photo, face) in videos.items():
        clip = talking_clip(photo, n_frames=135, size=64, seed=len(vid), face=face)  # 5.4 s
        write_video(root / f"{vid}.mp4", clip.frames, fps=25, audio=clip.audio)
    lists = _lists(tmp_path / "lists", ["WDA_Alice_000#2", "WDA_Alice_000#1"], ["WRA_Bob_001#1"])
    train, test, report = load_real_pools(root, "hdtf", 32, lists, cache_dir=tmp_path / "cache")
    assert [c.name for c in train.clips] == ["WDA_Alice_000#2", "WDA_Alice_000#1"]
    assert train.identities == ["WDA_Alice_000"] and [c.identity for c in test.clips] == ["WRA_Bob_001"]
    assert report["train"]["frames"] == 135 and train.size == 32  # segment 2 is cut short by the video's end
    full = read_video(root / "WDA_Alice_000.mp4").frames
    second = train.clips[0]
    # segment 2 is frames 125-134 of the video, resized 64 -> 32 (area: a 2x2 mean)
    expect = full[125:135].reshape(10, 32, 2, 32, 2, 3).mean(axis=(2, 4))
    assert np.abs(second.frames.astype(float) - expect).mean() < 1.0
    wav = read_audio(root / "WDA_Alice_000.mp4", 16000)[5 * 16000:10 * 16000]
    np.testing.assert_allclose(np.load(second.gt["mel_path"]), mel_windows(melspectrogram(wav), 10, fps=25),
                               atol=1e-6)
    lists = _lists(tmp_path / "shared", ["WDA_Alice_000#1"], ["WDA_Alice_000#2"])
    with pytest.raises(InputError, match=r"HDTF test speakers also in the train list \('WDA_Alice_000'\)"):
        load_real_pools(root, "hdtf", 32, lists, cache_dir=tmp_path / "cache")
