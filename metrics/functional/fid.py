"""Inception-FID as pytorch-fid 0.3.0 computes it (features: metrics.inception; distance:
metrics.functional.image.frechet_distance, pytorch-fid's calculate_frechet_distance).

Images are float RGB (N, 3, H, W) in [0, 1] (or uint8), any size: they are resized to 299x299
(bilinear, align_corners=False, no antialias) and scaled to [-1, 1] inside the network, as
pytorch-fid's `InceptionV3([3])` does. With fewer than 2048 images per side the covariances are
singular and the value is biased upwards (mseitzer/pytorch-fid#13); say so next to the number.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from metrics.functional.image import fid_from_features

if TYPE_CHECKING:
    import torch

__all__ = ["inception_features", "frechet_inception_distance"]


def inception_features(images, model: torch.nn.Module | None = None, weights=None, device=None,
                       batch_size: int = 32, verify: bool = True) -> np.ndarray:
    """(N, 2048) float64 pool3 features of the FID Inception (`model`, else loaded from `weights`)."""
    import torch

    from metrics.inception import check_fid_images, load_fid_inception

    x = check_fid_images(images)
    if model is None:
        model = load_fid_inception(weights, device, verify)
    with torch.no_grad():
        out = [model(x[i:i + batch_size]).double().cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


def frechet_inception_distance(real, fake, model: torch.nn.Module | None = None, weights=None, device=None,
                               batch_size: int = 32, verify: bool = True) -> float:
    """FID between two image sets, each (N, 3, H, W) in [0, 1] (N >= 2; >= 2048 for the usual number)."""
    if model is None:
        from metrics.inception import load_fid_inception

        model = load_fid_inception(weights, device, verify)
    return fid_from_features(inception_features(real, model, batch_size=batch_size),
                             inception_features(fake, model, batch_size=batch_size))
