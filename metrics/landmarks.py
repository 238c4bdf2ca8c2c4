"""Streaming M-LMD / F-LMD (see metrics.functional.landmarks) and the dlib 68-point detector backend.

A landmark *detector* is any callable `detector(frames) -> (T, 68, 2)` taking uint8 (T, H, W, 3) RGB
frames and returning pixel (x, y) landmarks with NaN rows for frames without a face; the in-project
synthetic evaluator (`benchmarks.evaluators ... .landmarks`) and `Dlib68Detector` (EAT's) both fit.

EAT protocol (evaluation_eat `code/test_lmd.py`): landmarks on the 128x128 aligned crops, frames
paired with `pair_indices`, gray image by `cv2.COLOR_BGR2GRAY` applied to the RGB frame (so the red
and blue weights are swapped), dlib frontal detector with upsample 0 and the first face,
`shape_predictor_68_face_landmarks.dat`, integer pixel coordinates. (The 128x128 crop itself,
`code/utils_crop.py`, detects with upsample 1.) Frame pairs where either side has no face are skipped;
a video's LMD is the mean over its valid frames, the dataset's the mean over videos. Unlike EAT, which
drops a video without any detected face (flattering a method whose output lost the face), such a video
is an `InputError` naming it, to be cropped or given another detector.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metrics.base import Metric
from metrics.errors import InputError, UserError
from metrics.functional.landmarks import (
    check_frames,
    landmark_distance_per_frame,
    pair_indices,
)

__all__ = ["Dlib68Detector", "MouthLandmarkDistance", "FaceLandmarkDistance", "detect_paired"]

DLIB_HINT = "pip install 'edtalk-bench[faces]'"


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise UserError(
            f"the dlib landmark detector needs the dlib package, which is not installed; {DLIB_HINT}"
        ) from None
    return dlib


class Dlib68Detector:
    """dlib's frontal HOG face detector + `shape_predictor_68_face_landmarks.dat` (weights key "dlib-68").

    `detector(frames)` -> float64 (T, 68, 2) integer-valued pixel coordinates of the first detected face
    per frame, NaN where none is found. Defaults reproduce EAT's LMD: `upsample=0`, `eat_gray=True`
    (COLOR_BGR2GRAY on RGB frames); `eat_gray=False` converts RGB properly.
    """

    def __init__(self, path=None, upsample: int = 0, eat_gray: bool = True, verify: bool = True):
        dlib = _import_dlib()
        from metrics.weights import locate

        self.path = locate("dlib-68", path, verify=verify)
        self.upsample, self.eat_gray = int(upsample), bool(eat_gray)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(self.path))

    def __call__(self, frames) -> np.ndarray:
        import cv2

        frames = check_frames(frames)
        code = cv2.COLOR_BGR2GRAY if self.eat_gray else cv2.COLOR_RGB2GRAY
        out = np.full((len(frames), 68, 2), np.nan)
        for t, frame in enumerate(frames):
            gray = cv2.cvtColor(np.ascontiguousarray(frame), code)
            rects = self._detector(gray, self.upsample)
            if len(rects) == 0:
                continue
            shape = self._predictor(gray, rects[0])
            out[t] = [(shape.part(i).x, shape.part(i).y) for i in range(68)]
        return out

    def __repr__(self) -> str:
        return f"Dlib68Detector({self.path.name}, upsample={self.upsample}, eat_gray={self.eat_gray})"


def detect_paired(frames_pred, frames_target, detector, source=None) -> tuple[np.ndarray, np.ndarray]:
    """Landmarks of both videos on EAT's paired frames (`pair_indices`): two (L, 68, 2) arrays.

    Frames without a face are NaN rows and are skipped later (EAT); a video in which the detector finds
    no face at all is an `InputError` naming it (`source`, e.g. the file or case) and its first frame.
    """
    fp, ft = check_frames(frames_pred, "generated frames"), check_frames(frames_target, "ground-truth frames")
    ip, it = pair_indices(len(fp), len(ft))
    lp, lt = np.asarray(detector(fp[ip]), np.float64), np.asarray(detector(ft[it]), np.float64)
    for name, lm, idx in (("generated", lp, ip), ("ground-truth", lt, it)):
        if lm.shape != (len(ip), 68, 2):
            raise InputError(
                f"detector returned {lm.shape} for {len(ip)} {name} frames; it must return (T, 68, 2)"
            )
        if not np.isfinite(lm).all(axis=(1, 2)).any():
            where = f"{source}: " if source else ""
            raise InputError(
                f"{where}the landmark detector found no face in any of the {len(idx)} {name} frames checked "
                f"(frame {int(idx[0])} onwards); crop the video to the face (EAT's 128x128 aligned crops) "
                "or pass another detector"
            )
    return lp, lt


class _LandmarkDistance(Metric):
    higher_is_better = False
    subset = "mouth"

    def __init__(self, detector=None, crop_size: int | None = None, **kwargs: Any):
        """`detector`: the default for `update_frames` (built lazily as `Dlib68Detector()` if None).
        `crop_size`: side of the square frames the landmarks come from, recorded in `protocol`
        (EAT: 128); when set, `update_frames` refuses frames of another size."""
        super().__init__(**kwargs)
        self.detector = detector
        self.crop_size = crop_size
        self.protocol = {
            "subset": self.subset,
            "centroid": "per set",
            "distance": "mean per-point L2 (pixels)",
            "aggregation": "mean over valid frames per video, then over videos",
            "reference": "evaluation_eat code/test_lmd.py",
            "crop_size": crop_size,
            "eat_crop_size": 128,
        }
        #: per-sample results: each video's mean distance over its valid frames
        self.add_state("per_video", [], dist_reduce_fx="cat")
        self.add_state("frames", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("skipped", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred_landmarks, target_landmarks) -> None:
        """One video: (T, 68, 2) landmarks of the generated and the ground-truth frames (paired)."""
        d = landmark_distance_per_frame(pred_landmarks, target_landmarks, self.subset)
        valid = np.isfinite(d)
        self.frames += int(valid.sum())
        self.skipped += int((~valid).sum())
        if valid.any():  # EAT skips videos without a single valid frame
            self.append_sample("per_video", d[valid].mean())

    def update_frames(self, frames_pred, frames_target, detector=None, source=None) -> None:
        """One video from frames: pair (EAT linspace), detect with `detector` (else the metric's), update.
        A video without any detected face raises `InputError` naming `source` (the file or case)."""
        fp, ft = (
            check_frames(frames_pred, "generated frames"),
            check_frames(frames_target, "ground-truth frames"),
        )
        if self.crop_size is not None:
            for name, f in (("generated", fp), ("ground-truth", ft)):
                if f.shape[1:3] != (self.crop_size, self.crop_size):
                    raise InputError(
                        f"{name} frames are {f.shape[2]}x{f.shape[1]} but this metric was set up for "
                        f"{self.crop_size}x{self.crop_size} crops; crop/resize first or change crop_size"
                    )
        self.protocol["frame_size"] = list(ft.shape[1:3])  # (H, W) the pixel distances refer to
        detector = detector if detector is not None else self.detector
        if detector is None:
            self.detector = detector = Dlib68Detector()
        self.update(*detect_paired(fp, ft, detector, source))

    def compute(self) -> float:
        if not len(self.per_video):
            raise InputError(f"{type(self).__name__}.compute() has no video with a valid frame yet")
        return float(np.mean(self.per_sample("per_video")))


class MouthLandmarkDistance(_LandmarkDistance):
    """M-LMD: landmark distance over the 20 mouth points (dlib 48-67); lower is better."""

    name = "m_lmd"
    subset = "mouth"


class FaceLandmarkDistance(_LandmarkDistance):
    """F-LMD: landmark distance over all 68 dlib points; lower is better."""

    name = "f_lmd"
    subset = "face"
