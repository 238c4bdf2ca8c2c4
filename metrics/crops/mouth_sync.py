"""`mouth-sync`: the mouth-centred 224x224 crop EAT (after PC-AVS) feeds SyncNet for Sync_conf.

Reference: evaluation_eat code/_fast_align.py + code/scripts/align_68.py (align_folder). Per clip:
  68 landmarks per frame; three points per frame = means of points 36-41 (one eye), 42-47 (other eye),
  60-67 (inner mouth); one similarity M (Umeyama) from their average over the whole clip onto
  (87, 59), (137, 59), (112, 120); per frame, a translation bias moving the M-mapped mouth centre to
  (112, 120), smoothed b_t = 0.2 b_(t-1) + 0.8 b_t; cv2.warpAffine of the frame by M + b_t to 224x224
  (bilinear, black outside).
  A clip in which any frame has no face is dropped whole (align_folder returns "preprocessing failed"
  and no video is written): the result is empty with dropped = T, and info says which frame.

Landmarks: EAT uses face_alignment's 2D-FAN (metrics.crops.fan: face_alignment 1.3.4's network, crop and
heatmap decoding, parity-tested on seeded weights). It runs when its weights are found (`fan=` a path, else
`locate("fan-2d")`), on face_alignment's own S3FD boxes when "s3fd-fa" weights are found, else on dlib HOG
boxes (recorded). Without FAN weights dlib's 68-point predictor runs (HOG, upsample 1, first detection), and
the result records that deviation. `landmarks=` overrides both: a (T, 68, 2) array (NaN rows = no face) or
a callable frames -> (T, 68, 2).
Other deliberate differences: EAT round-trips frames through JPEG (cv2.imwrite quality 95) before the
landmarks and the warp, and smooths the bias in the order face_alignment's glob lists the frame files
(directory order, not time order); here frames are used as given and smoothed in time order.
"""
from __future__ import annotations

import numpy as np

from metrics.crops import CropResult, register
from metrics.crops.common import iter_frames, similarity
from metrics.errors import InputError

__all__ = ["MOUTH_SYNC_TARGET", "mouth_sync", "three_points", "mouth_sync_matrices"]

# PC-AVS' canonical positions of the two eye centres and the inner-mouth centre in the 224x224 crop
MOUTH_SYNC_TARGET = np.array([[87, 59], [137, 59], [112, 120]], dtype=np.float32)
MOUTH_CENTRE = np.array([112, 120])
BIAS_MEMORY = 0.2  # weight of the previous frame's bias
SIZE = 224


def three_points(landmarks: np.ndarray) -> np.ndarray:
    """(T, 3, 2): eye centres (36-41, 42-47) and inner-mouth centre (60-67) of (T, 68, 2) landmarks."""
    lm = np.asarray(landmarks, np.float64)
    return np.stack([lm[:, 36:42].mean(1), lm[:, 42:48].mean(1), lm[:, 60:68].mean(1)], 1)


def mouth_sync_matrices(landmarks: np.ndarray) -> np.ndarray:
    """(T, 2, 3) per-frame affine matrices of EAT's crop, for a clip whose every frame has landmarks."""
    points = three_points(landmarks)
    # the average is a running float64 sum over frames, as align_folder accumulates it
    total = 0
    for p in points:
        total = total + p
    m = similarity(total / len(points), MOUTH_SYNC_TARGET)[:2]
    previous = None
    out = np.empty((len(points), 2, 3))
    for t, p in enumerate(points):
        mapped = np.concatenate([p, np.ones((3, 1))], 1) @ m.T
        bias = MOUTH_CENTRE - mapped[2]
        if previous is not None:
            bias = previous * BIAS_MEMORY + bias * (1 - BIAS_MEMORY)
        previous = bias
        out[t] = m
        out[t, :, 2] = m[:, 2] + bias
    return out


def _dlib_landmarks(frames) -> np.ndarray:
    import cv2

    from metrics.crops.eat import dlib_model, hog_detector

    detector, predictor = hog_detector(), dlib_model("dlib-68")
    out = []
    for frame in frames:
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        rects = detector(gray, 1)
        out.append(np.full((68, 2), np.nan) if len(rects) == 0
                   else np.array([(p.x, p.y) for p in predictor(gray, rects[0]).parts()], np.float64))
    return np.array(out).reshape(-1, 68, 2)


