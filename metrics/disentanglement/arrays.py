"""Array checks shared by the disentanglement scores: factor order, finite float64 arrays, (N, T, d) clips."""
from __future__ import annotations

import math

import numpy as np

from metrics.errors import InputError

FACTORS = ("mouth", "pose", "expression")


def ordered(names) -> list[str]:
    """Factor names in FACTORS order first, then any others in the order given."""
    names = list(names)
    return [f for f in FACTORS if f in names] + [f for f in names if f not in FACTORS]


def as_array(x, what: str) -> np.ndarray:
    try:
        a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"{what} is not a numeric array ({e})") from None
    if not np.isfinite(a).all():
        raise InputError(f"{what} contains NaN or inf values; check the factor reader that produced it")
    return a


def clips_frames_dims(x, what: str) -> np.ndarray:
    """(T, d) or (N, T, d) -> (N, T, d) float64."""
    a = as_array(x, what)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or 0 in a.shape:
        raise InputError(f"{what} must be a non-empty (T, d) or (N, T, d) array, got shape {a.shape}")
    return a



def nanmean(x: np.ndarray) -> float:
    """Mean of the finite entries; NaN if there is none."""
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan
