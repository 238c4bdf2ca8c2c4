"""Streaming Inception-FID: pytorch-fid's network and distance on float64 running sums.

`FrechetInceptionDistance` is `metrics.image.FrechetDistance` (sums of x and x xᵀ per side, so memory
does not grow with the number of images) fed by the FID Inception of `metrics.inception`.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from metrics.errors import InputError
from metrics.functional.fid import inception_features
from metrics.image import FrechetDistance
from metrics.inception import FID_FEATURES, load_fid_inception

__all__ = ["FrechetInceptionDistance"]


class FrechetInceptionDistance(FrechetDistance):
    """FID between real and generated images (torchmetrics-style `update(images, real=True|False)`).

    Images: float (N, 3, H, W) in [0, 1] or uint8, any size (resized to 299 without antialias as in
    pytorch-fid 0.3.0). Precomputed (N, 2048) features: `update(features, real, precomputed=True)`,
    or `update_features(features, real)`. `compute()` warns when a side has fewer than 2048 samples
    (singular covariance, biased FID).
    """

    higher_is_better = False
    name = "fid"

    def __init__(self, weights=None, *, inception=None, device=None, verify: bool = True,
                 batch_size: int = 32, **kwargs: Any):
        super().__init__(feature_name="pytorch-fid FID InceptionV3 pool3 (2048)", num_features=FID_FEATURES,
                         **kwargs)
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        self.inception = inception if inception is not None else load_fid_inception(weights, device, verify)
        self.batch_size = batch_size
        self.protocol.update(network="pt_inception-2015-12-05 (TF port)", input="[0, 1] float or uint8 / 255",
                             resize="299x299 bilinear, align_corners=False, no antialias", scale="2x - 1",
                             reference="pytorch-fid 0.3.0")

    def update(self, images, real: bool, precomputed: bool = False) -> None:  # type: ignore[override]
        if precomputed:
            shape = tuple(np.shape(images))
            if len(shape) != 2 or shape[1] != FID_FEATURES:
                raise InputError(f"FID Inception features are (N, {FID_FEATURES}), got shape {shape}")
            feats = images
        else:
            feats = inception_features(images, self.inception, batch_size=self.batch_size)
        super().update(feats, real)

    def update_features(self, features, real: bool) -> None:
        """`update` with precomputed (N, 2048) pool3 features."""
        self.update(features, real, precomputed=True)

    def compute(self) -> float:
        small = {side: n for side in ("real", "fake") if (n := int(getattr(self, f"{side}_n"))) < FID_FEATURES}
        if small and min(small.values()) >= 2:
            warnings.warn(f"FID from {small} samples (< {FID_FEATURES}): the covariance is singular and the "
                          "value is biased upwards; compare only numbers from the same sample counts",
                          stacklevel=2)
        return super().compute()
