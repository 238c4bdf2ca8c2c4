"""edtalk-preprocess (metrics.crops.edtalk_preprocess) against EDTalk's own data_preprocess/crop_video.py.

tests/fixtures/faces/edtalk_preprocess_reference.npz was made by running crop_video.py's `process_video`
(its trajectories and `compute_bbox` commands) on two real-face clips, given the same detections (dlib HOG
on the decoded frames), and the first command (the one whose output the release keeps) with ffmpeg 9.0.2,
PNG frames in and out instead of mp4 so that pixels compare losslessly:
clip a: Grace Hopper talking, 30 frames at 256 px, frames 16-18 faceless (two trajectories);
clip b: two faces of insightface's t1.jpg drifting, 20 frames (two trajectories, one at the border).
Per clip: the mp4 (`<c>_mp4`), `<c>_detections` rows (frame, x0, y0, x1, y1, score), the release's ffmpeg
`<c>_commands`, the pixel sum of every output frame and three full output frames.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from crop_fixtures import clip_and_detections

from metrics.crops import crop
from metrics.crops.edtalk_preprocess import clip_box, edtalk_preprocess, trajectories
from metrics.errors import InputError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "edtalk_preprocess_reference.npz"
COMMAND = re.compile(r"-ss (\S+) -t (\S+) -filter:v \"crop=(\d+):(\d+):(\d+):(\d+), scale=256:256\"")


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(FIXTURE))




@pytest.mark.parametrize("name", ["a", "b"])
def test_trajectories_and_boxes_match_the_release_commands(reference, name, tmp_path_factory):
    frames, detections = clip_and_detections(reference, name, tmp_path_factory)
    found, too_short = trajectories(detections)
    commands = [COMMAND.search(str(c)).groups() for c in reference[f"{name}_commands"]]
    assert len(found) == len(commands) == 2 and too_short == 0
    for (tube, start, end), (ss, t, w, h, left, top) in zip(found, commands, strict=True):
        assert float(ss) == start / 25 and abs(float(t) - (end - start) / 25) < 1e-9
        assert clip_box(tube, frames.shape[1:3]) == (int(left), int(top), int(w), int(h))


@pytest.mark.parametrize("name", ["a", "b"])
def test_crops_match_the_release_ffmpeg_output(reference, name, tmp_path_factory):
    frames, detections = clip_and_detections(reference, name, tmp_path_factory)
    result = crop(frames, "edtalk-preprocess", detections=detections)
    sums = reference[f"{name}_crop_sum"]
    assert result.frames.shape == (len(sums), 256, 256, 3) and result.kept.tolist() == list(range(len(sums)))
    assert result.dropped == len(frames) - len(sums) and result.info["chosen_trajectory"] == 0
    ours = result.frames[reference[f"{name}_crop_index"]].astype(int)
    diff = np.abs(ours - reference[f"{name}_crops"])
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.999
    per_frame = np.abs(result.frames.reshape(len(sums), -1).astype(np.int64).sum(1) - sums)
    assert per_frame.max() <= 0.001 * 256 * 256 * 3


def test_another_trajectory_and_faceless_clip(reference, tmp_path_factory):
    frames, detections = clip_and_detections(reference, "a", tmp_path_factory)
    second = edtalk_preprocess(frames, detections=detections, trajectory=1)
    assert second.kept[0] == 19 and second.kept[-1] == 28  # the last detected frame (29) is outside -t
    with pytest.raises(InputError, match="trajectory 2 asked for, the clip has 2"):
        edtalk_preprocess(frames, detections=detections, trajectory=2)
    none = edtalk_preprocess(frames, detections=[np.zeros((0, 5))] * len(frames))
    assert len(none.kept) == 0 and none.dropped == len(frames) and none.info["trajectories"] == []


def test_a_face_in_one_frame_only_is_not_cut():
    dets = [np.array([[10, 10, 50, 50, 1.0]])] + [np.zeros((0, 5))] * 3
    found, too_short = trajectories(dets)
    assert found == [] and too_short == 1


def test_runs_a_detector_and_records_the_deviation(tmp_path, monkeypatch):
    from benchmarks.realfaces import talking_clip

    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path))
    frames = talking_clip("grace_hopper", n_frames=6, size=192, seed=0, audio=False).frames
    result = crop(frames, "edtalk-preprocess", detector="dlib-hog")
    assert result.detector == "dlib-hog" and "face_alignment's S3FD" in result.deviations[0]
    assert result.frames.shape == (5, 256, 256, 3) and result.dropped == 1


def test_bad_input_is_one_line():
    with pytest.raises(InputError, match="grey \\(T, H, W\\)"):
        edtalk_preprocess(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(InputError, match="RGBA"):
        edtalk_preprocess(np.zeros((2, 32, 32, 4), np.uint8))
    with pytest.raises(InputError, match="16x16 pixels, too small"):
        edtalk_preprocess(np.full((3, 16, 16, 3), 90, np.uint8), detector="dlib-hog")
    with pytest.raises(InputError, match="empty clip"):
        edtalk_preprocess(np.zeros((0, 64, 64, 3), np.uint8))
    plain = edtalk_preprocess(np.full((3, 64, 64, 3), 90, np.uint8), detector="dlib-hog")
    assert len(plain.kept) == 0 and plain.dropped == 3


def test_streams_from_a_rereadable_source(reference, tmp_path_factory):
    frames, detections = clip_and_detections(reference, "a", tmp_path_factory)
    reads = []

    def source():
        reads.append(1)
        return (f for f in frames)

    streamed = edtalk_preprocess(source, detections=detections, trajectory=1)
    assert len(reads) == 2
    assert np.array_equal(streamed.frames, edtalk_preprocess(frames, detections=detections, trajectory=1).frames)


# edtalk-source: tests/fixtures/faces/edtalk_source_reference.npz holds what the release's own
# data_preprocess/crop_image2.py `crop_image` wrote for skimage's astronaut and matplotlib's Grace Hopper
# (benchmarks.realfaces.load_photo, saved losslessly for it); for two_face_frame it wrote nothing.
SOURCE_FIXTURE = FIXTURE.with_name("edtalk_source_reference.npz")


@pytest.mark.parametrize("photo", ["astronaut", "grace_hopper"])
def test_source_photo_crop_matches_crop_image2(photo):
    from benchmarks.realfaces import load_photo

    expected = np.load(SOURCE_FIXTURE)[photo]
    result = crop(load_photo(photo), "edtalk-source")  # one (H, W, 3) photo
    diff = np.abs(result.frames[0].astype(int) - expected)
    assert result.frames.shape == (1, 256, 256, 3) and diff.max() <= 1 and (diff == 0).mean() >= 0.999
    assert result.boxes.shape == (1, 47, 2) and result.info["faces"] == [1]


def test_source_photo_faces_other_than_one():
    from benchmarks.realfaces import faceless_clip, two_face_frame

    assert "two_faces" not in np.load(SOURCE_FIXTURE)  # the release writes nothing for two faces
    with pytest.raises(InputError, match="2 faces \\(x 11-73, x 135-225\\).*--face 0..1"):
        crop(two_face_frame(256)[None], "edtalk-source")
    right = crop(two_face_frame(256)[None], "edtalk-source", face=1)
    assert right.frames.shape == (1, 256, 256, 3) and right.boxes[0, :, 0].mean() > 128
    with pytest.raises(InputError, match="no face found.*--no-crop"):
        crop(faceless_clip(n_frames=1, size=128), "edtalk-source")
    with pytest.raises(InputError, match="16x16 pixels, too small"):
        crop(np.full((16, 16, 3), 200, np.uint8), "edtalk-source")
    with pytest.raises(InputError, match="grey"):
        crop(np.zeros((64, 64), np.uint8), "edtalk-source")
    with pytest.raises(InputError, match="RGBA"):
        crop(np.zeros((64, 64, 4), np.uint8), "edtalk-source")
    with pytest.raises(InputError, match="no image"):
        crop(np.zeros((0, 64, 64, 3), np.uint8), "edtalk-source")


def test_auto_detector_is_the_releases_s3fd_when_its_weights_are_found(tmp_path, monkeypatch):
    import torch

    from metrics.crops.s3fd import rename_keys, seeded_state_dict

    frames = np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8)
    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path))
    fallback = edtalk_preprocess(frames)
    assert fallback.detector == "dlib-hog" and "s3fd-619a316812.pth not found" in fallback.deviations[0]
    torch.save(rename_keys(seeded_state_dict(0), to_face_alignment=True), tmp_path / "s3fd-619a316812.pth")
    result = edtalk_preprocess(frames)
    assert result.detector == "s3fd-fa" and result.deviations == [] and result.info["frames_with_faces"] == 2
