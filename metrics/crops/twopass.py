"""Reading a clip twice without holding it: styles that detect in one pass and crop in a second."""
from __future__ import annotations

import numpy as np

__all__ = ["rereadable"]


def rereadable(frames, style: str):
    """A zero-argument callable giving a fresh, checked iterator over the clip each time it is called.

    Arrays and callables (e.g. `lambda: iter_video(path)`) are read twice without holding the clip; a
    one-shot iterator is kept in memory for the second pass (pass a callable to avoid that). Frames are
    checked by metrics.crops.common.iter_frames (one-line InputError for grey, RGBA, tiny or non-uint8).
    """
    from metrics.crops.common import iter_frames

    if isinstance(frames, np.ndarray) or callable(frames):
        return lambda: iter_frames(frames, style)
    held = list(iter_frames(frames, style))
    return lambda: iter(held)
