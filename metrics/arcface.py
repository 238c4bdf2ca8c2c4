"""The ArcFace embedder backend of CSIM: insightface's ArcFace R50 (`w600k_r50.onnx`).

`ArcFaceEmbedder` loads `w600k_r50.onnx` (buffalo_l's ArcFace R50, weights key "arcface-r50") through
insightface's own loader, `insightface.model_zoo.get_model(path)`, which routes it to `ArcFaceONNX`
(input (x - 127.5) / 127.5 RGB, 112x112; the mean/std switch for MXNet exports is insightface's).
It takes already-aligned 112x112 RGB crops (see `metrics.functional.identity.align_faces`).
insightface expects BGR (cv2) images; the RGB -> BGR swap happens here, so callers always pass RGB.
"""

from __future__ import annotations

import numpy as np

from metrics.errors import InputError
from metrics.functional.landmarks import check_frames

__all__ = ["ArcFaceEmbedder"]


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
