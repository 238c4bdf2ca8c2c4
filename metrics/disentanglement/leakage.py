"""Leakage: how much each output factor moves when one driver is swapped (0 = independent)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metrics.disentanglement.arrays import clips_frames_dims, nanmean, ordered
from metrics.errors import InputError
from metrics.utils import to_jsonable

__all__ = ["LeakageResult", "leakage_matrix"]


@dataclass(frozen=True)
class LeakageResult:
    """Cross-driving response matrix; rows: the driver swapped, columns: the output factor measured.

    matrix[c][m] = sum_n movement[n,c,m] / sum_n reference[n,c,m] (see `leakage_matrix`): the
        diagonal is responsiveness (1 = the factor follows its driver fully, 0 = ignores it), the
        off-diagonal is leakage (0 = independent, 1 = moves as if the swapped driver drove it).
    movement[c][m]: mean over tuples of mean |Δ| of measured factor m when driver c is swapped.
    reference[c][m]: mean over tuples of the normaliser (see `reference_mode`).
    off_diagonal_mean / diagonal_mean: NaN-ignoring means of those entries (NaN if all undefined).
    """

    labels: tuple[str, ...]
    matrix: np.ndarray
    movement: np.ndarray
    reference: np.ndarray
    off_diagonal_mean: float
    diagonal_mean: float
    reference_mode: str
    n_tuples: int
    # (N, k, k) per tuple: what a paired bootstrap over tuples resamples (reports.claims)
    tuple_movement: np.ndarray | None = None
    tuple_reference: np.ndarray | None = None

    def to_dict(self) -> dict:
        # .tolist() first: to_jsonable turns NaN into None only for Python floats
        per_tuple = ({"movement": self.tuple_movement.tolist(), "reference": self.tuple_reference.tolist()}
                     if self.tuple_movement is not None and self.tuple_reference is not None else None)
        return to_jsonable({"labels": list(self.labels), "matrix": self.matrix.tolist(),
                            "off_diagonal_mean": self.off_diagonal_mean, "diagonal_mean": self.diagonal_mean,
                            "movement": self.movement.tolist(), "reference": self.reference.tolist(),
                            "reference_mode": self.reference_mode, "n_tuples": self.n_tuples,
                            "per_tuple": per_tuple})


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, T, d) pairs -> (N,) mean over frames and dims of |a - b|."""
    return np.abs(a - b).reshape(len(a), -1).mean(1)


def _nested(arrays: Mapping, labels: Sequence[str], what: str) -> dict[str, dict[str, np.ndarray]]:
    if not isinstance(arrays, Mapping) or set(arrays) != set(labels):
        got = sorted(arrays) if isinstance(arrays, Mapping) else type(arrays).__name__
        raise InputError(f"{what} must map every swapped driver {list(labels)} to a dict of factors, "
                         f"got {got}")
    out = {}
    for c in labels:
        row = arrays[c]
        if not isinstance(row, Mapping) or set(row) != set(labels):
            got = sorted(row) if isinstance(row, Mapping) else type(row).__name__
            raise InputError(f"{what}[{c!r}] must hold every measured factor {list(labels)}, got {got}")
        out[c] = {m: clips_frames_dims(row[m], f"{what}[{c!r}][{m!r}]") for m in labels}
    return out


