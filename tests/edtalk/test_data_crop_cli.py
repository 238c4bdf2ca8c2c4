"""`edtalk data crop` end to end on a tiny MEAD-layout tree of real-face clips (benchmarks.realfaces)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks.datasets import rawcrop
from edtalk.cli import main

CLIP = "M003/video/front/angry/level_3/{}.mp4"


@pytest.fixture(scope="module")
def mead_tree(tmp_path_factory):
    from benchmarks.media import write_video
    from benchmarks.realfaces import faceless_clip, talking_clip

    root = tmp_path_factory.mktemp("mead")
    talk = talking_clip("grace_hopper", n_frames=24, size=256, seed=0)
    (root / CLIP.format("001")).parent.mkdir(parents=True)
    write_video(root / CLIP.format("001"), talk.frames, fps=30)  # MEAD is 30 fps; no audio in the video
    rawcrop._write_m4a(root / "M003/audio/angry/level_3/001.m4a", talk.audio, 16000)
    write_video(root / CLIP.format("002"), faceless_clip(n_frames=10, size=128), fps=25)
    (root / CLIP.format("003")).write_bytes(b"not a video at all")
    (root / "M003/video/left_30/angry/level_3").mkdir(parents=True)
    write_video(root / "M003/video/left_30/angry/level_3/001.mp4", talk.frames[:5], fps=30)
    return root


def test_crops_a_mead_tree_with_audio_and_a_summary(mead_tree, tmp_path, capsys):
    from benchmarks.media import probe_video, read_audio, read_video

    out = tmp_path / "out"
    assert main(["data", "crop", str(mead_tree), "--out", str(out), "--detector", "dlib-hog", "--no-progress"]) == 0
    line = capsys.readouterr().out
    assert "3 clips: 1 cropped, 1 without a face (M003/video/front/angry/level_3/002.mp4), 1 unreadable" in line
    assert "003.mp4" in line and "crop_summary.json" in line
    info = probe_video(out / CLIP.format("001"))
    clip = read_video(out / CLIP.format("001"))
    # 24 frames at 30 fps are 20 at 25 fps; the release cuts frames start .. end - 1 of the trajectory
    assert abs(info["fps"] - 25) < 1e-6 and clip.frames.shape == (19, 256, 256, 3) and info["has_audio"]
    speech = read_audio(out / "M003/audio/angry/level_3/001.m4a")
    assert abs(len(speech) / 16000 - 19 / 25) < 0.05 and np.abs(speech).max() > 0.01
    summary = json.loads((out / rawcrop.SUMMARY_NAME).read_text())
    assert summary["clips"] == 3 and summary["cropped"] == 1 and summary["other_cameras_skipped"] == 1
    assert summary["no_face"] == ["M003/video/front/angry/level_3/002.mp4"]
    assert summary["unreadable"][0]["source"].endswith("003.mp4")
    record = next(r for r in summary["records"] if r["status"] == "cropped")
    assert record["detector"] == "dlib-hog" and "face_alignment's S3FD" in record["deviations"][0]
    assert record["source_fps"] == 30 and record["audio"] == "M003/audio/angry/level_3/001.m4a"
    assert not (out / "M003/video/left_30").exists()


def test_a_rerun_resumes_and_an_interrupted_clip_is_redone(mead_tree, tmp_path, monkeypatch):
    out = tmp_path / "out"
    rawcrop.crop_tree(mead_tree, out, detector="dlib-hog", progress=False)
    done = out / CLIP.format("001")
    stamp = done.stat().st_mtime_ns
    calls = []
    real = rawcrop.crop_clip

    def counted(root, video, *args, **kwargs):
        calls.append(video)
        return real(root, video, *args, **kwargs)

    monkeypatch.setattr(rawcrop, "crop_clip", counted)
    rawcrop.crop_tree(mead_tree, out, detector="dlib-hog", progress=False)
    assert [c.name for c in calls] == ["003.mp4"]  # only the unreadable one is tried again
    assert done.stat().st_mtime_ns == stamp
    (out / rawcrop.RECORDS_DIR / "M003/video/front/angry/level_3/001.json").unlink()  # killed before the record
    calls.clear()
    summary = rawcrop.crop_tree(mead_tree, out, detector="dlib-hog", progress=False)
    assert sorted(c.name for c in calls) == ["001.mp4", "003.mp4"] and summary["cropped"] == 1
    assert not list(out.rglob("tmp*.mp4")) and not list(out.rglob("*.tmp"))


def test_plain_folder_with_audio_in_the_video_and_syncnet_style(tmp_path):
    from benchmarks.media import probe_video
    from benchmarks.realfaces import talking_clip, write_clip

    raw = tmp_path / "raw"
    raw.mkdir()
    write_clip(raw / "talk.mp4", talking_clip("astronaut", n_frames=14, size=192, seed=1))
    summary = rawcrop.crop_tree(raw, tmp_path / "out", style="syncnet-track", detector="dlib-hog", progress=False,
                                options={"shots": [(0, 14)], "min_track": 10, "min_face_size": 40})
    record = summary["records"][0]
    assert summary["cropped"] == 1 and record["audio"] == "talk.mp4" and record["detector"] == "dlib-hog"
    info = probe_video(tmp_path / "out" / "talk.mp4")
    assert (info["width"], info["height"], info["n_frames"]) == (224, 224, 14) and info["has_audio"]


def test_bad_arguments_are_one_line(tmp_path, capsys):
    assert main(["data", "crop", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "not a directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["data", "crop", str(tmp_path / "empty"), "--out", str(tmp_path / "o")]) == 2
    assert "no videos" in capsys.readouterr().err
    assert main(["data", "crop", str(tmp_path / "empty"), "--out", str(tmp_path / "o"), "--style", "eat"]) == 2
    assert "unknown crop style" in capsys.readouterr().err
    assert main(["data", "crop", str(tmp_path), "--out", str(tmp_path / "inside")]) == 2
    assert "lies inside" in capsys.readouterr().err
