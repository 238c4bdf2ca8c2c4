"""Functional LSE: `lse(frames, audio, sample_rate=16000, weights=PATH)` -> {lse_c, lse_d, offset}."""
from __future__ import annotations

import numpy as np

from metrics.sync import load_syncnet, lse_from_distances, sync_distances


def lse(frames: np.ndarray, audio: np.ndarray, sample_rate: int = 16000, weights=None, model=None,
        vshift: int = 15, batch_size: int = 64, device="cpu") -> dict:
    """LSE-C, LSE-D and the audio offset of one clip, exactly as syncnet_python computes them.

    frames: (T, 224, 224, 3) uint8 BGR face crops at 25 fps; audio: 1-D int16 (or float in [-1, 1]) at 16 kHz.
    """
    if model is None:
        from metrics.sync import SYNCNET_URL

        if weights is None:
            from metrics.errors import MissingWeightsError

            raise MissingWeightsError(f"lse needs weights=PATH to syncnet_v2.model ({SYNCNET_URL}) or model=")
        model = load_syncnet(weights, device)
    out = lse_from_distances(sync_distances(model, frames, audio, sample_rate, vshift, batch_size), vshift)
    out["protocol"] = {"crop": "cropped", "vshift": vshift}
    return out
