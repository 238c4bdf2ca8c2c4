"""Helpers the crop styles share: frame checking and streaming, the similarity fit, collecting crops.

A style takes `frames` as uint8 (T, H, W, 3) RGB (an array, memory-mapped or not), a single (H, W, 3)
image, any iterable of (H, W, 3) frames, or a zero-argument callable returning such an iterable (for
styles that read the clip twice), and walks them one at a time, so memory does not grow with the clip
beyond the crops it returns.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from metrics.errors import InputError

# dlib's HOG detector finds faces of about 80 px, 40 px with one upsampling: a frame smaller than this
# can hold no detectable face, so it is refused rather than reported as "no face".
MIN_FRAME_SIDE = 32


def describe_bad_frame(frame: np.ndarray, where: str) -> str | None:
    """One line saying why `frame` is not a uint8 (H, W, 3) RGB frame, or None when it is one."""
    shape, dtype = frame.shape, frame.dtype
    if frame.ndim == 2:
        return (f"{where} is a grey (H, W) = {shape} image; crops need RGB: repeat it to (H, W, 3) with "
                "np.repeat(img[..., None], 3, -1) or read it with benchmarks.media.read_image")
    if frame.ndim == 3 and shape[-1] == 4:
        return f"{where} has 4 channels (RGBA) {shape}; drop the alpha channel (frames[..., :3]) first"
    if frame.ndim != 3 or shape[-1] != 3:
        return f"{where} has shape {shape}; a frame must be (H, W, 3) RGB"
    if dtype != np.uint8:
        return f"{where} is {dtype}; crops need uint8 RGB frames (0..255)"
    if min(shape[:2]) < MIN_FRAME_SIDE:
        return (f"{where} is {shape[1]}x{shape[0]} pixels, too small to hold a detectable face (at least "
                f"{MIN_FRAME_SIDE}x{MIN_FRAME_SIDE}); pass the full-resolution frames")
    return None


def iter_frames(frames, style: str) -> Iterator[np.ndarray]:
    """Yield the frames of `frames` one by one, each checked (one-line InputError naming the frame).

    `frames` may also be a zero-argument callable returning such an iterable (a re-readable source, e.g.
    `lambda: iter_video(path)`), which styles that read a clip twice call once per pass.
    """
    if callable(frames) and not isinstance(frames, np.ndarray):
        frames = frames()
    if isinstance(frames, np.ndarray):
        if frames.ndim == 3 and frames.shape[-1] == 3 and min(frames.shape[:2]) >= MIN_FRAME_SIDE:
            frames = frames[None]  # one RGB image
        elif frames.ndim == 3 and frames.shape[-1] not in (3, 4):
            raise InputError(f"{style}: the input is a grey (T, H, W) = {frames.shape} clip; crops need RGB: "
                             "repeat it to (T, H, W, 3) with np.repeat(frames[..., None], 3, -1)")
        elif frames.ndim in (2, 3):
            raise InputError(f"{style}: " + describe_bad_frame(frames, "the input"))
        source: Iterable = frames if frames.ndim == 4 else [frames]
    elif isinstance(frames, (str, bytes)) or not isinstance(frames, Iterable):
        raise InputError(f"{style}: frames must be uint8 (T, H, W, 3) RGB or an iterable of (H, W, 3) frames, "
                         f"got {type(frames).__name__}")
    else:
        source = frames
    for index, frame in enumerate(source):
        frame = np.asarray(frame)
        problem = describe_bad_frame(frame, f"frame {index}")
        if problem:
            raise InputError(f"{style}: {problem}")
        yield np.ascontiguousarray(frame)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 least-squares similarity (rotation, uniform scale, translation) taking `src` points onto `dst`.

    Umeyama's closed form, the estimator of skimage.transform.SimilarityTransform that the references
    call. The points keep the dtype the caller gives (EAT passes float32 landmarks, so its fit runs in
    float32): numpy's promotion then matches the reference's arithmetic exactly.
    """
    src, dst = np.asarray(src), np.asarray(dst)
    n, dim = src.shape
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_d, dst_d = src - src_mean, dst - dst_mean
    a = dst_d.T @ src_d / n
    d = np.ones(dim)
    if np.linalg.det(a) < 0:
        d[-1] = -1
    t = np.eye(dim + 1)
    u, s, vt = np.linalg.svd(a)
    rank = np.count_nonzero(s > s.max() * max(a.shape) * np.finfo(float).eps)
    if rank == 0:
        raise InputError("the landmarks for the similarity fit are all one point; the face detection is degenerate")
    if rank == dim - 1 and np.linalg.det(u) * np.linalg.det(vt) > 0:
        t[:dim, :dim] = u @ vt
    elif rank == dim - 1:
        flipped = d.copy()
        flipped[-1] = -1
        t[:dim, :dim] = u @ np.diag(flipped) @ vt
    else:
        t[:dim, :dim] = u @ np.diag(d) @ vt
    scale = 1.0 / src_d.var(axis=0).sum() * (s @ d)
    t[:dim, dim] = dst_mean - scale * (t[:dim, :dim] @ src_mean)
    t[:dim, :dim] *= scale
    return t


def length_hint(frames) -> int | None:
    """The number of frames `frames` will yield, when it says (arrays, lists, sized readers), else None."""
    if isinstance(frames, np.ndarray):
        return 1 if frames.ndim == 3 else len(frames)
    try:
        return len(frames)
    except TypeError:
        return None


class CropCollector:
    """Accumulates kept crops and their per-frame records; `arrays()` returns them stacked.

    With `expected` (the clip length, when known) the crops go straight into one preallocated array, so
    the peak memory is the output plus one frame; otherwise they are stacked at the end (twice the output
    for a moment).
    """

    def __init__(self, size: int, record_shape: tuple[int, ...], expected: int | None = None):
        self.size, self.record_shape = size, record_shape
        self.buffer = np.empty((expected, size, size, 3), np.uint8) if expected else None
        self.frames: list[np.ndarray] = []
        self.kept: list[int] = []
        self.records: list[np.ndarray] = []
        self.seen = 0

    def add(self, index: int, crop: np.ndarray, record) -> None:
        if self.buffer is not None and len(self.kept) < len(self.buffer):
            self.buffer[len(self.kept)] = crop
        else:
            self.frames.append(crop)
        self.kept.append(index)
        self.records.append(np.asarray(record, np.float64).reshape(self.record_shape))

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s = self.size
        if self.buffer is not None and not self.frames:
            frames = self.buffer[:len(self.kept)]  # a view: dropped frames leave unused rows, not a copy
        elif self.buffer is not None:
            frames = np.concatenate([self.buffer, np.stack(self.frames)])
        else:
            frames = np.stack(self.frames) if self.frames else np.zeros((0, s, s, 3), np.uint8)
        records = np.stack(self.records) if self.records else np.zeros((0, *self.record_shape))
        return frames, np.asarray(self.kept, np.int64), records
