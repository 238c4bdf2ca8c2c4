"""Bootstrap statistics for report tables (numpy only, deterministic for a seed).

* `seed_pooled_ci`: CI of the mean of per-seed means, resampling test clips *within* each seed
  (a stratified bootstrap). With the 2–3 seeds an ablation affords, a bootstrap over seed means
  would resample two or three numbers, so the clip-level resampling is what the CI describes;
  seed-to-seed spread is reported beside it as a standard deviation.
* `paired_diff_ci`: CI of the mean paired difference over the cases two rows share.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["N_RESAMPLES", "LEVEL", "BOOTSTRAP_SEED", "seed_pooled_ci", "paired_diff_ci"]

N_RESAMPLES = 2000
LEVEL = 0.95
BOOTSTRAP_SEED = 0


def _finite(x) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[np.isfinite(a)]


def _quantiles(means: np.ndarray, level: float) -> tuple[float, float]:
    a = (1.0 - level) / 2.0
    return float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a))


def seed_pooled_ci(per_seed: Sequence[Sequence[float]], n_resamples: int = N_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> tuple[float, float, float]:
    """(mean of per-seed means, ci_low, ci_high) with clips resampled within each seed.

    Each resample draws, for every seed independently, as many clips as that seed scored (with
    replacement), takes each seed's mean and averages them, exactly as the point estimate does.
    Seeds with no finite value are ignored; all NaN if none has one. A single clip overall gives a
    zero-width interval.
    """
    groups = [g for g in (_finite(s) for s in per_seed) if g.size]
    if not groups:
        return float("nan"), float("nan"), float("nan")
    point = float(np.mean([g.mean() for g in groups]))
    if sum(g.size for g in groups) < 2:
        return point, point, point
    rng = np.random.default_rng(seed)
    total = np.zeros(n_resamples)
    for g in groups:
        idx = rng.integers(0, g.size, size=(n_resamples, g.size))
        total += g[idx].mean(axis=1)
    lo, hi = _quantiles(total / len(groups), level)
    return point, lo, hi


def paired_diff_ci(a: Sequence[float], b: Sequence[float], n_resamples: int = N_RESAMPLES,
                   seed: int = BOOTSTRAP_SEED, level: float = LEVEL) -> tuple[float, float, float, int]:
    """(mean of a−b, ci_low, ci_high, n pairs) over the pairs where both are finite.

    `a[i]` and `b[i]` are the same test case under two methods; cases are resampled together, so
    what the cases have in common (a hard clip is hard for both) cancels out of the difference.
    """
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired samples must have the same shape, got {x.shape} and {y.shape}")
    keep = np.isfinite(x) & np.isfinite(y)
    d = (x - y)[keep]
    if d.size == 0:
        return float("nan"), float("nan"), float("nan"), 0
    if d.size == 1:
        return float(d[0]), float("nan"), float("nan"), 1
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(n_resamples, d.size))
    lo, hi = _quantiles(d[idx].mean(axis=1), level)
    return float(d.mean()), lo, hi, int(d.size)
