"""Streaming PSNR and SSIM (see metrics.functional.image for the definitions)."""
from __future__ import annotations

import numpy as np

from metrics.base import Metric
from metrics.errors import InputError
from metrics.functional.image import psnr_per_frame, ssim_per_frame

AGGREGATIONS = ("frames", "videos")


class _FrameMetric(Metric):
    """Per-frame scores; `aggregation="frames"` pools every frame of every video (EAT's way, the
    default), `"videos"` averages per-video means. Both are recorded in `protocol`."""

    _fn = staticmethod(psnr_per_frame)

    def __init__(self, aggregation: str = "frames"):
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise InputError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
        self.aggregation = aggregation
        self.protocol = {"aggregation": aggregation, "input": "uint8 RGB", "reference": "skimage.metrics"}
        self.add_state("total", 0.0, reduce="sum")
        self.add_state("count", 0.0, reduce="sum")
        self.add_state("video_means", [], reduce="cat")

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        scores = self._fn(pred, target)
        finite = scores[np.isfinite(scores)]  # identical frames give inf PSNR; skimage too, and EAT skips them
        self.total += float(finite.sum())
        self.count += float(len(finite))
        if len(finite):
            self.video_means.append(float(finite.mean()))

    def compute(self) -> float:
        if not self.count:
            raise InputError(f"{type(self).__name__}.compute() has no finite frame scores yet")
        return self.total / self.count if self.aggregation == "frames" else float(np.mean(self.video_means))


class PeakSignalNoiseRatio(_FrameMetric):
    higher_is_better = True
    name = "psnr"
    _fn = staticmethod(psnr_per_frame)


class StructuralSimilarity(_FrameMetric):
    higher_is_better = True
    name = "ssim"
    _fn = staticmethod(ssim_per_frame)
