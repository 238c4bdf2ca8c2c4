"""Streaming CSIM (see metrics.functional.identity).

An *embedder* is any callable `embedder(faces) -> (N, D)` taking uint8 (N, H, W, 3) RGB face crops;
the in-project synthetic evaluator's identity net and `metrics.arcface.ArcFaceEmbedder` both fit.
insightface's `FaceAnalysis` would detect with SCRFD and align with `face_align.norm_crop` on 5
keypoints; pass those keypoints (`*_kps`, (N, 5, 2) pixels) and the faces are aligned with the same
`norm_crop` before embedding (`metrics.functional.identity.align_faces`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from metrics.arcface import ArcFaceEmbedder
from metrics.base import Metric
from metrics.errors import InputError
from metrics.functional.identity import align_faces, csim_per_frame, embed

__all__ = ["ArcFaceEmbedder", "align_faces", "embed", "IdentitySimilarity"]


class IdentitySimilarity(Metric):
    """CSIM over videos: per video the mean cosine between the source face and every generated frame,
    then the mean over videos. `update(source, generated, source_kps=None, generated_kps=None)` with
    uint8 RGB faces, or with embeddings: `update(source_emb, generated_emb, precomputed=True)` (also
    `update_embeddings(source_emb, generated_emb)`). Higher is better."""

    higher_is_better = True
    name = "csim"

    def __init__(self, embedder=None, **kwargs: Any):
        super().__init__(**kwargs)
        self.embedder = embedder
        self.protocol = {
            "similarity": "cosine",
            "aggregation": "mean over frames, then over videos",
            "reference": "insightface buffalo_l ArcFace R50 (w600k_r50.onnx)",
        }
        #: per-sample results: each video's CSIM
        self.add_state("per_video", [], dist_reduce_fx="cat")

    def update(self, source, generated, source_kps=None, generated_kps=None, precomputed: bool = False) -> None:
        if not precomputed:
            if self.embedder is None:
                self.embedder = ArcFaceEmbedder()
            source, generated = embed(self.embedder, source, source_kps), embed(self.embedder, generated, generated_kps)
        self.append_sample("per_video", csim_per_frame(source, generated).mean())

    def update_embeddings(self, source_emb, generated_emb) -> None:
        """`update` with precomputed embeddings: (D,) or (N, D) source, (N, D) generated."""
        self.update(source_emb, generated_emb, precomputed=True)

    def compute(self) -> float:
        if not len(self.per_video):
            raise InputError("IdentitySimilarity.compute() called before any update()")
        return float(np.mean(self.per_sample("per_video")))
