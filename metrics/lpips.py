"""Streaming LPIPS (alex, v0.1); see metrics.functional.lpips for the definition and the weights."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from metrics.base import Metric
from metrics.errors import InputError
from metrics.functional.lpips import load_lpips, lpips_per_pair

__all__ = ["LearnedPerceptualImagePatchSimilarity"]

AGGREGATIONS = ("frames", "videos")


class LearnedPerceptualImagePatchSimilarity(Metric):
    """Mean LPIPS over frame pairs: `update(pred, target)` with (N, 3, H, W) float batches in [-1, 1]
    (or [0, 1] with `normalize=True`); `compute()` the mean distance (lower is more similar).

    `aggregation="frames"` pools every pair of every update (default); `"videos"` averages the
    per-update means (one update = one video). `net` reuses an already loaded `load_lpips()` network;
    otherwise the AlexNet trunk comes from `weights` / `locate("alexnet-lpips")`.
    """

    higher_is_better = False
    name = "lpips"

    def __init__(self, weights=None, normalize: bool = False, *, net=None, device=None, verify: bool = True,
                 batch_size: int = 32, aggregation: str = "frames", check_range: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        if aggregation not in AGGREGATIONS:
            raise InputError(f"aggregation must be one of {AGGREGATIONS}, not {aggregation!r}")
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.net = net if net is not None else load_lpips(weights, device, verify)
        self.normalize, self.batch_size, self.check_range = normalize, batch_size, check_range
        self.aggregation = aggregation
        self.protocol = {"net": "alex", "version": "0.1", "input": "[0, 1] x2-1" if normalize else "[-1, 1]",
                         "resize": "none (native resolution)", "aggregation": aggregation,
                         "reference": "lpips 0.1.4 LPIPS(net='alex')"}
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        #: per-sample results: the mean distance of each update (video)
        self.add_state("video_means", [], dist_reduce_fx="cat")

    def update(self, pred, target) -> None:
        d = lpips_per_pair(pred, target, net=self.net, normalize=self.normalize, batch_size=self.batch_size,
                           check_range=self.check_range)
        self.total += float(d.sum())
        self.count += len(d)
        self.append_sample("video_means", float(d.mean()))

    def compute(self) -> float:
        if not self.count:
            raise InputError("LearnedPerceptualImagePatchSimilarity.compute() called before any update()")
        if self.aggregation == "frames":
            return float(self.total / self.count)
        return float(np.mean(self.per_sample("video_means")))
