"""`mouth-sync` against evaluation_eat's scripts/align_68.align_folder run on real-face clips.

mouth_sync_ref.npz: for each clip of clips.npz (gt, astro, tom), the dlib 68 landmarks fed to the
reference (face_alignment stubbed to return them, frames as lossless PNGs), and the first and last crops
align_folder wrote; astro has a faceless frame, on which align_folder gives up on the whole clip.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dlib")
pytest.importorskip("cv2")

from metrics.crops import crop  # noqa: E402
from metrics.crops.mouth_sync import MOUTH_SYNC_TARGET, mouth_sync_matrices, three_points  # noqa: E402
from metrics.errors import InputError  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


@pytest.fixture(scope="module")
def clips():
    return dict(np.load(FIXTURES / "clips.npz"))


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURES / "mouth_sync_ref.npz"))


@pytest.mark.parametrize("name", ["gt", "tom"])
def test_given_landmarks_the_crop_equals_eats(name, clips, ref):
    result = crop(clips[name], "mouth-sync", landmarks=ref[f"{name}_landmarks"])
    assert result.frames.shape == (len(clips[name]), 224, 224, 3) and int(ref[f"{name}_n"]) == len(result.frames)
    np.testing.assert_array_equal(result.frames[[0, -1]], ref[f"{name}_crops"])
    assert not any("dlib" in d for d in result.deviations)


def test_default_dlib_landmarks_are_recorded_as_a_deviation(clips, ref):
    result = crop(clips["gt"], "mouth-sync")
    np.testing.assert_array_equal(result.boxes, ref["gt_landmarks"])  # the same dlib points fed to EAT's code
    np.testing.assert_array_equal(result.frames[[0, -1]], ref["gt_crops"])
    assert result.detector == "dlib-68" and any("2D-FAN" in d for d in result.deviations)


def test_a_faceless_frame_drops_the_clip_like_eat(clips, ref):
    assert int(ref["astro_n"]) == 0  # align_folder: "preprocessing failed"
    result = crop(clips["astro"], "mouth-sync", landmarks=ref["astro_landmarks"])
    assert len(result.frames) == 0 and result.dropped == len(clips["astro"])
    assert "frame 3" in result.info["reason"]


def test_mouth_lands_on_its_target(clips, ref):
    """Averaged over the clip, the mapped eye and mouth centres sit on PC-AVS' three points; per frame the
    mouth is pulled towards (112, 120) by the smoothed bias."""
    marks = ref["gt_landmarks"]
    matrices = mouth_sync_matrices(marks)
    points = three_points(marks)
    mapped = np.einsum("tij,tkj->tki", matrices[:, :, :2], points) + matrices[:, None, :, 2]
    assert np.abs(mapped[0, 2] - [112, 120]).max() < 1e-9  # first frame: bias unsmoothed
    assert np.abs(mapped[:, :2].mean(0) - MOUTH_SYNC_TARGET[:2]).max() < 6  # eyes near (87|137, 59)


def test_callable_landmarks_and_shape_errors(clips, ref):
    marks = ref["tom_landmarks"]
    result = crop(clips["tom"], "mouth-sync", landmarks=lambda frames: marks)
    assert len(result.frames) == len(clips["tom"])
    with pytest.raises(InputError, match=r"\(T, 68, 2\)"):
        crop(clips["tom"], "mouth-sync", landmarks=marks[:2])


def test_a_re_readable_source_streams_both_passes(clips, ref):
    reads = []

    def source():
        reads.append(1)
        return iter(list(clips["gt"]))

    result = crop(source, "mouth-sync")
    assert len(reads) == 2  # one pass for the landmarks, one for the warp
    np.testing.assert_array_equal(result.frames[[0, -1]], ref["gt_crops"])
