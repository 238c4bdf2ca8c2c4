"""`edtalk generate` on a tiny MEAD-layout tree of real-face clips (benchmarks.datasets.mini_mead).

The copy-source baseline (no model) checks names, counts, resume, the missing-clip line and --lists; the
seeded stand-in official checkpoints run EDTalk-A on one short clip; a small trained-run model checks that
the renderer draws exactly what the release's per-frame procedure draws from the same drivers.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edtalk.cli import main

CASES = ("M003#angry#level_3#001", "M003#happy#level_1#002", "W009#sad#level_2#003")
N_FRAMES = 3


@pytest.fixture(scope="module")
def mead(tmp_path_factory):
    from benchmarks.datasets.mini_mead import build_mini_mead

    root = tmp_path_factory.mktemp("mini-mead")
    return build_mini_mead(root / "MEAD", CASES, n_frames=N_FRAMES, lists_dir=root / "lists")


def _generate(mead, out, *extra) -> int:
    return main(["generate", "--protocol", "mead-edtalk", "--data", str(mead["root"]), "--lists", str(mead["lists"]),
                 "--out", str(out), "--no-progress", *extra])


def test_copy_source_writes_one_video_per_case_with_speech_and_resumes(mead, tmp_path, capsys):
    from benchmarks.media import probe_video, read_audio, read_video

    out = tmp_path / "copy"
    assert _generate(mead, out, "--baseline", "copy-source") == 0
    assert "3 cases: 3 generated, 0 already there" in capsys.readouterr().out
    assert sorted(p.name for p in out.glob("*.mp4")) == sorted(f"{c}.mp4" for c in CASES)
    for case in CASES:
        gt = read_video(mead["videos"][case]).frames
        clip = read_video(out / f"{case}.mp4")
        assert clip.frames.shape == gt.shape and probe_video(out / f"{case}.mp4")["has_audio"]
        # every frame is the GT's first frame (H.264 at crf 12: a few grey levels)
        assert np.abs(clip.frames.astype(int) - gt[:1].astype(int)).mean() < 3
        speech = read_audio(out / f"{case}.mp4")
        assert abs(len(speech) - N_FRAMES * 640) < 1100  # AAC pads its last frame
    manifest = json.loads((out / "generate.json").read_text())
    assert sorted(manifest["cases"]) == sorted(CASES) and manifest["method"]["name"] == "copy-source"
    assert not (out / ".partial").exists()

    stamps = {c: (out / f"{c}.mp4").stat().st_mtime_ns for c in CASES}
    (out / f"{CASES[1]}.mp4").unlink()
    (out / ".partial").mkdir()
    (out / ".partial" / f"{CASES[1]}.mp4").write_bytes(b"half a video")  # what a killed run leaves
    assert _generate(mead, out, "--baseline", "copy-source") == 0
    assert "3 cases: 1 generated, 2 already there" in capsys.readouterr().out
    assert (out / f"{CASES[1]}.mp4").is_file() and not (out / ".partial").exists()
    assert all((out / f"{c}.mp4").stat().st_mtime_ns == stamps[c] for c in (CASES[0], CASES[2]))


def test_missing_clips_are_one_line_and_skip_missing_generates_the_rest(mead, tmp_path, capsys):
    from benchmarks.datasets.mini_mead import write_lists

    absent = ("M030#fear#level_1#004", "W015#surprised#level_2#005")
    lists = write_lists(tmp_path / "lists", (CASES[0], *absent))
    args = ["generate", "--protocol", "mead-edtalk", "--data", str(mead["root"]), "--lists", str(lists),
            "--baseline", "copy-source", "--no-progress", "--out", str(tmp_path / "gen")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "2 of 3 test clips are missing ('M030#fear#level_1#004', 'W015#surprised#level_2#005')" in err
    assert "--skip-missing" in err and not list((tmp_path / "gen").glob("*.mp4"))
    assert main([*args, "--skip-missing"]) == 0
    captured = capsys.readouterr()
    assert "warning:" in captured.err and "2 of 3 test clips are missing" in captured.err
    assert "1 cases: 1 generated, 0 already there, 2 missing from --data" in captured.out
    assert [p.name for p in (tmp_path / "gen").glob("*.mp4")] == [f"{CASES[0]}.mp4"]


def test_lists_speakers_and_max_clips_select_cases(mead):
    from edtalk.generate import select_cases
    from metrics.errors import InputError

    assert select_cases("mead", mead["lists"]) == list(CASES)
    assert select_cases("mead", mead["lists"], speakers=["W009"]) == [CASES[2]]
    assert select_cases("mead", mead["lists"], max_clips=2) == list(CASES[:2])
    bundled = select_cases("mead", None, speakers=["M030"], max_clips=5)
    assert len(bundled) == 5 and all(n.startswith("M030#") for n in bundled)
    with pytest.raises(InputError, match="'M999' not in the MEAD test list"):
        select_cases("mead", mead["lists"], speakers=["M999"])


def test_a_second_generation_into_the_same_folder_is_refused(mead, tmp_path, official_standins, capsys):
    out = tmp_path / "gen"
    assert _generate(mead, out, "--baseline", "copy-source", "--max-clips", "1") == 0
    capsys.readouterr()
    assert _generate(mead, out, "--checkpoint-dir", str(official_standins(1)), "--setting", "video") == 2
    assert "holds videos of another generation" in capsys.readouterr().err


def test_raw_frames_that_are_not_square_crops_are_refused(tmp_path, official_standins, capsys):
    from benchmarks.datasets.mini_mead import write_lists, write_m4a
    from benchmarks.media import write_video

    case = "M003#angry#level_3#001"
    video = tmp_path / "raw/M003/video/front/angry/level_3/001.mp4"
    video.parent.mkdir(parents=True)
    write_video(video, np.zeros((2, 144, 256, 3), np.uint8))
    (tmp_path / "raw/M003/audio/angry/level_3").mkdir(parents=True)
    write_m4a(tmp_path / "raw/M003/audio/angry/level_3/001.m4a", np.zeros(1280, np.float32))
    lists = write_lists(tmp_path / "lists", [case])
    assert main(["generate", "--protocol", "mead-edtalk", "--data", str(tmp_path / "raw"), "--lists", str(lists),
                 "--checkpoint-dir", str(official_standins(1)), "--setting", "video", "--no-progress",
                 "--out", str(tmp_path / "gen")]) == 2
    assert "not a square face crop; crop the dataset first (`edtalk data crop" in capsys.readouterr().err


@pytest.mark.slow
def test_official_standins_edtalk_a_from_the_cli(mead, tmp_path, official_standins, capsys):
    """EDTalk-A with the release's file layout, one 3-frame clip (the 256-px generator is slow on CPU)."""
    from benchmarks.media import probe_video

    out = tmp_path / "edtalk-a"
    ckpt = official_standins(1)
    assert _generate(mead, out, "--checkpoint-dir", str(ckpt), "--setting", "audio", "--max-clips", "1") == 0
    assert "1 cases: 1 generated" in capsys.readouterr().out
    info = probe_video(out / f"{CASES[0]}.mp4")
    assert info["has_audio"] and info["n_frames"] == N_FRAMES and (info["width"], info["height"]) == (256, 256)
    method = json.loads((out / "generate.json").read_text())["method"]
    assert method["name"] == "EDTalk-A" and set(method["checkpoints"]) == {"EDTalk.pt", "Audio2Lip.pt"}
    assert method["drivers"] == {"mouth": "audio-to-lip model on the clip's speech", "pose": "GT frame i",
                                 "expression": "GT frames, demo schedule"}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A run directory of `edtalk train`'s format holding a seeded smoke-size (64 px) model."""
    from edtalk.model import EDTalk
    from edtalk.presets import model_preset

    torch.manual_seed(0)
    model = EDTalk(model_preset("smoke"))
    run = tmp_path_factory.mktemp("run")
    torch.save({"format": "edtalk-bench/model@1", "model_config": model.cfg.to_dict(), "model": model.state_dict()},
               run / "model.pt")
    return run


