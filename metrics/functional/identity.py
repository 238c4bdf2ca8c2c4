"""CSIM: identity preservation as the cosine similarity between face-recognition embeddings.

CSIM = mean_t cos(e_src, e_gen_t): the source (identity) image's embedding against each generated
frame's, averaged over frames (a dataset value is then the mean over videos). Passing as many source
frames as generated ones compares frame by frame instead (the "paired GT frame" variant some papers
use; say which in the report). The reference embedder is ArcFace R50 (insightface `w600k_r50.onnx`,
see metrics.arcface.ArcFaceEmbedder); any callable `embedder(faces) -> (N, D)` can stand in.
"""

from __future__ import annotations

import numpy as np

from metrics.errors import InputError
from metrics.functional.image import check_finite
from metrics.functional.landmarks import check_frames

__all__ = ["cosine_similarity", "csim_per_frame", "align_faces", "embed", "csim"]


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


def align_faces(frames, kps, image_size: int = 112) -> np.ndarray:
    """insightface `face_align.norm_crop` per frame: similarity transform of the 5 keypoints (eyes,
    nose, mouth corners) onto ArcFace's template, warped to image_size x image_size."""
    from insightface.utils import face_align

    frames = check_frames(frames, "frames to align")
    kps = np.asarray(kps, dtype=np.float32)
    if kps.ndim == 2:
        kps = kps[None]
    if kps.shape != (len(frames), 5, 2):
        raise InputError(f"keypoints must be (T, 5, 2) pixels for {len(frames)} frames, got {kps.shape}")
    pairs = zip(frames, kps, strict=True)
    return np.stack([face_align.norm_crop(np.ascontiguousarray(f), k, image_size) for f, k in pairs])


def embed(embedder, faces, kps=None) -> np.ndarray:
    """(N, D) float64 embeddings of uint8 RGB faces; aligned with `align_faces` first when kps are given."""
    faces = check_frames(faces, "faces")
    if kps is not None:
        faces = align_faces(faces, kps, int(getattr(embedder, "input_size", (112, 112))[0]))
    out = embedder(faces)
    out = np.asarray(out.detach().cpu() if hasattr(out, "detach") else out, dtype=np.float64)
    if out.ndim != 2 or len(out) != len(faces):
        raise InputError(f"embedder returned {out.shape} for {len(faces)} faces; it must return (N, D)")
    return out


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
        from metrics.arcface import ArcFaceEmbedder

        embedder = ArcFaceEmbedder(weights)
    return float(
        csim_per_frame(embed(embedder, source, source_kps), embed(embedder, generated, generated_kps)).mean()
    )
