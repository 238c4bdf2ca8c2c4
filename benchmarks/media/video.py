"""Reading video and still images: probe, stream, read (with what was converted: colour, size, timing)."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metrics.errors import InputError

# A stream is variable-frame-rate when its frame intervals spread by more than this fraction of the
# median interval (or 2.5 time-base ticks, whichever is larger: 29.97 fps in Matroska's 1 ms time base
# alternates 33 and 34 ms intervals and is still constant-rate). A dropped or repeated frame counts.
VFR_SPREAD = 0.1

@dataclass
class VideoClip:
    frames: np.ndarray  # uint8 (T, H, W, 3) RGB
    fps: float  # the container's average rate (what ffprobe reports as avg_frame_rate)
    times: np.ndarray | None = None  # presentation time of each frame in s from the first; None: i / fps
    timing: dict = field(default_factory=dict)  # vfr, fps_min, fps_max, fps_mean measured from the timestamps
    conversions: dict = field(default_factory=dict)  # what the reader changed: "color", "size", "fps"
    source: str | None = None  # the file it came from

    @property
    def vfr(self) -> bool:
        return bool(self.timing.get("vfr", False))


def _color_info(pix_fmt: str | None) -> dict:
    """Whether a pixel format is grayscale (one non-alpha component) and whether it carries alpha."""
    import av

    try:
        fmt = av.VideoFormat(pix_fmt) if pix_fmt else None
    except (ValueError, TypeError):
        fmt = None
    if fmt is None:
        return {"gray": False, "alpha": False}
    comps = fmt.components
    colour = [c for c in comps if not c.is_alpha]
    return {"gray": not fmt.has_palette and len(colour) == 1, "alpha": any(c.is_alpha for c in comps)}


def _color_conversion(pix_fmt: str, gray: bool, alpha: bool) -> dict:
    notes = []
    if gray:
        notes.append("gray replicated to R=G=B")
    if alpha:
        notes.append("alpha channel dropped (not composited)")
    return {"pix_fmt": pix_fmt, "to": "rgb24", "note": "; ".join(notes)}


def frame_timing(times, tick: float = 0.0, nominal_fps: float = 0.0) -> dict:
    """Frame-rate facts from presentation times in seconds: vfr, fps_min, fps_max, fps_mean."""
    t = np.sort(np.asarray(times, np.float64))
    d = np.diff(t)
    d = d[d > 0]
    if len(d) == 0:
        return {"vfr": False, "fps_min": nominal_fps, "fps_max": nominal_fps, "fps_mean": nominal_fps}
    med = float(np.median(d))
    vfr = float(d.max() - d.min()) > max(VFR_SPREAD * med, 2.5 * tick)
    return {"vfr": bool(vfr), "fps_min": round(1.0 / float(d.max()), 4),
            "fps_max": round(1.0 / float(d.min()), 4), "fps_mean": round(len(d) / float(t[-1] - t[0]), 4)}


def _open(path):
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path}: not a readable media file ({exc.__class__.__name__}); re-encode it, e.g. "
                         "ffmpeg -i IN -c:v libx264 -r 25 OUT.mp4") from exc


def probe_video(path, timing: bool = True) -> dict:
    """fps (container average), n_frames, width, height, has_audio, pix_fmt, time_base, gray, alpha;
    with `timing` (reads every packet header, decodes nothing) n_frames is counted and vfr, fps_min,
    fps_max and fps_mean come from the packets' timestamps."""
    import av

    with _open(path) as c:
        if not c.streams.video:
            raise InputError(f"{path}: has no video stream")
        v = c.streams.video[0]
        if v.codec_context is None:  # e.g. a truncated mp4 whose stream has no decodable codec setup
            raise InputError(f"{path}: the video stream cannot be decoded (truncated or corrupt header); "
                             "re-encode it, e.g. ffmpeg -i IN -c:v libx264 -r 25 OUT.mp4")
        fps = float(v.average_rate or v.guessed_rate or 0)
        n = v.frames or 0
        if not n and v.duration is not None and v.time_base is not None and fps:
            n = int(round(float(v.duration * v.time_base) * fps))
        info = {"fps": fps, "n_frames": int(n), "width": v.codec_context.width,
                "height": v.codec_context.height, "has_audio": bool(c.streams.audio),
                "pix_fmt": v.codec_context.pix_fmt,
                "time_base": float(v.time_base) if v.time_base is not None else 0.0,
                **_color_info(v.codec_context.pix_fmt)}
        if timing:
            tick = info["time_base"]
            try:
                pts = [p.pts for p in c.demux(v) if p.pts is not None]  # the flush packet has no pts
            except av.error.FFmpegError as exc:
                raise InputError(f"{path}: reading the video packets failed ({exc.__class__.__name__}); "
                                 "the file is truncated or corrupt") from exc
            info["n_frames"] = len(pts)
            info.update(frame_timing(np.asarray(pts, np.float64) * tick, tick, fps))
        return info


def iter_video(path, chunk: int = 64, size: int | None = None) -> Iterator[np.ndarray]:
    """Decoded RGB frames in chunks of at most `chunk`, optionally resized to size x size."""
    return _decode(path, chunk, size)


def _decode(path, chunk: int, size: int | None, times: list | None = None) -> Iterator[np.ndarray]:
    """iter_video's body; appends each frame's presentation time (s, None if unknown) to `times`."""
    import av

    buf: list[np.ndarray] = []
    count = 0
    with _open(path) as c:
        if not c.streams.video:
            raise InputError(f"{path}: has no video stream")
        try:
            for frame in c.decode(video=0):
                if times is not None:
                    times.append(frame.time)
                if size is not None and (frame.width != size or frame.height != size):
                    frame = frame.reformat(width=size, height=size)
                buf.append(frame.to_ndarray(format="rgb24"))
                count += 1
                if len(buf) == chunk:
                    yield np.stack(buf)
                    buf = []
        except av.error.FFmpegError as exc:
            raise InputError(f"{path}: decoding failed after {count} frames ({exc.__class__.__name__}); "
                             "the file is truncated or corrupt") from exc
    if buf:
        yield np.stack(buf)
    elif count == 0:
        raise InputError(f"{path}: the video has zero decodable frames")


def read_video(path, size: int | None = None) -> VideoClip:
    """The whole video as uint8 RGB; grayscale/alpha conversion and resizing are noted in `conversions`,
    the frame timestamps and whether the rate varies in `times` and `timing`."""
    info = probe_video(path, timing=False)
    fps = info["fps"]
    stamps: list = []
    frames = np.concatenate(list(_decode(path, 256, size, stamps)))
    times = None
    if stamps and all(t is not None for t in stamps):
        times = np.asarray(stamps, np.float64)
        times = times - times[0]
    timing = frame_timing(times, info["time_base"], fps) if times is not None else \
        {"vfr": False, "fps_min": fps, "fps_max": fps, "fps_mean": fps}
    conversions = {}
    if info["gray"] or info["alpha"]:
        conversions["color"] = _color_conversion(info["pix_fmt"], info["gray"], info["alpha"])
    if size is not None and (info["width"], info["height"]) != (size, size):
        conversions["size"] = {"from": [info["width"], info["height"]], "to": [size, size]}
    return VideoClip(frames, fps, times, timing, conversions, str(path))


def read_image(path, size: int | None = None) -> np.ndarray:
    """uint8 (H, W, 3) RGB; grayscale and alpha are converted, and the conversion is silent by design."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such image")
    try:
        img = Image.open(path).convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: not a readable image") from exc
    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return np.asarray(img, dtype=np.uint8)
