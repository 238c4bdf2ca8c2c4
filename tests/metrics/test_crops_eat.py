"""EAT's crops (`eat-aligned`, `emotion-chip`) against evaluation_eat's own code run on real-face clips.

Fixtures (tests/fixtures/faces/): clips.npz holds the inputs (real-face clips of benchmarks.realfaces at
160 px: Grace Hopper twice (gt, fake), the astronaut with a faceless frame at index 3, Tom Hanks, two faces
of t1.jpg, and six frames driving the emotion chip's fallback cascade). eat_aligned_ref.npz and
emotion_chip_ref.npz hold what evaluation_eat's utils_crop.crop_and_align / utils_crop_psnr.crop_and_align,
test_lmd.get_lmd, test_psnr_ssim's loop (skimage, channel_axis=-1) and face_align_cuda.face_alignment
returned on them, run unchanged in a scratch checkout of yuexihang/evaluation_eat (dlib 20.0.1,
scikit-image 0.26, OpenCV 4.x).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dlib")
pytest.importorskip("cv2")

from metrics.crops import crop, styles  # noqa: E402
from metrics.crops.common import similarity  # noqa: E402
from metrics.crops.eat import EAT_TEMPLATE_68, contrast_stretch  # noqa: E402
from metrics.errors import InputError  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
CLIPS = ("gt", "fake", "astro", "tom", "two")


@pytest.fixture(scope="module")
def clips():
    return dict(np.load(FIXTURES / "clips.npz"))


@pytest.fixture(scope="module")
def aligned_ref():
    return dict(np.load(FIXTURES / "eat_aligned_ref.npz"))


@pytest.fixture(scope="module")
def chip_ref():
    return dict(np.load(FIXTURES / "emotion_chip_ref.npz"))


def grey_level_agreement(ours: np.ndarray, ref: np.ndarray) -> float:
    """Fraction of pixels (channels counted) within 1 grey level: the acceptance is >= 99.9 %."""
    assert ours.shape == ref.shape
    return float((np.abs(ours.astype(np.int16) - ref.astype(np.int16)) <= 1).mean())


def test_styles_are_registered():
    assert {"eat-aligned", "emotion-chip", "mouth-sync"} <= set(styles())


@pytest.mark.parametrize("name", CLIPS)
@pytest.mark.parametrize("roi", [False, True])
def test_eat_aligned_equals_eat(name, roi, clips, aligned_ref):
    key = name + ("_roi" if roi else "")
    result = crop(clips[name], "eat-aligned", roi=roi)
    assert result.frames.shape[1:] == (128, 128, 3) and result.frames.dtype == np.uint8
    np.testing.assert_array_equal(result.kept, aligned_ref[f"{key}_kept"])
    assert result.dropped == len(clips[name]) - len(result.kept)
    if f"{key}_crops" in aligned_ref:
        assert grey_level_agreement(result.frames, aligned_ref[f"{key}_crops"]) >= 0.999
        # measured: bit-identical (same dlib, same float32 Umeyama, same skimage warp)
        np.testing.assert_array_equal(result.frames, aligned_ref[f"{key}_crops"])


def test_faceless_frame_is_dropped_and_counted(clips, aligned_ref):
    result = crop(clips["astro"], "eat-aligned")
    assert 3 not in result.kept and result.dropped == 1
    assert result.provenance()["dropped"] == 1 and result.provenance()["kept"] == len(clips["astro"]) - 1


def test_eat_metrics_on_our_crops_reproduce_eats_numbers(clips, aligned_ref):
    """EAT's M-LMD/F-LMD (test_lmd.get_lmd) and pooled PSNR/SSIM (test_psnr_ssim) on the aligned crops,
    recomputed by this project's metrics from this project's crops, to 1e-3 relative."""
    from metrics.functional.landmarks import pair_indices
    from metrics.image import PeakSignalNoiseRatio, StructuralSimilarity
    from metrics.landmarks import Dlib68Detector, FaceLandmarkDistance, MouthLandmarkDistance

    fake = crop(clips["fake"], "eat-aligned").frames
    gt = crop(clips["gt"], "eat-aligned").frames
    detector = Dlib68Detector()  # EAT's LMD settings: upsample 0, BGR2GRAY of RGB
    m_lmd, f_lmd = MouthLandmarkDistance(detector, crop_size=128), FaceLandmarkDistance(detector, crop_size=128)
    m_lmd.update_frames(fake, gt)
    f_lmd.update_frames(fake, gt)
    assert m_lmd.compute() == pytest.approx(float(aligned_ref["m_lmd"]), rel=1e-3)
    assert f_lmd.compute() == pytest.approx(float(aligned_ref["f_lmd"]), rel=1e-3)
    ip, it = pair_indices(len(fake), len(gt))
    psnr, ssim = PeakSignalNoiseRatio(), StructuralSimilarity()
    psnr.update(fake[ip], gt[it])
    ssim.update(fake[ip], gt[it])
    assert psnr.compute() == pytest.approx(float(aligned_ref["psnr"]), rel=1e-3)
    assert ssim.compute() == pytest.approx(float(aligned_ref["ssim"]), rel=1e-3)


def test_template_and_fit_match_skimage():
    """The shipped template is EAT's base_68.npy; the Umeyama fit equals skimage's SimilarityTransform
    (EAT's estimator) bit for bit in float32 and float64."""
    import warnings

    from skimage.transform import SimilarityTransform

    assert EAT_TEMPLATE_68.shape == (68, 2) and EAT_TEMPLATE_68[30].tolist() == [66, 68]
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        src, dst = (rng.random((18, 2)) * 160).astype(dtype), (rng.random((18, 2)) * 160).astype(dtype)
        reference = SimilarityTransform()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # estimate() is deprecated in skimage 0.26
            reference.estimate(src, dst)
        np.testing.assert_array_equal(similarity(src, dst), reference.params)


def test_streams_an_iterator_like_an_array(clips):
    as_array = crop(clips["tom"], "eat-aligned")
    as_iter = crop(iter(list(clips["tom"])), "eat-aligned")
    np.testing.assert_array_equal(as_array.frames, as_iter.frames)
    np.testing.assert_array_equal(as_array.kept, as_iter.kept)


def test_two_faces_take_dlibs_first_detection(clips):
    """EAT takes rects[0]: dlib's most confident detection, here the larger face on the right."""
    result = crop(clips["two"], "eat-aligned")
    nose_x = result.boxes[0, 30, 0]
    assert nose_x > clips["two"].shape[2] / 2


@pytest.mark.parametrize("style", ["eat-aligned", "emotion-chip", "mouth-sync"])
def test_bad_input_is_one_line(style):
    frame = np.zeros((64, 64, 3), np.uint8)
    cases = {
        "grey (H, W)": (frame[..., 0], "grey"),
        "alpha": (np.zeros((64, 64, 4), np.uint8), "RGBA"),
        "16x16": (np.zeros((1, 16, 16, 3), np.uint8), "too small"),
        "float": (np.zeros((1, 64, 64, 3), np.float32), "uint8"),
        "grey clip": (np.zeros((2, 64, 64), np.uint8), "grey"),
    }
    for what, (bad, message) in cases.items():
        with pytest.raises(InputError, match=message) as info:
            crop(bad, style)
        assert "\n" not in str(info.value), what


def test_faceless_video_is_an_empty_result_not_a_crash():
    from benchmarks.realfaces import faceless_clip

    result = crop(faceless_clip(3, 96), "eat-aligned")
    assert result.frames.shape == (0, 128, 128, 3) and result.dropped == 3 and len(result.kept) == 0


# --- emotion-chip ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gt", "tom", "two"])
def test_emotion_chip_equals_eat(name, clips, chip_ref):
    result = crop(clips[name], "emotion-chip")
    np.testing.assert_array_equal(result.kept, chip_ref[f"{name}_kept"])
    assert result.frames.shape[1:] == (224, 224, 3) and result.deviations == []
    np.testing.assert_array_equal(result.frames[:1], chip_ref[f"{name}_chips"])  # first chip, full pixels
    # every chip: per-channel means equal EAT's to float precision
    np.testing.assert_allclose(result.frames.reshape(len(result.frames), -1, 3).mean(1),
                               chip_ref[f"{name}_channel_means"], atol=1e-9)


def test_emotion_chip_without_cnn_drops_the_faceless_frame(clips, chip_ref):
    result = crop(clips["astro"], "emotion-chip", cnn_fallback=False)
    np.testing.assert_array_equal(result.kept, chip_ref["astro_kept"])  # EAT's CNN found nothing there either
    assert result.detector == "dlib-hog" and result.dropped == 1


def test_contrast_stretch_matches_eats_lut_and_survives_its_division_by_zero():
    import cv2

    rng = np.random.default_rng(1)
    image = rng.integers(40, 200, (32, 32, 3), dtype=np.uint8)
    image[0, 0, 0] = 255  # 255 falls outside cv2.calcHist's [0, 255) range: EAT ignores it
    hist = cv2.calcHist([image], [0], None, [256], [0.0, 255.0]).ravel()
    low, high = int(np.flatnonzero(hist)[0]), int(np.flatnonzero(hist)[-1])
    lut = np.array([0 if i < low else 255 if i > high else int(255.0 * (i - low) / (high - low) + 0.5)
                    for i in range(256)], np.uint8)
    np.testing.assert_array_equal(contrast_stretch(image), cv2.LUT(image, lut))
    assert contrast_stretch(np.full((32, 32, 3), 77, np.uint8)) is None  # EAT: ZeroDivisionError


@pytest.mark.slow
def test_emotion_chip_fallback_cascade_matches_eat(clips, chip_ref):
    """Frames found by HOG, by the mmod CNN, after the contrast stretch, after CLAHE, after equalisation,
    and a flat frame on which EAT crashes. With eat_colour_bug=True the result equals EAT's bit for bit;
    by default the CLAHE/equalisation frames are chipped in RGB and the result says so."""
    cascade = clips["cascade"]
    exact = crop(cascade, "emotion-chip", eat_colour_bug=True)
    np.testing.assert_array_equal(exact.kept, chip_ref["cascade_kept"])
    np.testing.assert_array_equal(exact.frames, chip_ref["cascade_chips"])
    assert chip_ref["cascade_crashed"].tolist() == [5] and 5 not in exact.kept
    ours = crop(cascade, "emotion-chip")
    assert ours.info["found_by"] == {"hog": 1, "mmod": 1, "mmod+stretch": 1, "mmod+clahe": 1, "mmod+equalise": 1}
    np.testing.assert_array_equal(ours.frames[:3], chip_ref["cascade_chips"][:3])  # before the colour bug
    assert any("CLAHE" in d for d in ours.deviations) and any("divides by zero" in d for d in ours.deviations)


@pytest.mark.slow
def test_emotion_chip_faceless_frame_after_full_cascade(clips, chip_ref):
    result = crop(clips["astro"], "emotion-chip")
    np.testing.assert_array_equal(result.kept, chip_ref["astro_kept"])
    np.testing.assert_array_equal(result.frames[:1], chip_ref["astro_chips"])


@pytest.mark.parametrize("shift", [20, 30])
def test_roi_square_left_of_the_frame_drops_the_frame_like_eat(shift, clips):
    """utils_crop_psnr's ROI slice starts at a negative column here: numpy gives an empty array and EAT's
    resize fails, so the frame is dropped (checked by running utils_crop_psnr.crop_and_align on these
    frames: False for both shifts, while utils_crop.crop_and_align keeps them)."""
    frame = clips["gt"][0]
    moved = np.concatenate([frame[:, shift:], np.repeat(frame[:, -1:], shift, 1)], 1)
    assert len(crop(moved, "eat-aligned").kept) == 1
    result = crop(moved, "eat-aligned", roi=True)
    assert len(result.kept) == 0 and result.dropped == 1