def _fan(path, device):
    """(FanLandmarks, "") when FAN weights are found; (None, why) otherwise. An explicit `path` must exist."""
    from metrics.errors import MissingWeightsError

    try:
        from metrics.crops.fan import FanLandmarks

        return FanLandmarks(path=path, device=device), ""
    except MissingWeightsError as exc:
        if path is not None:
            raise
        return None, str(exc).split(";")[0]


@register("mouth-sync")
def mouth_sync(frames, landmarks=None, fan=None, device=None) -> CropResult:
    """EAT's SyncNet crop of one clip (see the module docstring): (T, 224, 224, 3), or empty when a frame
    has no face. boxes: (T, 68, 2) landmarks used. The clip is read twice (landmarks, then warp): an array
    or a zero-argument callable returning a fresh iterator (e.g. `lambda: iter_video(path)`) streams; a
    one-shot iterator is held in memory."""
    import cv2

    size = SIZE
    if callable(frames) and not isinstance(frames, np.ndarray):
        source = frames  # re-readable: one pass for landmarks, one for the warp
    elif not isinstance(frames, np.ndarray):
        frames = list(iter_frames(frames, "mouth-sync"))
        frames = np.stack(frames) if frames else np.zeros((0, 64, 64, 3), np.uint8)
    if not callable(frames) or isinstance(frames, np.ndarray):
        frames = np.asarray(frames)
        if frames.ndim == 3 and frames.shape[-1] == 3:
            frames = frames[None]
        source = frames
    deviations = []
    fan_model, why = (None, "") if landmarks is not None else _fan(fan, device)
    if fan_model is not None:
        marks = fan_model(iter_frames(source, "mouth-sync"))
        deviations += fan_model.deviations
        detector = fan_model.name
        n = len(marks)
    elif landmarks is None:
        marks = _dlib_landmarks(iter_frames(source, "mouth-sync"))
        deviations.append(f"landmarks: dlib 68 (HOG, upsample 1) instead of EAT's face_alignment 2D-FAN ({why})")
        detector = "dlib-68"
        n = len(marks)
    else:
        n = sum(1 for _ in iter_frames(source, "mouth-sync"))  # checks every frame before the user's detector
        if callable(landmarks):
            marks = landmarks(source() if callable(source) else source)
        else:
            marks = landmarks
        detector = getattr(landmarks, "name", "user landmarks")
    marks = np.asarray(marks, np.float64)
    if marks.shape != (n, 68, 2):
        raise InputError(f"mouth-sync: landmarks must be (T, 68, 2) for the {n} frames, got {marks.shape}")
    deviations.append("frames used as given (EAT round-trips them through JPEG before landmarks and warp)")
    faceless = np.flatnonzero(~np.isfinite(marks).all(axis=(1, 2)))
    info = {"frames_in": n, "reference": "evaluation_eat code/scripts/align_68.py align_folder"}
    if n == 0 or len(faceless):
        info["reason"] = ("empty clip" if n == 0 else
                          f"no face in frame {int(faceless[0])} ({len(faceless)} frame(s)): EAT drops the whole clip")
        return CropResult(frames=np.zeros((0, size, size, 3), np.uint8), kept=np.zeros(0, np.int64),
                          boxes=np.zeros((0, 68, 2)), style="mouth-sync", detector=detector,
                          deviations=deviations, dropped=n, info=info)
    matrices = mouth_sync_matrices(marks)
    crops = np.empty((n, size, size, 3), np.uint8)
    for t, frame in enumerate(iter_frames(source, "mouth-sync")):
        crops[t] = cv2.warpAffine(frame, matrices[t], (size, size), borderValue=0.0)
    return CropResult(frames=crops, kept=np.arange(n, dtype=np.int64), boxes=marks, style="mouth-sync",
                      detector=detector, deviations=deviations, dropped=0, info=info)
