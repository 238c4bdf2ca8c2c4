"""syncnet-track (metrics.crops.syncnet_track) against syncnet_python's own run_pipeline code.

tests/fixtures/faces/syncnet_track_reference.npz was made by running run_pipeline.py's `track_shot` and
`crop_video` (instrumented to keep the frames it hands its video writer) on two real-face clips, given
the same detections (dlib HOG on the decoded frames) and the whole clip as one shot:
clip a: Grace Hopper talking, 44 frames at 192 px, frames 20-23 without a face (interpolated over);
clip b: two faces of insightface's t1.jpg drifting, 30 frames (two tracks).
Per clip: the H.264 mp4 (`<c>_mp4`, decoded here as there), `<c>_detections` rows (frame, x0, y0, x1, y1,
score), `<c>_options` (min_track, num_failed_det, min_face_size, crop_scale), and per track the frames,
interpolated boxes, smoothed (s, x, y), the pixel sum of every crop and four full crops.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from crop_fixtures import clip_and_detections

from metrics.crops import crop
from metrics.crops.syncnet_track import content_shots, syncnet_track
from metrics.errors import InputError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "syncnet_track_reference.npz"


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(FIXTURE))




@pytest.mark.parametrize("name", ["a", "b"])
def test_tracks_and_crops_match_run_pipeline_given_the_same_detections(reference, name, tmp_path_factory):
    frames, detections = clip_and_detections(reference, name, tmp_path_factory)
    min_track, num_failed_det, min_face_size, crop_scale = reference[f"{name}_options"]
    n_tracks = int(reference[f"{name}_ntracks"])
    assert n_tracks == (1 if name == "a" else 2)
    for k in range(n_tracks):
        result = crop(frames, "syncnet-track", detections=detections, shots=[(0, len(frames))], track=k,
                      min_track=int(min_track), num_failed_det=int(num_failed_det), min_face_size=min_face_size,
                      crop_scale=crop_scale)
        np.testing.assert_array_equal(result.kept, reference[f"{name}_track{k}_frame"])
        assert result.frames.shape == (len(result.kept), 224, 224, 3)
        sums = result.frames.reshape(len(result.kept), -1).astype(np.int64).sum(1)
        np.testing.assert_array_equal(sums, reference[f"{name}_track{k}_crop_sum"])
        ours = result.frames[reference[f"{name}_track{k}_crop_index"]].astype(int)
        diff = np.abs(ours - reference[f"{name}_track{k}_crops"])
        assert diff.max() <= 1 and (diff == 0).mean() >= 0.999
        assert result.info["tracks"][k]["start"] == reference[f"{name}_track{k}_frame"][0]
        assert result.dropped == len(frames) - len(result.kept)


def test_track_boxes_and_smoothing_match(reference, tmp_path_factory):
    from metrics.crops.syncnet_track import crop_windows, track_shot

    frames, detections = clip_and_detections(reference, "b", tmp_path_factory)
    faces = [[(i, tuple(d[:4])) for d in detections[i]] for i in range(len(frames))]
    tracks = track_shot(faces, 25, 10, 40)
    for k, t in enumerate(tracks):
        np.testing.assert_allclose(t["bbox"], reference[f"b_track{k}_bbox"], rtol=0, atol=1e-9)
        np.testing.assert_allclose(np.stack(crop_windows(t["bbox"]), 1), reference[f"b_track{k}_sxy"], atol=1e-9)


def test_default_rules_drop_a_short_clip_and_say_so(reference, tmp_path_factory):
    frames, detections = clip_and_detections(reference, "a", tmp_path_factory)
    result = syncnet_track(frames, detections=detections)  # min_track 100: a 44-frame clip is under it
    assert len(result.kept) == 0 and result.dropped == len(frames) and result.frames.shape == (0, 224, 224, 3)
    # the faceless gap is a cut for the ContentDetector (the second, 4 frames later, is under min_scene_len)
    assert result.info["shots"] == 2 and result.info["short_shots"] == 2 and result.info["tracks"] == []
    result = syncnet_track(frames, detections=detections, shots=[(0, 44)], min_track=20, min_face_size=130)
    assert result.info["small_tracks"] == 1 and result.info["small_track_frames"] == 44 and result.dropped == 44
    result = syncnet_track(frames, detections=detections, shots=[(0, 44)], min_track=43, min_face_size=40)
    assert result.info["short_tracks"] == 1 and result.info["short_track_faces"] == 40


def test_two_faces_take_the_longest_track_and_list_both(reference, tmp_path_factory):
    frames, detections = clip_and_detections(reference, "b", tmp_path_factory)
    result = syncnet_track(frames, detections=detections, shots=[(0, 30)], min_track=10, min_face_size=40)
    assert [t["end"] - t["start"] for t in result.info["tracks"]] == [30, 25]
    assert result.info["chosen_track"] == 0 and len(result.kept) == 30
    with pytest.raises(InputError, match="track 2 asked for, the clip has 2"):
        syncnet_track(frames, detections=detections, shots=[(0, 30)], min_track=10, min_face_size=40, track=2)


def test_content_detector_cuts_between_shots_only():
    from benchmarks.realfaces import faceless_clip, talking_clip

    talk = talking_clip("grace_hopper", n_frames=20, size=128, seed=0, audio=False).frames
    other = faceless_clip(n_frames=20, size=128, seed=1)
    assert content_shots(talk) == [(0, 20)]
    assert content_shots(np.concatenate([talk, other])) == [(0, 20), (20, 40)]
    # a second cut closer than 15 frames to the first is not taken (min_scene_len)
    assert content_shots(np.concatenate([talk, other[:5], talk[:10]])) == [(0, 20), (20, 35)]


def test_detector_runs_and_is_recorded_as_a_deviation(monkeypatch, tmp_path):
    from benchmarks.realfaces import talking_clip

    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path))  # no sfd_face.pth here
    frames = talking_clip("astronaut", n_frames=14, size=192, seed=0, audio=False).frames
    result = crop(frames, "syncnet-track", detector="dlib-hog", shots=[(0, 14)], min_track=10, min_face_size=40)
    assert result.detector == "dlib-hog" and "instead of syncnet_python's S3FD" in result.deviations[0]
    assert len(result.kept) == 14 and result.frames.shape == (14, 224, 224, 3)
    provenance = result.provenance()
    assert provenance["detector"] == "dlib-hog" and provenance["dropped"] == 0
    with pytest.raises(Exception, match="sfd_face.pth"):
        crop(frames[:2], "syncnet-track", detector="s3fd")


def test_bad_input_is_one_line():
    with pytest.raises(InputError, match="grey \\(T, H, W\\).*crops need RGB"):
        syncnet_track(np.zeros((3, 64, 64), np.uint8))
    with pytest.raises(InputError, match="4 channels \\(RGBA\\)"):
        syncnet_track(np.zeros((3, 64, 64, 4), np.uint8))
    with pytest.raises(InputError, match="empty clip"):
        syncnet_track(np.zeros((0, 64, 64, 3), np.uint8))
    with pytest.raises(InputError, match="3 detection lists for 2 frames"):
        syncnet_track(np.zeros((2, 64, 64, 3), np.uint8), detections=[np.zeros((0, 5))] * 3)
    with pytest.raises(InputError, match="16x16 pixels, too small to hold a detectable face"):
        syncnet_track(np.full((5, 16, 16, 3), 128, np.uint8), detector="dlib-hog")
    plain = syncnet_track(np.full((5, 64, 64, 3), 128, np.uint8), detector="dlib-hog")  # no face: all counted
    assert len(plain.kept) == 0 and plain.dropped == 5 and plain.info["frames_with_faces"] == 0


def test_streams_from_a_rereadable_source(reference, tmp_path_factory):
    frames, detections = clip_and_detections(reference, "b", tmp_path_factory)
    reads = []

    def source():
        reads.append(1)
        return (f for f in frames)

    options = dict(detections=detections, shots=[(0, 30)], min_track=10, min_face_size=40)
    streamed = syncnet_track(source, **options)
    assert len(reads) == 2 and np.array_equal(streamed.frames, syncnet_track(frames, **options).frames)
    once = syncnet_track(iter(list(frames)), **options)  # a one-shot iterator is held for the second pass
    assert np.array_equal(once.frames, streamed.frames)


def test_shots_match_pyscenedetect_content_detector(tmp_path):
    """tests/fixtures/faces/scenedetect_reference.npz: PySceneDetect 0.5.1's own ContentDetector.process_frame
    on two decoded clips (talk, faceless, talk, faceless, talk; 256 px and 416 px, the latter subsampled by 2
    as VideoManager's default downscale does): content_val per frame and the shots get_scenes_from_cuts made."""
    from benchmarks.media import read_video
    from metrics.crops.syncnet_track import content_values

    reference = np.load(FIXTURE.with_name("scenedetect_reference.npz"))
    for name in ("a", "b"):
        path = tmp_path / f"{name}.mp4"
        path.write_bytes(reference[f"{name}_mp4"].tobytes())
        frames = read_video(path).frames
        np.testing.assert_allclose(content_values(frames), reference[f"{name}_content_val"], rtol=1e-12)
        assert content_shots(frames) == [tuple(s) for s in reference[f"{name}_shots"].tolist()]
