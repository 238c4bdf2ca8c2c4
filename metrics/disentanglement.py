"""Disentanglement metrics: does each output factor follow its own driver, and only its own?

EDTalk drives a source face with three separate clips, one per factor (mouth, head pose, expression).
These functions score that separation from *measured* factors, i.e. arrays that some factor reader
(a pose estimator, a landmark-based mouth reader, an emotion classifier, a face-recognition
embedder) extracted from generated frames, against the drivers' ground truth (the synthetic world's
`ground_truth(clip)`). They take arrays only, so they run without any network:

* `transfer_errors`: per factor, MAE and Pearson r between the output's measured factor and its
  driver's ground truth; `emotion_accuracy` for clip-level emotion logits.
* `leakage_matrix`: swap one driver at a time and measure how much every output factor moves,
  normalised so that 0 = unaffected and 1 = moves as much as if it followed the swapped driver.
* `identity_preservation` / `identity_across_outputs`: cosine between source and output embeddings.
* `bank_geometry` / `bank_geometry_of`: orthonormality of the latent bases and principal angles
  between the factor subspaces.
* `evaluate_disentanglement`: the whole procedure over a synthetic world, a model and readers.

This module sits in the bottom layer: it imports nothing from benchmarks/ or edtalk/; the world, the
model and the readers are duck-typed.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metrics.errors import InputError
from metrics.utils import to_jsonable

__all__ = [
    "FACTORS",
    "FactorTransfer",
    "LeakageResult",
    "IdentityResult",
    "BankGeometry",
    "transfer_errors",
    "emotion_accuracy",
    "leakage_matrix",
    "identity_preservation",
    "identity_across_outputs",
    "bank_geometry",
    "bank_geometry_of",
    "evaluate_disentanglement",
]

FACTORS = ("mouth", "pose", "expression")
_CONSTANT = 1e-12  # a series whose std is below this (relative to its scale) has no defined Pearson r


def _ordered(names) -> list[str]:
    """Factor names in FACTORS order first, then any others in the order given."""
    names = list(names)
    return [f for f in FACTORS if f in names] + [f for f in names if f not in FACTORS]


def _array(x, what: str) -> np.ndarray:
    try:
        a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"{what} is not a numeric array ({e})") from None
    if not np.isfinite(a).all():
        raise InputError(f"{what} contains NaN or inf values; check the factor reader that produced it")
    return a


def _clips_frames_dims(x, what: str) -> np.ndarray:
    """(T, d) or (N, T, d) -> (N, T, d) float64."""
    a = _array(x, what)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or 0 in a.shape:
        raise InputError(f"{what} must be a non-empty (T, d) or (N, T, d) array, got shape {a.shape}")
    return a


# -- transfer -----------------------------------------------------------------------------------


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
    for f in _ordered(measured):
        if f not in driver_truth:
            raise InputError(f"driver_truth has no {f!r} entry; give the ground truth of every measured "
                             "factor")
        m = _clips_frames_dims(measured[f], f"measured[{f!r}]")
        t = _clips_frames_dims(driver_truth[f], f"driver_truth[{f!r}]")
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
    lg = _array(logits, "emotion logits")
    lg = lg[None] if lg.ndim == 1 else lg
    lab = np.atleast_1d(np.asarray(labels))
    if lg.ndim != 2 or lg.shape[1] < 2 or lab.ndim != 1 or len(lab) != len(lg):
        raise InputError(f"emotion logits {lg.shape} and labels {lab.shape} must be (N, C) with C >= 2 "
                         "and (N,)")
    if not np.issubdtype(lab.dtype, np.integer) or lab.min() < 0 or lab.max() >= lg.shape[1]:
        raise InputError(f"emotion labels must be integers in [0, {lg.shape[1]}), got {lab.tolist()}")
    return float((lg.argmax(1) == lab).mean())


# -- leakage -----------------------------------------------------------------------------------


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

    def to_dict(self) -> dict:
        # .tolist() first: to_jsonable turns NaN into None only for Python floats
        return to_jsonable({"labels": list(self.labels), "matrix": self.matrix.tolist(),
                            "off_diagonal_mean": self.off_diagonal_mean, "diagonal_mean": self.diagonal_mean,
                            "movement": self.movement.tolist(), "reference": self.reference.tolist(),
                            "reference_mode": self.reference_mode, "n_tuples": self.n_tuples})


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
        out[c] = {m: _clips_frames_dims(row[m], f"{what}[{c!r}][{m!r}]") for m in labels}
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
    labels = _ordered(base)
    b = {m: _clips_frames_dims(base[m], f"base[{m!r}]") for m in labels}
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
                         off_diagonal_mean=_nanmean(off), diagonal_mean=_nanmean(diag),
                         reference_mode=reference, n_tuples=n)


def _nanmean(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


# -- identity ----------------------------------------------------------------------------------


def identity_preservation(source_embedding, output_embeddings) -> float:
    """Mean over output frames of the cosine similarity to the source's identity embedding (CSIM).

    Args:
        source_embedding: (D,) embedding of the source face (e.g. ArcFace).
        output_embeddings: (T, D) embeddings of the generated frames (or (D,) for one frame).
    Returns:
        mean_t cos(source, output_t), in [-1, 1]; 1 = the same identity direction.
    """
    src = _array(source_embedding, "source embedding").reshape(-1)
    out = _array(output_embeddings, "output embeddings")
    out = out[None] if out.ndim == 1 else out
    if out.ndim != 2 or out.shape[1] != src.shape[0] or not len(out):
        raise InputError(f"source embedding {src.shape} and output embeddings {out.shape} must be (D,) "
                         "and (T, D)")
    ns, no = np.linalg.norm(src), np.linalg.norm(out, axis=1)
    if ns == 0 or (no == 0).any():
        raise InputError("an identity embedding has zero norm; the identity reader found no face")
    return float(((out @ src) / (no * ns)).mean())


@dataclass(frozen=True)
class IdentityResult:
    """Identity preservation over many outputs: mean/min/std of per-output mean cosines, and per kind."""

    mean: float
    min: float
    std: float
    per_output: dict[str, float] = field(default_factory=dict)
    n: int = 0

    def to_dict(self) -> dict:
        return to_jsonable(self)


def identity_across_outputs(source_embeddings, outputs: Mapping[str, Sequence[Any]]) -> IdentityResult:
    """`identity_preservation` for N sources, each animated under several drivers.

    Args:
        source_embeddings: (N, D), one per source (tuple).
        outputs: output kind (e.g. "base", "swap_mouth") -> a length-N sequence of (T, D) embeddings
            of the outputs made from source n.
    Returns:
        IdentityResult: mean/min/std over all N x kinds per-output scores, and per-kind means.
    """
    src = _array(source_embeddings, "source embeddings")
    if src.ndim != 2:
        raise InputError(f"source embeddings must be (N, D), got {src.shape}")
    if not outputs:
        raise InputError("identity_across_outputs needs at least one kind of output")
    scores, per = [], {}
    for kind, embs in outputs.items():
        if len(embs) != len(src):
            raise InputError(f"outputs[{kind!r}] has {len(embs)} entries for {len(src)} sources")
        vals = [identity_preservation(s, e) for s, e in zip(src, embs, strict=True)]
        per[kind] = float(np.mean(vals))
        scores += vals
    a = np.asarray(scores)
    return IdentityResult(mean=float(a.mean()), min=float(a.min()), std=float(a.std()), per_output=per,
                          n=len(a))


# -- bank geometry -----------------------------------------------------------------------------


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

    qa = _array(q, "bases matrix Q")
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

    names = _ordered(cols)
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
        names = _ordered(bases)
        mats = [bases[f].detach().cpu().double().numpy() for f in names]
    groups, start = {}, 0
    for f, m in zip(names, mats, strict=True):
        groups[f] = slice(start, start + m.shape[1])
        start += m.shape[1]
    return bank_geometry(np.concatenate(mats, axis=1), groups)


# -- the whole procedure -------------------------------------------------------------------------


def _pick(clips: Sequence, rng: np.random.Generator, src, used: set[str], replacing=None):
    """The clip with the smallest preference key, ties broken at random (deterministic given rng).

    Key, most important first: for a replacement, not the clip it replaces, then another emotion
    than it; then not yet used in this tuple; then another identity than the source's.
    """
    tie = rng.random(len(clips))

    def key(i: int) -> tuple:
        c = clips[i]
        repl = (c.name == replacing.name, c.emotion == replacing.emotion) if replacing is not None else ()
        return *repl, c.name in used, c.identity == src.identity, tie[i]

    return clips[min(range(len(clips)), key=key)]


def _sample_tuples(clips: Sequence, n_tuples: int, rng: np.random.Generator) -> list[dict]:
    """Source + one base and one replacement driver per factor, from distinct clips where possible.

    Sources cycle through a seeded permutation of the clips. Drivers prefer clips not yet used in
    the tuple and other identities than the source's; a replacement must differ from the driver it
    replaces and prefers another emotion (so the expression diagonal and the expression column have
    a non-zero reference).
    """
    order = [clips[i] for i in rng.permutation(len(clips))]
    tuples = []
    for n in range(n_tuples):
        src = order[n % len(order)]
        used = {src.name}
        drivers, repl = {}, {}
        for f in FACTORS:
            drivers[f] = _pick(clips, rng, src, used)
            used.add(drivers[f].name)
        for f in FACTORS:
            repl[f] = _pick(clips, rng, src, used, replacing=drivers[f])
            used.add(repl[f].name)
        tuples.append({"source": src, "drivers": drivers, "replacements": repl})
    return tuples


def _reader_output(x, what: str, n_frames: int | None = None) -> np.ndarray:
    a = _array(x, what)
    if n_frames is not None and (a.ndim != 2 or a.shape[0] != n_frames):
        raise InputError(f"{what} returned shape {a.shape} for {n_frames} frames; it must return (T, d)")
    return a


_LOGITS_DIFFER = "readers.emotion returned a different number of logits for different outputs"


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


def evaluate_disentanglement(model_fn: Callable, world, readers, n_tuples: int = 8, seed: int = 0,
                             split: str | None = "test", max_frames: int | None = None) -> dict:
    """Cross-driving disentanglement of a model over clips of a synthetic world.

    Procedure:
      1. Deterministically (from `seed`) sample `n_tuples` tuples from `world.clips(split)`: a source
         clip (its frame 0 is the source image) and, per factor, a base driver and a replacement
         driver (see `_sample_tuples`: distinct clips, other identities than the source's where the
         world allows it, replacements with another emotion where possible).
      2. Trim every driver to T = the shortest n_frames among the clips used (and `max_frames`).
      3. Per tuple, generate the base output `model_fn(source, mouth, pose, expression)` and three
         outputs each with one driver replaced.
      4. Read factors from every output: mouth = readers.mouth (T, 3), pose = readers.pose (T, 3) in
         the ground truth's units; expression = softmax(readers.emotion) as a (1, C) clip-level
         posterior, whose truth is the one-hot emotion of the expression driver.
      5. transfer: `transfer_errors` on base outputs vs their drivers' truth (mouth, pose) and
         `emotion_accuracy` of the base outputs' emotion vs the expression driver's label;
         leakage: `leakage_matrix(reference="driver")`; identity: `identity_across_outputs` of
         readers.identity(source[None]).mean(0) vs readers.identity(output) for all four outputs.

    Args:
        model_fn: (source uint8 (H,W,3), mouth_frames, pose_frames, expression_frames uint8
            (T,H,W,3)) -> uint8 (T,H',W',3) generated frames.
        world: a benchmarks.datasets.synthetic.SyntheticWorld (clips, frames, ground_truth).
        readers: object with .mouth(frames)->(T,3), .pose(frames)->(T,3), .emotion(frames)->(C,)
            logits, .identity(frames)->(T,D).
        n_tuples: tuples to sample; seed: sampling seed; split: world split (None = all clips);
        max_frames: optional cap on T.

    Returns:
        JSON-able dict: {"n_tuples", "n_frames", "seed", "split", "tuples": [clip names],
        "transfer": {"mouth": {...}, "pose": {...}, "expression": {"accuracy"}},
        "leakage": {"labels", "matrix", "off_diagonal_mean", "diagonal_mean", "movement", "reference",
        "reference_mode", "n_tuples"}, "identity": {"mean", "min", "std", "per_output", "n"}}.
    """
    if int(n_tuples) < 1:
        raise InputError(f"n_tuples must be at least 1, not {n_tuples}")
    for name in ("mouth", "pose", "emotion", "identity"):
        if not callable(getattr(readers, name, None)):
            raise InputError(f"readers has no {name}(frames) method; it needs mouth, pose, emotion and "
                             "identity")
    clips = list(world.clips(split))
    if len(clips) < 2:
        raise InputError(f"the world has {len(clips)} clip(s) in split {split!r}; cross-driving needs at "
                         "least 2")
    tuples = _sample_tuples(clips, int(n_tuples), np.random.default_rng(seed))
    used = {c.name: c for t in tuples
            for c in [t["source"], *t["drivers"].values(), *t["replacements"].values()]}
    n_frames = min(c.n_frames for c in used.values())
    if max_frames is not None:
        n_frames = min(n_frames, int(max_frames))
    if n_frames < 1:
        raise InputError("the sampled clips have no frames")

    truth_cache: dict[str, dict] = {}

    def truth(c) -> dict:
        if c.name not in truth_cache:
            gt = world.ground_truth(c)
            truth_cache[c.name] = {"mouth": np.asarray(gt["mouth"], np.float64)[:n_frames],
                                   "pose": np.asarray(gt["pose"], np.float64)[:n_frames],
                                   "emotion_index": int(gt["emotion_index"])}
        return truth_cache[c.name]

    def frames(c) -> np.ndarray:
        return np.asarray(world.frames(c))[:n_frames]

    def generate(source, drv: dict) -> np.ndarray:
        out = model_fn(source, frames(drv["mouth"]), frames(drv["pose"]), frames(drv["expression"]))
        out = np.asarray(out)
        if out.dtype != np.uint8 or out.ndim != 4 or out.shape[0] != n_frames or out.shape[-1] != 3:
            raise InputError(f"model_fn returned {out.dtype} {out.shape}; it must return uint8 (T, H, W, 3) "
                             f"with T = {n_frames}, the length of the trimmed drivers")
        return out

    def measure(out: np.ndarray) -> dict:
        logits = _reader_output(readers.emotion(out), "readers.emotion")
        logits = logits.mean(0) if logits.ndim == 2 else logits
        if logits.ndim != 1 or logits.shape[0] < 2:
            raise InputError(f"readers.emotion returned shape {logits.shape}; it must return (C,) logits")
        return {"mouth": _reader_output(readers.mouth(out), "readers.mouth", n_frames),
                "pose": _reader_output(readers.pose(out), "readers.pose", n_frames),
                "expression": _softmax(logits)[None], "logits": logits,
                "identity": _reader_output(readers.identity(out), "readers.identity", n_frames)}

    def truth_factors(c, n_classes: int) -> dict:
        t = truth(c)
        onehot = np.zeros((1, n_classes))
        if not 0 <= t["emotion_index"] < n_classes:
            raise InputError(f"clip {c.name} has emotion index {t['emotion_index']} but readers.emotion "
                             f"gives {n_classes} logits")
        onehot[0, t["emotion_index"]] = 1.0
        return {"mouth": t["mouth"], "pose": t["pose"], "expression": onehot}

    base: dict[str, list] = {f: [] for f in FACTORS}
    swapped: dict[str, dict[str, list]] = {c: {m: [] for m in FACTORS} for c in FACTORS}
    t_base: dict[str, dict[str, list]] = {c: {m: [] for m in FACTORS} for c in FACTORS}
    t_swap: dict[str, dict[str, list]] = {c: {m: [] for m in FACTORS} for c in FACTORS}
    logits, labels, src_emb = [], [], []
    id_out: dict[str, list] = {"base": [], **{f"swap_{c}": [] for c in FACTORS}}
    for tup in tuples:
        source = np.asarray(world.frames(tup["source"]))[0]
        src_emb.append(_reader_output(readers.identity(source[None]), "readers.identity", 1).mean(0))
        drv = tup["drivers"]
        meas = measure(generate(source, drv))
        n_classes = meas["logits"].shape[0]
        for f in FACTORS:
            base[f].append(meas[f])
        logits.append(meas["logits"])
        labels.append(truth(drv["expression"])["emotion_index"])
        id_out["base"].append(meas["identity"])
        for c in FACTORS:
            sw = measure(generate(source, {**drv, c: tup["replacements"][c]}))
            if sw["logits"].shape[0] != n_classes:
                raise InputError(_LOGITS_DIFFER)
            old, new = truth_factors(drv[c], n_classes), truth_factors(tup["replacements"][c], n_classes)
            for m in FACTORS:
                swapped[c][m].append(sw[m])
                t_base[c][m].append(old[m])
                t_swap[c][m].append(new[m])
            id_out[f"swap_{c}"].append(sw["identity"])

    try:
        logits_arr = np.stack(logits)
    except ValueError:
        raise InputError(_LOGITS_DIFFER) from None
    driver_truth = {f: np.stack([truth(t["drivers"][f])[f] for t in tuples]) for f in ("mouth", "pose")}
    transfer = {f: r.to_dict() for f, r in
                transfer_errors({f: np.stack(base[f]) for f in ("mouth", "pose")}, driver_truth).items()}
    transfer["expression"] = {"accuracy": emotion_accuracy(logits_arr, np.asarray(labels)),
                              "n_clips": len(labels)}
    leak = leakage_matrix({f: np.stack(base[f]) for f in FACTORS},
                          {c: {m: np.stack(v) for m, v in row.items()} for c, row in swapped.items()},
                          {c: {m: np.stack(v) for m, v in row.items()} for c, row in t_base.items()},
                          {c: {m: np.stack(v) for m, v in row.items()} for c, row in t_swap.items()})
    ident = identity_across_outputs(np.stack(src_emb), id_out)
    names = [{"source": t["source"].name, **{f: t["drivers"][f].name for f in FACTORS},
              "replacements": {f: t["replacements"][f].name for f in FACTORS}} for t in tuples]
    return to_jsonable({"n_tuples": len(tuples), "n_frames": n_frames, "seed": seed, "split": split,
                        "tuples": names, "transfer": transfer, "leakage": leak.to_dict(),
                        "identity": ident.to_dict()})