def test_video_setting_draws_what_the_per_frame_procedure_draws(small_run):
    from benchmarks.media import frames_to_tensor, tensor_to_frames
    from edtalk.animate import animate_per_frame
    from edtalk.generate import EDTalkRenderer
    from edtalk.trained import load_trained_model

    rng = np.random.default_rng(0)
    gt = rng.integers(0, 255, (5, 128, 128, 3), dtype=np.uint8)  # resized to the model's 64 px as the demo does
    model, _ = load_trained_model(small_run)
    renderer = EDTalkRenderer(model, "video", batch=2, expression_schedule="aligned")
    got = np.concatenate(list(renderer.render(gt, np.zeros(5 * 640, np.float32))))
    clip = torch.nn.functional.interpolate(frames_to_tensor(gt), size=(64, 64), mode="bilinear", antialias=True)
    want = tensor_to_frames(animate_per_frame(model, clip[:1], mouth=clip, pose=clip, expression=clip))
    assert got.shape == (5, 64, 64, 3) and np.array_equal(got, want)
    assert renderer.describe["drivers"]["mouth"] == "GT frame i"


def test_audio_setting_draws_what_the_release_procedure_draws(small_run, official_standins):
    """mel -> Audio2Lip -> the release's zero-padded Gaussian for the lip; pose and expression from GT frame i."""
    from benchmarks.media import frames_to_tensor, tensor_to_frames
    from edtalk import official
    from edtalk.animate import animate_per_frame
    from edtalk.audio_features import mel_windows, melspectrogram
    from edtalk.generate import EDTalkRenderer, audio2lip_mouth
    from edtalk.model.audio2motion import RELEASE_SMOOTHING
    from edtalk.trained import load_trained_model

    rng = np.random.default_rng(1)
    gt = rng.integers(0, 255, (4, 64, 64, 3), dtype=np.uint8)
    speech = (0.3 * rng.standard_normal(4 * 640)).astype(np.float32)
    model, _ = load_trained_model(small_run)
    a2l = official.load_audio2lip(official_standins(1) / "Audio2Lip.pt")
    renderer = EDTalkRenderer(model, "audio", mouth_from_audio=audio2lip_mouth(a2l), batch=3)
    got = np.concatenate(list(renderer.render(gt, speech)))
    with torch.no_grad():
        lip = a2l(torch.from_numpy(mel_windows(melspectrogram(speech), 4))[:, None]).numpy().astype(np.float64)
    smoothed = np.stack([np.convolve(lip[:, c], RELEASE_SMOOTHING, mode="same") for c in range(lip.shape[1])], 1)
    clip = frames_to_tensor(gt)
    want = tensor_to_frames(animate_per_frame(model, clip[:1], mouth_coeffs=torch.from_numpy(smoothed).float(),
                                              pose=clip, expression=clip))
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1 and diff.mean() < 0.01  # float32 rounding of the smoothing only


