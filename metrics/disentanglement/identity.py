"""Identity preservation across cross-driven outputs: cosine between source and output embeddings."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from metrics.disentanglement.arrays import as_array
from metrics.errors import InputError
from metrics.utils import to_jsonable

__all__ = ["identity_preservation", "IdentityResult", "identity_across_outputs"]


def identity_preservation(source_embedding, output_embeddings) -> float:
    """Mean over output frames of the cosine similarity to the source's identity embedding (CSIM).

    Args:
        source_embedding: (D,) embedding of the source face (e.g. ArcFace).
        output_embeddings: (T, D) embeddings of the generated frames (or (D,) for one frame).
    Returns:
        mean_t cos(source, output_t), in [-1, 1]; 1 = the same identity direction.
    """
    src = as_array(source_embedding, "source embedding").reshape(-1)
    out = as_array(output_embeddings, "output embeddings")
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
    src = as_array(source_embeddings, "source embeddings")
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
