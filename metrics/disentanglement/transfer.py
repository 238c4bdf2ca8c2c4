"""Transfer: does each output factor follow its own driver (MAE and Pearson r against the driver's truth)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics.disentanglement.arrays import as_array, clips_frames_dims, ordered
from metrics.errors import InputError
from metrics.utils import to_jsonable

__all__ = ["FactorTransfer", "transfer_errors", "emotion_accuracy"]

_CONSTANT = 1e-12  # a series whose std is below this (relative to its scale) has no defined Pearson r


@dataclass(frozen=True)
class FactorTransfer:
    """How well one output factor follows its driver (units: the factor's own, e.g. degrees for pose).

    mae: mean over clips, frames and dimensions of |measured - truth|.
    mae_per_dim: the same mean per dimension (e.g. yaw, pitch, roll).
    pearson: mean over (clip, dimension) pairs of Pearson's r along time between measured and truth;
        a pair where either series is constant (or T < 2) has no r and is left out; NaN if none has one.
    n_clips, n_frames: clips and frames (over all clips) scored; n_pearson: (clip, dim) pairs with an r.
    """

    mae: float
    mae_per_dim: tuple[float, ...]
    pearson: float
    n_clips: int
    n_frames: int
    n_pearson: int

    def to_dict(self) -> dict:
        return to_jsonable(self)


def _pearson_along_time(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, T, d) pairs -> (N, d) Pearson r along T, NaN where a series is constant or T < 2."""
    xc, yc = x - x.mean(1, keepdims=True), y - y.mean(1, keepdims=True)
    sx, sy = np.sqrt((xc ** 2).sum(1)), np.sqrt((yc ** 2).sum(1))
    scale_x = np.abs(x).max(1) + 1.0
    scale_y = np.abs(y).max(1) + 1.0
    ok = (x.shape[1] >= 2) & (sx > _CONSTANT * scale_x) & (sy > _CONSTANT * scale_y)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(1) / (sx * sy)
    return np.where(ok, np.clip(r, -1.0, 1.0), np.nan)


def transfer_errors(measured: Mapping[str, Any], driver_truth: Mapping[str, Any]
                    ) -> dict[str, FactorTransfer]:
    """Per factor, MAE and Pearson r between what was measured on the output and the driver's truth.

    Args:
        measured: factor name -> (T, d) or (N, T, d) array read back from the generated frames
            (e.g. "pose" -> yaw/pitch/roll degrees from a pose estimator).
        driver_truth: factor name -> array of the same shape: that factor's driver's ground truth,
            in the same units (the reader must be calibrated to the ground truth's units for MAE to
            mean anything; Pearson r is unit-free). Every measured factor must be present.

    Returns:
        factor -> FactorTransfer(mae, mae_per_dim, pearson, n_clips, n_frames, n_pearson), in
        FACTORS order. MAE 0 and r 1 mean the output factor equals the driver's.

    Raises:
        InputError: a factor missing from `driver_truth`, mismatched shapes, non-finite values.
    """
    if not measured:
        raise InputError("transfer_errors needs at least one measured factor")
    out = {}
    for f in ordered(measured):
        if f not in driver_truth:
            raise InputError(f"driver_truth has no {f!r} entry; give the ground truth of every measured "
                             "factor")
        m = clips_frames_dims(measured[f], f"measured[{f!r}]")
        t = clips_frames_dims(driver_truth[f], f"driver_truth[{f!r}]")
        if m.shape != t.shape:
            raise InputError(f"measured[{f!r}] has shape {m.shape} but driver_truth[{f!r}] has {t.shape}; "
                             "trim both to the same frames")
        err = np.abs(m - t)
        r = _pearson_along_time(m, t)
        defined = r[np.isfinite(r)]
        out[f] = FactorTransfer(mae=float(err.mean()), mae_per_dim=tuple(float(v) for v in err.mean((0, 1))),
                                pearson=float(defined.mean()) if defined.size else math.nan,
                                n_clips=m.shape[0], n_frames=m.shape[0] * m.shape[1],
                                n_pearson=int(defined.size))
    return out


def emotion_accuracy(logits, labels) -> float:
    """Fraction of clips whose arg-max emotion logit equals the driver's emotion index.

    Args:
        logits: (C,) for one clip or (N, C) for N clips (logits or probabilities over C emotions).
        labels: an int or (N,) ints in [0, C): the expression driver's emotion index.
    """
    lg = as_array(logits, "emotion logits")
    lg = lg[None] if lg.ndim == 1 else lg
    lab = np.atleast_1d(np.asarray(labels))
    if lg.ndim != 2 or lg.shape[1] < 2 or lab.ndim != 1 or len(lab) != len(lg):
        raise InputError(f"emotion logits {lg.shape} and labels {lab.shape} must be (N, C) with C >= 2 "
                         "and (N,)")
    if not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() >= lg.shape[1]:
        raise InputError(f"emotion labels must be integers in [0, {lg.shape[1]}), got {lab.tolist()}")
    return float((lg.argmax(1) == lab).mean())
