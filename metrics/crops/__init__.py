"""Face crops as each reference pipeline makes them: one entry point, `crop(frames, style, **options)`.

Every Table-1 metric on real video depends on the pixels its reference tool crops. Each style lives in
its own module of this package and registers itself under its name; `crop` dispatches on that name.

    from metrics.crops import crop
    result = crop(frames, "eat-aligned")          # frames: uint8 (T, H, W, 3) RGB
    result.frames, result.kept, result.boxes       # (T', S, S, 3) uint8, input indices kept, per-frame boxes

A `CropResult` also says which detector ran and how the run departed from the reference pipeline
(`deviations`), so results files can record it.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from metrics.errors import InputError, suggest

__all__ = ["CropResult", "crop", "register", "styles"]


@dataclass
class CropResult:
    """What a crop style returns.

    frames: uint8 (T', S, S, 3) RGB, one per kept input frame, in input order.
    kept: int64 (T',) indices of the input frames the crops come from (frames without a face are dropped).
    boxes: per kept frame, the box (x0, y0, x1, y1) or landmarks the crop was made from (style-specific).
    style, detector: names of what ran. deviations: how this run differs from the reference pipeline.
    dropped: number of input frames without a crop (faceless, outside a face track, ...).
    """
    frames: np.ndarray
    kept: np.ndarray
    boxes: np.ndarray
    style: str
    detector: str = ""
    deviations: list[str] = field(default_factory=list)
    dropped: int = 0
    info: dict = field(default_factory=dict)

    def provenance(self) -> dict:
        """The JSON-able record a results file stores for the crop of one clip."""
        return {"style": self.style, "detector": self.detector, "deviations": list(self.deviations),
                "kept": int(len(self.kept)), "dropped": int(self.dropped), **self.info}


# style name -> module that registers it (imported on first use: dlib/torch load only when needed)
_STYLE_MODULES: dict[str, str] = {
    "eat-aligned": "metrics.crops.eat",
    "emotion-chip": "metrics.crops.eat",
    "mouth-sync": "metrics.crops.mouth_sync",
    "syncnet-track": "metrics.crops.syncnet_track",
    "edtalk-preprocess": "metrics.crops.edtalk_preprocess",
    "edtalk-source": "metrics.crops.edtalk_source",
}
_STYLES: dict[str, Callable[..., CropResult]] = {}


def register(name: str):
    """Decorator: `@register("eat-aligned")` over `fn(frames, **options) -> CropResult`."""
    def wrap(fn):
        _STYLES[name] = fn
        return fn
    return wrap


def styles() -> list[str]:
    return sorted(set(_STYLE_MODULES) | set(_STYLES))


def _resolve(style: str) -> Callable[..., CropResult]:
    if style not in _STYLES and style in _STYLE_MODULES:
        importlib.import_module(_STYLE_MODULES[style])
    if style not in _STYLES:
        raise InputError(f"unknown crop style {style!r}{suggest(style, styles())}; known: {', '.join(styles())}")
    return _STYLES[style]


def crop(frames, style: str, **options) -> CropResult:
    """Crop the face of every frame of one clip the way `style`'s reference pipeline does."""
    return _resolve(style)(frames, **options)
