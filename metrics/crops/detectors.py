"""Face detectors the crop styles can plug in: `detector(frame) -> float64 (K, 5) [x0, y0, x1, y1, score]`.

A detector takes one uint8 (H, W, 3) RGB frame and returns its faces in that frame's pixels, best first,
and has a `name` that a CropResult records. Four are available:

* "s3fd": syncnet_python's S3FD on the user's `sfd_face.pth` (metrics.crops.s3fd), the reference's own.
* "s3fd-fa": face_alignment's S3FD on `s3fd-619a316812.pth`, which EDTalk's crop_video.py runs.
* "mtcnn": facenet-pytorch's MTCNN, whose weights ship inside the wheel (install it with `--no-deps`).
  Its boxes cover brow to chin like S3FD's, so crops framed from them are close, not equal.
* "dlib-hog": dlib's frontal HOG detector (upsample 1). Its boxes are tighter (brows to lower lip), so a
  crop framed from them is smaller around the face than the reference's.

`resolve_detector("auto")` takes the style's reference detector when its weights are found, else dlib HOG
(about 60 ms per 256-px frame on 2 cores, where MTCNN took about 900 ms), and says which deviation from
the reference that is.
"""
from __future__ import annotations

import numpy as np

from metrics.errors import MissingWeightsError, UserError

__all__ = ["DlibHog", "Mtcnn", "resolve_detector", "DETECTORS"]

DETECTORS = ("auto", "s3fd", "s3fd-fa", "mtcnn", "dlib-hog")


class DlibHog:
    """dlib's frontal face detector; boxes (left, top, right + 1, bottom + 1), scores from `run`."""

    name = "dlib-hog"

    def __init__(self, upsample: int = 1):
        try:
            import dlib
        except ImportError:
            raise UserError("the dlib-hog face detector needs dlib; pip install dlib-bin") from None
        self.upsample = int(upsample)
        self._detector = dlib.get_frontal_face_detector()

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        rects, scores, _ = self._detector.run(np.ascontiguousarray(frame), self.upsample)
        rows = [[r.left(), r.top(), r.right() + 1, r.bottom() + 1, s] for r, s in zip(rects, scores, strict=True)]
        dets = np.array(rows, dtype=np.float64).reshape(-1, 5)
        return dets[np.argsort(-dets[:, 4], kind="stable")]


class Mtcnn:
    """facenet-pytorch's MTCNN (weights bundled in its wheel), all faces with probability >= `min_prob`."""

    name = "mtcnn"

    def __init__(self, device=None, min_prob: float = 0.9):
        try:
            from facenet_pytorch import MTCNN
        except ImportError:
            raise UserError("the mtcnn face detector needs facenet-pytorch; pip install --no-deps "
                            "facenet-pytorch") from None
        from metrics.utils import resolve_device

        self.min_prob = float(min_prob)
        self._mtcnn = MTCNN(keep_all=True, device=resolve_device(device))

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        boxes, probs = self._mtcnn.detect(np.ascontiguousarray(frame))
        if boxes is None:
            return np.zeros((0, 5))
        dets = np.concatenate([np.asarray(boxes, np.float64), np.asarray(probs, np.float64)[:, None]], 1)
        dets = dets[dets[:, 4] >= self.min_prob]
        return dets[np.argsort(-dets[:, 4], kind="stable")]


def _build(name: str, weights, device, s3fd_options: dict | None):
    if name == "s3fd":
        from metrics.crops.s3fd import S3FD

        return S3FD(path=weights, device=device, **(s3fd_options or {}))
    if name == "s3fd-fa":
        from metrics.crops.s3fd import FaceAlignmentSFD

        return FaceAlignmentSFD(path=weights, device=device)
    return Mtcnn(device=device) if name == "mtcnn" else DlibHog()


def resolve_detector(spec="auto", weights=None, device=None, s3fd_options: dict | None = None,
                     reference: str = "syncnet_python's S3FD", reference_name: str | None = "s3fd",
                     auto_order: tuple[str, ...] = ("s3fd", "dlib-hog")):
    """(detector, deviations) for a name in DETECTORS or a ready callable with a `name`.

    "auto" tries `auto_order` and takes the first whose weights are found (S3FD's in the weights path,
    $EDTALK_WEIGHTS or torch hub's cache; dlib HOG needs none; MTCNN only when asked for: 15x slower
    here). A detector other than `reference_name` (the style's reference detector) is a deviation from
    `reference`, with the reason when "auto" had to pass over a missing weight file.
    """
    def deviation(name: str, why: str = "") -> list[str]:
        if name == reference_name:
            return []
        return [f"face detector {name} instead of {reference}" + (f" ({why})" if why else "")]

    if callable(spec):
        return spec, deviation(getattr(spec, "name", type(spec).__name__))
    if spec not in DETECTORS:
        raise UserError(f"unknown face detector {spec!r}; use one of {', '.join(DETECTORS)}")
    if spec != "auto":
        return _build(spec, weights, device, s3fd_options), deviation(spec)
    missing = []
    for name in auto_order:
        try:
            return _build(name, weights, device, s3fd_options), deviation(name, "; ".join(missing))
        except MissingWeightsError as exc:
            missing.append(str(exc).split(";")[0])
    raise MissingWeightsError("no face detector is available: " + "; ".join(missing))