def leakage_matrix(base: Mapping[str, Any], swapped: Mapping[str, Mapping[str, Any]],
                   truth_base: Mapping[str, Mapping[str, Any]] | None = None,
                   truth_swapped: Mapping[str, Mapping[str, Any]] | None = None,
                   *, reference: str = "driver") -> LeakageResult:
    """How much each output factor moves when one driver is swapped, normalised (0 = independent).

    Setting: N tuples (source, mouth driver, pose driver, expression driver). For each tuple the
    model makes a base output, and for each factor c one more output in which only c's driver is
    replaced by another clip. A reader measures every factor m on every output.

    Args:
        base: m -> (N, T, d) factor m measured on the base outputs.
        swapped: c -> m -> (N, T, d) factor m measured on the outputs whose c-driver was replaced.
            The keys of `swapped` and of each `swapped[c]` must equal the keys of `base`.
        truth_base: c -> m -> (N, T, d) ground truth of factor m of the *base* c-driver clip
            (needed for reference="driver"), in the reader's units.
        truth_swapped: c -> m -> (N, T, d) ground truth of factor m of the *replacement* c-driver clip.
        reference: the normaliser of each entry:
            "driver" (default): ref[n,c,m] = mean_{t,k} |truth_swapped[c][m] - truth_base[c][m]|, the
                amount factor m differs between the two c-driver clips. Then M[c][m] = 1 means the
                output's m moved exactly as if m followed driver c; the diagonal measures
                responsiveness (1 for a model that follows each driver, 0 for one that ignores it).
            "response": ref[n,c,m] = move[n,m,m], how much m moves when its *own* driver is swapped
                (no ground truth needed, for readers whose units differ from the truth). The
                diagonal is then 1 by construction and only the off-diagonal is informative.

    Definition: move[n,c,m] = mean_{t,k} |swapped[c][m][n,t,k] - base[m][n,t,k]| and
    M[c][m] = sum_n move[n,c,m] / sum_n ref[n,c,m] (a ratio of means, so single tuples whose two
    drivers happen to agree in factor m do not divide by zero); NaN where the reference is 0.

    Returns:
        LeakageResult with labels in FACTORS order, matrix/movement/reference (len(labels) square),
        off_diagonal_mean (the summary scalar: mean leakage) and diagonal_mean.
    """
    if reference not in ("driver", "response"):
        raise InputError(f"reference must be 'driver' or 'response', not {reference!r}")
    if not isinstance(base, Mapping) or len(base) < 2:
        raise InputError("leakage_matrix needs base measurements of at least two factors")
    labels = ordered(base)
    b = {m: clips_frames_dims(base[m], f"base[{m!r}]") for m in labels}
    n = len(next(iter(b.values())))
    s = _nested(swapped, labels, "swapped")
    for c in labels:
        for m in labels:
            if s[c][m].shape != b[m].shape:
                raise InputError(f"swapped[{c!r}][{m!r}] has shape {s[c][m].shape} but base[{m!r}] has "
                                 f"{b[m].shape}; measure the same frames on every output")
    for m in labels:
        if len(b[m]) != n:
            raise InputError(f"base[{m!r}] has {len(b[m])} tuples, base[{labels[0]!r}] has {n}")
    k = len(labels)
    move = np.zeros((n, k, k))
    for i, c in enumerate(labels):
        for j, m in enumerate(labels):
            move[:, i, j] = _mean_abs_diff(s[c][m], b[m])
    if reference == "driver":
        if truth_base is None or truth_swapped is None:
            raise InputError("reference='driver' needs truth_base and truth_swapped (the drivers' ground "
                             "truth); pass them or use reference='response'")
        tb = _nested(truth_base, labels, "truth_base")
        ts = _nested(truth_swapped, labels, "truth_swapped")
        ref = np.zeros_like(move)
        for i, c in enumerate(labels):
            for j, m in enumerate(labels):
                if tb[c][m].shape != ts[c][m].shape or tb[c][m].shape != b[m].shape:
                    raise InputError(f"truth_base[{c!r}][{m!r}] {tb[c][m].shape}, truth_swapped[{c!r}]"
                                     f"[{m!r}] {ts[c][m].shape} and base[{m!r}] {b[m].shape} must have "
                                     "the same shape")
                ref[:, i, j] = _mean_abs_diff(ts[c][m], tb[c][m])
    else:
        ref = np.broadcast_to(np.diagonal(move, axis1=1, axis2=2)[:, None, :], move.shape).copy()
    num, den = move.sum(0), ref.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mat = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    off = mat[~np.eye(k, dtype=bool)]
    diag = np.diagonal(mat)
    return LeakageResult(labels=tuple(labels), matrix=mat, movement=move.mean(0), reference=ref.mean(0),
                         off_diagonal_mean=nanmean(off), diagonal_mean=nanmean(diag),
                         reference_mode=reference, n_tuples=n, tuple_movement=move, tuple_reference=ref)
