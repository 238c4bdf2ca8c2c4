"""`edtalk-source`: EDTalk's crop of a source photo (tanshuai0219/EDTalk `data_preprocess/crop_image2.py`).

The release's README asks for every source image to be cropped by `crop_image2.py` before its demos run.
Its rule: dlib's frontal HOG detector on the grey photo (upsample 1); the photo is used only when it
holds exactly one face; dlib's 68 points of that face; the similarity that takes the first 47 points of
the release's mean face `M003_template.npy` (Apache-2.0, shipped below as numbers) onto them;
`skimage.transform.warp` of the photo through it into 256 x 256 (bilinear, black outside), scaled by
255 and truncated to uint8.

Here: a photo with no face is an InputError (the release silently writes nothing); with several faces
the release also writes nothing, and here `face=k` picks the k-th from the left (default: refuse, one
line naming how many there are). `boxes` holds the 47 landmarks used.
"""
from __future__ import annotations

import functools

import numpy as np

from metrics.crops import CropResult, register
from metrics.errors import InputError

__all__ = ["edtalk_source", "crop_source_photo", "M003_TEMPLATE_47", "NoFaceError"]

# data_preprocess/M003_template.npy, points 0-46 (jaw, brows, nose, eyes): x, y in the 256 x 256 crop
M003_TEMPLATE_47 = np.array([
    [61, 119], [62, 137], [65, 156], [69, 173], [75, 189], [86, 203], [101, 213], [117, 221], [135, 224],
    [152, 221], [165, 211], [175, 199], [183, 184], [187, 168], [189, 151], [192, 135], [194, 118],
    [77, 109], [87, 99], [102, 95], [117, 96], [132, 101], [146, 101], [159, 98], [171, 97], [183, 100],
    [190, 110], [140, 111], [140, 121], [142, 132], [143, 143], [127, 154], [134, 155], [141, 157],
    [147, 155], [152, 153], [94, 114], [102, 109], [111, 109], [118, 114], [111, 116], [102, 116],
    [154, 115], [161, 109], [170, 110], [176, 114], [170, 117]], dtype=np.float32)
SIZE = 256


class NoFaceError(InputError):
    """The photo holds no face dlib finds (callers may choose to use it uncropped)."""


@functools.lru_cache(maxsize=2)
def _dlib_models(predictor_path: str):
    import dlib

    return dlib.get_frontal_face_detector(), dlib.shape_predictor(predictor_path)


def _faces(photo: np.ndarray):
    import cv2

    from metrics.weights import locate

    detector, predictor = _dlib_models(str(locate("dlib-68")))  # loading the 68-point model takes ~1 s
    grey = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)  # the release reads BGR and converts BGR2GRAY: the same
    rects = detector(grey, 1)
    return grey, sorted(rects, key=lambda r: r.left()), predictor


def crop_source_photo(photo: np.ndarray, face: int | None = None, name: str = "the photo") -> tuple[np.ndarray, dict]:
    """(uint8 (256, 256, 3) RGB crop, info) of one uint8 (H, W, 3) RGB photo, as crop_image2.crop_image."""
    from skimage import transform

    if not isinstance(photo, np.ndarray) or photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[-1] != 3:
        got = f"{getattr(photo, 'dtype', type(photo).__name__)} {getattr(photo, 'shape', '')}"
        raise InputError(f"{name}: the source crop needs a uint8 (H, W, 3) RGB image, got {got}; convert grey or "
                         "RGBA images to RGB first")
    grey, rects, predictor = _faces(photo)
    if not rects:
        raise NoFaceError(f"{name}: no face found ({photo.shape[1]}x{photo.shape[0]}); give a photo with one "
                         "frontal face, or --no-crop to use it as given")
    if face is None and len(rects) > 1:
        where = ", ".join(f"x {r.left()}-{r.right()}" for r in rects)
        raise InputError(f"{name}: {len(rects)} faces ({where}); EDTalk's crop takes a photo of exactly one face: "
                         f"pick one with --face 0..{len(rects) - 1} (left to right) or crop the photo")
    k = 0 if face is None else int(face)
    if not 0 <= k < len(rects):
        raise InputError(f"{name}: face {k} asked for, {len(rects)} found")
    shape = predictor(grey, rects[k])
    points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(47)], dtype=np.float32)
    tform = transform.SimilarityTransform.from_estimate(M003_TEMPLATE_47, points)
    warped = transform.warp(photo, tform, output_shape=(SIZE, SIZE))
    crop = np.array(warped * 255, dtype=np.uint8)  # truncation, as the release
    r = rects[k]
    return crop, {"faces": len(rects), "face": k, "face_box": [r.left(), r.top(), r.right() + 1, r.bottom() + 1],
                  "landmarks": points}


@register("edtalk-source")
def edtalk_source(frames, face: int | None = None) -> CropResult:
    """Each frame cropped as a source photo: usually one, `crop(photo, "edtalk-source")` with an (H, W, 3)
    photo; clips (arrays, iterables, re-readable callables) are walked frame by frame."""
    from metrics.crops.common import CropCollector, iter_frames, length_hint

    out = CropCollector(SIZE, (47, 2), expected=length_hint(frames))
    counts = []
    for i, frame in enumerate(iter_frames(frames, "edtalk-source")):
        crop, info = crop_source_photo(frame, face, name=f"frame {i}")
        out.add(i, crop, info["landmarks"])
        counts.append(info["faces"])
    if not counts:
        raise InputError("edtalk-source got no image (0 frames)")
    crops, kept, points = out.arrays()
    return CropResult(frames=crops, kept=kept, boxes=points, style="edtalk-source", detector="dlib-hog",
                      info={"faces": counts})