def test_expression_schedule_follows_the_release_demo():
    from edtalk.generate import expression_indices

    def demo(n_driver, n_out):  # demo_EDTalk_V.py's loop, on frame indices
        clip = torch.arange(n_driver)[None]
        if clip.shape[1] > 20:
            clip = clip[:, :-20]
        while clip.shape[1] < n_out:
            clip = torch.cat([clip, torch.flip(clip, dims=[1])], dim=1)
        return [int(clip[0, min(i, clip.shape[1] - 1)]) for i in range(n_out)]

    for n in (1, 5, 20, 21, 30, 100):
        assert expression_indices(n, n).tolist() == demo(n, n)
    assert expression_indices(30, 30)[-3:].tolist() == [7, 8, 9]
    assert expression_indices(30, 30, "aligned").tolist() == list(range(30))


def test_release_smoothing_is_a_zero_padded_gaussian():
    from edtalk.generate import release_smoothing
    from edtalk.model.audio2motion import RELEASE_SMOOTHING

    x = torch.randn(7, 4)
    want = np.stack([np.convolve(x[:, c].numpy(), RELEASE_SMOOTHING, mode="same") for c in range(4)], 1)
    assert np.allclose(release_smoothing(x).numpy(), want, atol=1e-6)


def test_hdtf_segments_are_cut_from_the_full_video(tmp_path, capsys):
    """HDTF: ROOT/<video>.mp4 cut into 5-s segments; segment 2's source frame is the video's frame 125."""
    from benchmarks.datasets.mini_mead import write_lists
    from benchmarks.media import read_video, write_video

    frames = np.repeat(np.repeat(np.arange(150, dtype=np.uint8)[:, None, None, None], 32, 1), 32, 2).repeat(3, 3)
    t = np.arange(150 * 640) / 16000
    write_video(tmp_path / "hdtf" / "RD_Radio1_000.mp4", frames, fps=25, audio=0.3 * np.sin(2 * np.pi * 220 * t))
    lists = write_lists(tmp_path / "lists", ["RD_Radio1_000#1", "RD_Radio1_000#2"])
    assert main(["generate", "--protocol", "hdtf-edtalk", "--data", str(tmp_path / "hdtf"), "--lists", str(lists),
                 "--baseline", "copy-source", "--no-progress", "--out", str(tmp_path / "gen")]) == 0
    assert "2 cases: 2 generated" in capsys.readouterr().out
    first, second = (read_video(tmp_path / "gen" / f"RD_Radio1_000#{k}.mp4").frames for k in (1, 2))
    assert len(first) == 125 and len(second) == 25
    assert abs(int(first[0].mean()) - 0) <= 2 and abs(int(second[-1].mean()) - 125) <= 2


def test_a_trained_run_from_the_cli(mead, small_run, tmp_path, capsys):
    from benchmarks.media import probe_video

    assert _generate(mead, tmp_path / "v", "--run", str(small_run), "--setting", "video", "--max-clips", "1") == 0
    info = probe_video(tmp_path / "v" / f"{CASES[0]}.mp4")
    assert (info["width"], info["n_frames"]) == (64, N_FRAMES) and info["has_audio"]
    method = json.loads((tmp_path / "v" / "generate.json").read_text())["method"]
    assert method["kind"] == "edtalk-run" and list(method["checkpoints"]) == ["model.pt"]
    capsys.readouterr()
    assert _generate(mead, tmp_path / "a", "--run", str(small_run), "--setting", "audio") == 2
    assert "needs the run's audio-to-lip model" in capsys.readouterr().err
