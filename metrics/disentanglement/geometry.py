"""Bank geometry: orthonormality of the latent bases and principal angles between factor subspaces."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from metrics.disentanglement.arrays import as_array, ordered
from metrics.errors import InputError
from metrics.utils import to_jsonable

__all__ = ["BankGeometry", "bank_geometry", "bank_geometry_of"]


@dataclass(frozen=True)
class BankGeometry:
    """Geometry of the latent bases Q (latent_dim x n, one basis per column).

    orthonormality_error: ||Q^T Q - I||_F over all columns (0 for orthonormal bases).
    group_error: per factor, ||Q_g^T Q_g - I||_F over that factor's columns.
    min_angle_deg: per factor pair "a/b", the smallest principal angle in degrees between the column
        spans of Q_a and Q_b (90 = orthogonal subspaces; 0 = they share a direction).
    """

    orthonormality_error: float
    group_error: dict[str, float]
    min_angle_deg: dict[str, float]
    n_columns: int
    latent_dim: int

    def to_dict(self) -> dict:
        return to_jsonable(self)


def bank_geometry(q, groups: Mapping[str, slice]) -> BankGeometry:
    """Orthonormality error and principal angles between factor subspaces of a bases matrix.

    Args:
        q: (latent_dim, n) matrix whose columns are the bases (numpy or torch).
        groups: factor -> slice of columns (e.g. {"mouth": slice(0, 20), "pose": slice(20, 26)}).
    Returns:
        BankGeometry; angles come from scipy.linalg.subspace_angles (column spans, so they do not
        need orthonormal columns).
    """
    from scipy.linalg import subspace_angles

    qa = as_array(q, "bases matrix Q")
    if qa.ndim != 2 or 0 in qa.shape:
        raise InputError(f"bases matrix Q must be (latent_dim, n), got shape {qa.shape}")
    if not groups:
        raise InputError("bank_geometry needs at least one factor group (factor -> slice of columns)")
    n = qa.shape[1]
    cols = {}
    for f, sl in groups.items():
        if not isinstance(sl, slice):
            raise InputError(f"groups[{f!r}] must be a slice of columns, got {type(sl).__name__}")
        idx = range(n)[sl]
        if not len(idx) or (sl.stop is not None and sl.stop > n) or (sl.start is not None and sl.start >= n):
            raise InputError(f"groups[{f!r}] = {sl} selects no valid columns of Q with {n} columns")
        cols[f] = qa[:, sl]

    def err(m: np.ndarray) -> float:
        return float(np.linalg.norm(m.T @ m - np.eye(m.shape[1])))

    names = ordered(cols)
    angles = {}
    for i, a in enumerate(names):
        for b_ in names[i + 1:]:
            angles[f"{a}/{b_}"] = float(np.degrees(subspace_angles(cols[a], cols[b_]).min()))
    return BankGeometry(orthonormality_error=err(qa), group_error={f: err(cols[f]) for f in names},
                        min_angle_deg=angles, n_columns=n, latent_dim=qa.shape[0])


def bank_geometry_of(model) -> BankGeometry:
    """`bank_geometry` of an edtalk.model.EDTalk's active banks, as the model uses them.

    `model.bases()` gives factor -> (latent_dim, n_f) for every bank in "bases" mode: the reduced QR
    of all active banks side by side when `cfg.orthogonal`, the raw stored parameters otherwise
    ("direct" and "off" banks have no bases and are not listed). Columns are taken in FACTORS order,
    as `model.bases_matrix()` lays them out.
    """
    import torch

    with torch.no_grad():
        bases = model.bases()
        if not bases:
            raise InputError("the model has no bank in 'bases' mode, so it has no bases to measure")
        names = ordered(bases)
        mats = [bases[f].detach().cpu().double().numpy() for f in names]
    groups, start = {}, 0
    for f, m in zip(names, mats, strict=True):
        groups[f] = slice(start, start + m.shape[1])
        start += m.shape[1]
    return bank_geometry(np.concatenate(mats, axis=1), groups)
