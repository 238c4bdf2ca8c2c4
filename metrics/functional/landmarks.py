"""M-LMD and F-LMD: landmark distance between generated and ground-truth faces (EAT's definition).

Reference: yuangan/evaluation_eat `code/test_lmd.py`. Per frame, each 68-point dlib landmark set is
restricted to the subset (mouth = points 48-67, 20 points; face = all 68), centred on its own mean
(translation only, no scale normalisation: `calibrate_lmk` with adjust = -1), and the Euclidean
distances between corresponding points are averaged:

.. math::  LD_t = \\frac{1}{n} \\sum_{i} \\| (p_{t,i} - \\bar p_t) - (q_{t,i} - \\bar q_t) \\|_2

A video's LMD is the mean of LD_t over its valid frames (frames where both sides have a face), which
equals EAT's `sum_t sum_i d / (N_valid * n)`. Units are pixels of the frames the landmarks were taken
on: EAT uses 128x128 aligned crops, so numbers on 256x256 frames are about twice as large.

Also here, because every face metric shares them: `check_frames` (uint8 (T, H, W, 3) validation) and
`pair_indices` (EAT's uniform pairing of a generated and a ground-truth video of different lengths).
"""

from __future__ import annotations

import numpy as np

from metrics.errors import InputError

__all__ = ["SUBSETS", "check_frames", "pair_indices", "landmark_distance_per_frame", "landmark_distance"]

#: dlib 68-point indices per subset (imutils' FACIAL_LANDMARKS_IDXS["mouth"] = (48, 68)).
SUBSETS: dict[str, np.ndarray] = {"mouth": np.arange(48, 68), "face": np.arange(68)}


def check_frames(frames, what: str = "frames") -> np.ndarray:
    """`frames` as a uint8 (T, H, W, 3) array; a single (H, W, 3) frame becomes T = 1."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3 or len(arr) == 0:
        raise InputError(
            f"{what} must be uint8 RGB (T, H, W, 3) with T >= 1, got "
            f"{arr.dtype} {arr.shape}; convert with round((x + 1) * 127.5) from [-1, 1]"
        )
    return arr


def pair_indices(n_pred: int, n_target: int) -> tuple[np.ndarray, np.ndarray]:
    """EAT's frame pairing: L = min(n_pred, n_target) indices `linspace(0, n, L, endpoint=False)` into
    each video, i.e. the longer video is uniformly sub-sampled rather than truncated."""
    if n_pred < 1 or n_target < 1:
        raise InputError(f"cannot pair videos of {n_pred} and {n_target} frames")
    n = min(n_pred, n_target)
    return (
        np.linspace(0, n_pred, n, endpoint=False).astype(np.int32),
        np.linspace(0, n_target, n, endpoint=False).astype(np.int32),
    )


def _landmarks(x, what: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (68, 2):
        raise InputError(f"{what} must be dlib-68 landmarks (T, 68, 2) in pixels, got shape {arr.shape}")
    return arr


def _subset(subset: str) -> np.ndarray:
    if subset not in SUBSETS:
        raise InputError(f"subset must be one of {tuple(SUBSETS)}, not {subset!r}")
    return SUBSETS[subset]


def landmark_distance_per_frame(pred, target, subset: str = "mouth") -> np.ndarray:
    """(T,) mean per-point distance after centring each set; NaN where either frame has no face
    (a detector marks those with NaN landmarks)."""
    idx = _subset(subset)
    p, q = _landmarks(pred, "pred landmarks"), _landmarks(target, "target landmarks")
    if p.shape != q.shape:
        raise InputError(
            f"pred landmarks {p.shape} and target landmarks {q.shape} differ in length; "
            "pair the frames first (metrics.functional.landmarks.pair_indices)"
        )
    p, q = p[:, idx], q[:, idx]
    p = p - p.mean(axis=1, keepdims=True)
    q = q - q.mean(axis=1, keepdims=True)
    return np.linalg.norm(p - q, axis=-1).mean(axis=1)


def landmark_distance(pred, target, subset: str = "mouth") -> float:
    """M-LMD (`subset="mouth"`) or F-LMD (`"face"`) of one video: the mean of the per-frame distances
    over the frames where both sides have landmarks.

    Args:
        pred, target: (T, 68, 2) or (68, 2) dlib-68 landmarks in pixels (x, y); NaN rows = no face.
        subset: "mouth" (points 48-67) or "face" (all 68).
    """
    d = landmark_distance_per_frame(pred, target, subset)
    valid = np.isfinite(d)
    if not valid.any():
        raise InputError(f"no frame has landmarks on both sides ({len(d)} frames); no face detected?")
    return float(d[valid].mean())
