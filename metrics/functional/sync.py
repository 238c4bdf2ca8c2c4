"""Functional LSE: `lse(frames, audio, sample_rate=16000, weights=PATH)` -> {lse_c, lse_d, offset}."""
from __future__ import annotations

import numpy as np

from metrics.errors import MissingWeightsError

__all__ = ["lse"]


def lse(frames: np.ndarray, audio: np.ndarray, sample_rate: int = 16000, weights=None, model=None,
        vshift: int = 15, batch_size: int = 64, device="cpu", crop_size: int = 224) -> dict:
    """LSE-C, LSE-D and the audio offset of one clip, exactly as syncnet_python computes them.

    frames: (T, 224, 224, 3) uint8 BGR face crops at 25 fps; audio: 1-D int16 (or float in [-1, 1]) at 16 kHz.
    Any `model` with syncnet_python's interface (`forward_aud` on (N,1,13,20) MFCC windows, `forward_lip`
    on (N,3,5,S,S) BGR 0..255 crops) can score: pass its `crop_size` S and (T, S, S, 3) crops, e.g. the
    synthetic world's SyncNet from `benchmarks.evaluators` on mouth crops. crop_size=224 is syncnet_python.
    """
    # metrics.sync holds the network (torch): imported on call so `import metrics.functional` stays light.
    from metrics.sync import SYNCNET_URL, load_syncnet, lse_from_distances, sync_distances

    if model is None:
        if weights is None:
            raise MissingWeightsError(f"lse needs weights=PATH to syncnet_v2.model ({SYNCNET_URL}) or model=")
        model = load_syncnet(weights, device)
    out = lse_from_distances(sync_distances(model, frames, audio, sample_rate, vshift, batch_size, crop_size), vshift)
    out["protocol"] = {"crop": "cropped", "vshift": vshift}
    if crop_size != 224:
        out["protocol"]["crop_size"] = crop_size
    return out
