"""Streaming CSIM (see metrics.functional.identity) and the ArcFace embedder backend.

An *embedder* is any callable `embedder(faces) -> (N, D)` taking uint8 (N, H, W, 3) RGB face crops;
the in-project synthetic evaluator's identity net and `ArcFaceEmbedder` both fit.

`ArcFaceEmbedder` loads `w600k_r50.onnx` (buffalo_l's ArcFace R50, weights key "arcface-r50") through
insightface's own loader, `insightface.model_zoo.get_model(path)`, which routes it to `ArcFaceONNX`
(input (x - 127.5) / 127.5 RGB, 112x112; the mean/std switch for MXNet exports is insightface's).
It takes already-aligned 112x112 RGB crops: insightface's `FaceAnalysis` would detect with SCRFD and
align with `face_align.norm_crop` on 5 keypoints; pass those keypoints (`kps`, (N, 5, 2) pixels) and
`embed` aligns with the same `norm_crop` before embedding. insightface expects BGR (cv2) images;
the RGB -> BGR swap happens here, so callers always pass RGB.
"""

from __future__ import annotations

import numpy as np

from metrics.base import Metric
from metrics.errors import InputError
from metrics.functional.identity import csim_per_frame
from metrics.functional.landmarks import check_frames

__all__ = ["ArcFaceEmbedder", "align_faces", "embed", "IdentitySimilarity"]


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


class ArcFaceEmbedder:
    """insightface ArcFace (`w600k_r50.onnx`) via `insightface.model_zoo.get_model`.

    `embedder(faces)`: uint8 RGB (N, 112, 112, 3) aligned crops -> (N, 512) float32 raw embeddings
    (insightface's `face.embedding`; CSIM normalises them).
    """

    def __init__(self, path=None, device=None, verify: bool = True, batch_size: int = 32):
        from insightface.model_zoo import get_model

        from metrics.utils import resolve_device
        from metrics.weights import locate

        self.path = locate("arcface-r50", path, verify=verify)
        cuda = resolve_device(device).type == "cuda"
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        model = get_model(str(self.path), providers=providers)
        if model is None or getattr(model, "taskname", None) != "recognition":
            raise InputError(
                f"{self.path} is not a face-recognition ONNX model (insightface routed it to "
                f"{type(model).__name__}); expected ArcFace w600k_r50.onnx"
            )
        model.prepare(ctx_id=0 if cuda else -1)
        self.model = model
        self.input_size = tuple(model.input_size)  # (width, height)
        fixed = model.input_shape[0]
        self.batch_size = fixed if isinstance(fixed, int) and fixed > 0 else batch_size
        self.protocol = {
            "embedder": f"insightface ArcFaceONNX {self.path.name}",
            "input": "aligned RGB crops",
            "input_size": list(self.input_size),
            "mean": model.input_mean,
            "std": model.input_std,
        }

    def __call__(self, faces) -> np.ndarray:
        faces = check_frames(faces, "faces")
        w, h = self.input_size
        if faces.shape[1:3] != (h, w):
            raise InputError(
                f"ArcFace takes aligned {w}x{h} face crops, got {faces.shape[2]}x{faces.shape[1]}; "
                "align first (pass 5-point kps to csim/IdentitySimilarity, or use align_faces)"
            )
        bgr = [np.ascontiguousarray(f[..., ::-1]) for f in faces]  # insightface expects cv2 (BGR) images
        return np.concatenate(
            [self.model.get_feat(bgr[i : i + self.batch_size]) for i in range(0, len(bgr), self.batch_size)]
        ).astype(np.float32)

    def __repr__(self) -> str:
        return f"ArcFaceEmbedder({self.path.name}, input_size={self.input_size})"


class IdentitySimilarity(Metric):
    """CSIM over videos: per video the mean cosine between the source face and every generated frame,
    then the mean over videos. `update(source, generated, source_kps=None, generated_kps=None)` with
    uint8 RGB faces, or `update_embeddings(source_emb, generated_emb)`. Higher is better."""

    higher_is_better = True
    name = "csim"

    def __init__(self, embedder=None):
        super().__init__()
        self.embedder = embedder
        self.protocol = {
            "similarity": "cosine",
            "aggregation": "mean over frames, then over videos",
            "reference": "insightface buffalo_l ArcFace R50 (w600k_r50.onnx)",
        }
        self.add_state("per_video", [], reduce="cat")

    def update_embeddings(self, source_emb, generated_emb) -> None:
        self.per_video.append(float(csim_per_frame(source_emb, generated_emb).mean()))

    def update(self, source, generated, source_kps=None, generated_kps=None) -> None:
        if self.embedder is None:
            self.embedder = ArcFaceEmbedder()
        self.update_embeddings(
            embed(self.embedder, source, source_kps), embed(self.embedder, generated, generated_kps)
        )

    def compute(self) -> float:
        if not self.per_video:
            raise InputError("IdentitySimilarity.compute() called before any update()")
        return float(np.mean(self.per_video))
