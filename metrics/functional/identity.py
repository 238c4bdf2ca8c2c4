"""CSIM: identity preservation as the cosine similarity between face-recognition embeddings.

CSIM = mean_t cos(e_src, e_gen_t): the source (identity) image's embedding against each generated
frame's, averaged over frames (a dataset value is then the mean over videos). Passing as many source
frames as generated ones compares frame by frame instead (the "paired GT frame" variant some papers
use; say which in the report). The reference embedder is ArcFace R50 (insightface `w600k_r50.onnx`,
see metrics.identity.ArcFaceEmbedder); any callable `embedder(faces) -> (N, D)` can stand in.
"""

from __future__ import annotations

import numpy as np

from metrics.errors import InputError
from metrics.functional.image import check_finite

__all__ = ["cosine_similarity", "csim_per_frame", "csim"]


def _embeddings(x, what: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] < 1 or len(arr) == 0:
        raise InputError(f"{what} embeddings must be (N, D), got shape {arr.shape}")
    check_finite(arr, f"{what} embeddings", advice="check the frames and the face embedder")
    return arr


def cosine_similarity(a, b) -> np.ndarray:
    """Row-wise cosine between (N, D) and (N, D) (or (1, D), broadcast) embeddings, in float64."""
    a, b = _embeddings(a, "first"), _embeddings(b, "second")
    if a.shape[1] != b.shape[1]:
        raise InputError(f"embedding sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if len(a) != len(b) and 1 not in (len(a), len(b)):
        raise InputError(f"{len(a)} and {len(b)} embeddings cannot be paired: pass equal counts or one of them")
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    if (na == 0).any() or (nb == 0).any():
        raise InputError("an embedding is all zeros; its cosine similarity is undefined")
    return (a / na[:, None] * (b / nb[:, None])).sum(1)


def csim_per_frame(source_emb, generated_emb) -> np.ndarray:
    """(T,) cosines: one source embedding (1, D) against every generated frame, or T paired sources."""
    s, g = _embeddings(source_emb, "source"), _embeddings(generated_emb, "generated")
    if len(s) not in (1, len(g)):
        raise InputError(
            f"{len(s)} source embeddings for {len(g)} generated frames: pass one source or one per frame"
        )
    return cosine_similarity(s, g)


def csim(source, generated, embedder=None, source_kps=None, generated_kps=None, weights=None) -> float:
    """CSIM of one video.

    Args:
        source: the identity image(s), uint8 RGB (H, W, 3) or (1 or T, H, W, 3); or, when `embedder` is
            "precomputed", embeddings (D,) / (1 or T, D).
        generated: uint8 RGB (T, H, W, 3) frames (or (T, D) embeddings with embedder="precomputed").
        embedder: a callable `faces -> (N, D)`; None builds `ArcFaceEmbedder(weights)` (insightface's
            ArcFace R50 on aligned 112x112 RGB crops; with 5-point `*_kps` it aligns with `norm_crop`).
    """
    if isinstance(embedder, str):
        if embedder != "precomputed":
            raise InputError(f"embedder must be a callable, None or 'precomputed', not {embedder!r}")
        return float(csim_per_frame(source, generated).mean())
    if embedder is None:
        from metrics.identity import ArcFaceEmbedder

        embedder = ArcFaceEmbedder(weights)
    from metrics.identity import embed

    return float(
        csim_per_frame(embed(embedder, source, source_kps), embed(embedder, generated, generated_kps)).mean()
    )
