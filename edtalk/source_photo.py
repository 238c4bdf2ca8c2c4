"""The source image `edtalk animate` drives: cropped the way the release's demos expect, or as given.

The release's README asks for every source photo to be cropped by `data_preprocess/crop_image2.py` first
(metrics.crops.edtalk_source reproduces it: one dlib face aligned onto the release's mean face, 256 x 256).
`load_source_image` does that crop by default, then fits the crop to the model's size (bicubic, as
`benchmarks.media.read_image`). A photo where no face is found is used as given, with one warning line
(sources of models trained on the synthetic world are not faces dlib knows); several faces are an error
unless `face` picks one; `crop=False` keeps the image as given.
"""
from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np

__all__ = ["load_source_image"]


def load_source_image(path, size: int, crop: bool = True, face: int | None = None,
                      warn: Callable[[str], None] | None = None) -> tuple[np.ndarray, dict]:
    """(uint8 (size, size, 3) RGB, record of what was done) for the image at `path`."""
    from PIL import Image

    from benchmarks.media import read_image
    from metrics.crops.edtalk_source import NoFaceError, crop_source_photo

    if not crop:
        return read_image(path, size), {"crop": "none (--no-crop)"}
    photo = read_image(path)
    try:
        cropped, info = crop_source_photo(photo, face, name=str(path))
    except NoFaceError as exc:
        (warn or (lambda line: print(line, file=sys.stderr)))(f"warning: {exc}; the image is used as given")
        return read_image(path, size), {"crop": "none (no face found)"}
    if cropped.shape[0] != size:
        cropped = np.asarray(Image.fromarray(cropped).resize((size, size), Image.BICUBIC), dtype=np.uint8)
    return cropped, {"crop": "edtalk-source (crop_image2.py)", "faces": info["faces"], "face": info["face"],
                     "face_box": info["face_box"]}
