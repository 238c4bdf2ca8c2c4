"""Streaming PSNR and SSIM (see metrics.functional.image for the definitions)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metrics.base import Metric
from metrics.errors import InputError
from metrics.functional.image import psnr_per_frame, ssim_per_frame

AGGREGATIONS = ("frames", "videos")


class _FrameMetric(Metric):
    """Per-frame scores; `aggregation="frames"` pools every frame of every video (EAT's way, the
    default), `"videos"` averages per-video means. Both are recorded in `protocol`."""

    _fn = staticmethod(psnr_per_frame)

    def __init__(self, aggregation: str = "frames", **kwargs: Any):
        super().__init__(**kwargs)
        if aggregation not in AGGREGATIONS:
            raise InputError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
        self.aggregation = aggregation
        self.protocol = {"aggregation": aggregation, "input": "uint8 RGB", "reference": "skimage.metrics"}
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        #: per-sample results: the mean over each update's (video's) finite frames
        self.add_state("video_means", [], dist_reduce_fx="cat")

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        scores = self._fn(pred, target)
        finite = scores[np.isfinite(scores)]  # identical frames give inf PSNR; skimage too, and EAT skips them
        self.total += float(finite.sum())
        self.count += float(len(finite))
        if len(finite):
            self.append_sample("video_means", finite.mean())

    def compute(self) -> float:
        if not self.count:
            raise InputError(f"{type(self).__name__}.compute() has no finite frame scores yet")
        if self.aggregation == "frames":
            return float(self.total / self.count)
        return float(np.mean(self.per_sample("video_means")))


class PeakSignalNoiseRatio(_FrameMetric):
    higher_is_better = True
    name = "psnr"
    _fn = staticmethod(psnr_per_frame)


class StructuralSimilarity(_FrameMetric):
    higher_is_better = True
    name = "ssim"
    _fn = staticmethod(ssim_per_frame)


class FrechetDistance(Metric):
    """FID over any feature extractor, from float64 running sums (no buffer of all features).

    `update(features, real=True|False)` with (N, D) features; `compute()` the Fréchet distance.
    The extractor decides what the number means: Inception pool3 gives Inception-FID; an in-project
    extractor gives a domain FID that is *not* comparable with Inception-FID (reports say which).
    """

    higher_is_better = False
    name = "fid"

    def __init__(self, feature_name: str = "features", num_features: int | None = None, **kwargs: Any):
        """`num_features` (D) sizes the states up front; without it they take D from the first update
        (then, under DDP, every rank must see data of both sides before `compute()`)."""
        super().__init__(**kwargs)
        self.num_features = num_features
        self.protocol = {"features": feature_name, "statistics": "float64 running sums, ddof=1"}
        vector, matrix = ((num_features,), (num_features, num_features)) if num_features else ((), ())
        for side in ("real", "fake"):
            self.add_state(f"{side}_sum", torch.zeros(vector, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(matrix, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_n", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, features, real: bool) -> None:
        f = np.asarray(features.detach().cpu() if hasattr(features, "detach") else features, np.float64)
        if f.ndim != 2:
            raise InputError(f"features must be (N, D), got {f.shape}")
        if self.num_features and f.shape[1] != self.num_features:
            raise InputError(f"features must be (N, {self.num_features}), got {f.shape}")
        side = "real" if real else "fake"
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + self.as_state(f.sum(0)))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + self.as_state(f.T @ f))
        setattr(self, f"{side}_n", getattr(self, f"{side}_n") + len(f))

    def _stats(self, side: str):
        n = int(getattr(self, f"{side}_n"))
        if n < 2:
            raise InputError(f"FID needs at least 2 {side} samples, has {n}")
        s, o = (getattr(self, f"{side}_{k}").cpu().numpy() for k in ("sum", "outer"))
        mu = s / n
        return mu, (o - n * np.outer(mu, mu)) / (n - 1)

    def compute(self) -> float:
        from metrics.functional.image import frechet_distance

        return frechet_distance(*self._stats("real"), *self._stats("fake"))
