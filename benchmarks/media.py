"""Video and audio I/O on PyAV (its wheels carry FFmpeg): probe, stream, read, and write H.264 + AAC.

Readers raise `InputError` with the file name and what to do when a file is missing, unreadable,
empty or lacks a stream that is needed. Writers go through a temporary file renamed into place, so
an interrupted write never leaves a truncated video behind.

What a reader changes is recorded, never silent: `VideoClip.conversions` notes grayscale or alpha
frames turned into RGB and resizing, `read_audio(..., info={})` the resampling and downmixing,
`conform_fps` returns what it did to the frame rate, and `fit_audio_to_video` what it trimmed or
padded. `check_size` and `check_av_sync` refuse inputs too far off to fix silently.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from metrics.errors import InputError

DEFAULT_CRF = 12  # visually lossless; keeps decoded frames close to what was rendered
# A stream is variable-frame-rate when its frame intervals spread by more than this fraction of the
# median interval (or 2.5 time-base ticks, whichever is larger: 29.97 fps in Matroska's 1 ms time base
# alternates 33 and 34 ms intervals and is still constant-rate). A dropped or repeated frame counts.
VFR_SPREAD = 0.1
# Largest audio/video length disagreement `fit_audio_to_video` trims or pads instead of refusing.
# Encoders alone add tens of ms (AAC priming of 1024 samples, container edit lists), and a method's
# output of floor(audio_s * 25) frames is up to one frame short, so those are fixed and recorded.
# syncnet_python's offset search spans +-15 frames (0.6 s at 25 fps): a disagreement longer than that
# cannot be a sync offset but a wrong audio/video pairing or a cut clip, so 0.5 s (12.5 frames) stays
# below it and refuses.
AV_TOLERANCE_S = 0.5


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


def resample_indices(n_frames: int, src_fps: float, dst_fps: float = 25.0) -> np.ndarray:
    """Source frame index for each output frame at `dst_fps` (nearest earlier timestamp, as ffmpeg -r)."""
    if src_fps <= 0:
        raise InputError(f"invalid source frame rate {src_fps}")
    duration = n_frames / src_fps
    n_out = int(np.floor(duration * dst_fps + 1e-6))
    return np.minimum(np.floor(np.arange(n_out) * src_fps / dst_fps + 1e-6).astype(int), n_frames - 1)


def resample_times(times, dst_fps: float = 25.0) -> np.ndarray:
    """As `resample_indices` for frames at arbitrary times (s, increasing; variable frame rate): the
    frame shown at k / dst_fps for every k within the clip (its last frame lasts as long as the previous)."""
    t = np.asarray(times, np.float64)
    t = t - t[0]
    last = float(t[-1] - t[-2]) if len(t) > 1 else 1.0 / dst_fps
    n_out = int(np.floor((t[-1] + last) * dst_fps + 1e-6))
    idx = np.searchsorted(t, np.arange(n_out) / dst_fps + 1e-6, side="right") - 1
    return np.clip(idx, 0, len(t) - 1)


def conform_fps(video, target: float = 25.0, policy: str = "resample", tolerance: float = 1e-3
                ) -> tuple[VideoClip, dict]:
    """A clip (or a path, read here) at exactly `target` fps and constant rate.

    `policy="resample"` picks, for each output frame, the nearest earlier source frame (ffmpeg -r; by
    timestamp when the rate varies); `"refuse"` raises `InputError` with the measured rate. Returns the
    clip (the input itself when nothing had to change) and a record of what was done, which is also
    stored as the clip's `conversions["fps"]`.
    """
    if policy not in ("resample", "refuse"):
        raise InputError(f"fps policy must be 'resample' or 'refuse', not {policy!r}")
    clip = video if isinstance(video, VideoClip) else read_video(video)
    name = clip.source or "video"
    n = len(clip.frames)
    rec = {"source_fps": round(float(clip.fps), 4), "target_fps": float(target), "vfr": clip.vfr,
           "policy": policy, "frames_in": n}
    if not clip.vfr and abs(clip.fps - target) <= tolerance * target:
        rec.update(action="none", frames_out=n)
        return clip, rec
    if policy == "refuse":
        what = (f"variable frame rate ({clip.timing['fps_min']:g}-{clip.timing['fps_max']:g} fps, mean "
                f"{clip.timing['fps_mean']:g})" if clip.vfr else f"{clip.fps:.3f} fps")
        raise InputError(f"{name}: {what} but {target:g} fps is needed; resample it (conform_fps(..., "
                         f"policy='resample') or ffmpeg -i IN -r {target:g} OUT.mp4)")
    if clip.vfr and clip.times is not None:
        idx, how = resample_times(clip.times, target), "nearest earlier frame by timestamp (variable rate)"
    else:
        idx, how = resample_indices(n, clip.fps, target), "nearest earlier frame (ffmpeg -r)"
    if len(idx) == 0:
        raise InputError(f"{name}: {n} frames at {clip.fps:.3f} fps are shorter than one frame at "
                         f"{target:g} fps")
    kept = len(np.unique(idx))
    rec.update(action="resampled", method=how, frames_out=int(len(idx)), repeated=int(len(idx) - kept),
               dropped=int(n - kept))
    rate = float(target)
    out = VideoClip(clip.frames[idx], rate, np.arange(len(idx)) / rate,
                    {"vfr": False, "fps_min": rate, "fps_max": rate, "fps_mean": rate},
                    {**clip.conversions, "fps": rec}, clip.source)
    return out, rec


def check_size(frames, size: int | tuple[int, int], source=None) -> None:
    """Refuse frames (array or VideoClip) that are not `size` (an int for square, or (height, width))."""
    if isinstance(frames, VideoClip):
        source = source or frames.source
        frames = frames.frames
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    shape = np.shape(frames)
    if len(shape) < 3 or tuple(shape[-3:-1]) != (h, w):
        got = f"{shape[-2]}x{shape[-3]}" if len(shape) >= 3 else f"shape {shape}"
        raise InputError(f"{source or 'video'}: frames are {got} (WxH) but {w}x{h} is needed; crop to the "
                         f"face and resize first (benchmarks.datasets.real.preprocess_clip(..., size={w}) "
                         f"or read_video(path, size={w}))")


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


def read_audio(path, sample_rate: int = 16000, info: dict | None = None) -> np.ndarray:
    """Mono float32 in [-1, 1] at `sample_rate` (resampled and downmixed as needed).

    Downmixing is the mean of the channels (librosa.to_mono, what Wav2Lip/EDTalk's loaders do) on every
    path. Pass a dict as `info` to get what was done: source_sample_rate, source_channels, sample_rate,
    resampled, downmixed, n_samples.
    """
    import av

    path = Path(path)
    if path.suffix.lower() == ".wav":
        try:
            import soundfile as sf

            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
            if sr == sample_rate and len(data):
                mono = data.mean(axis=1).astype(np.float32)
                _audio_info(info, path, sr, data.shape[1], sample_rate, len(mono))
                return mono
        except (RuntimeError, OSError):
            pass  # fall through to FFmpeg, which reads more variants
    with _open(path) as c:
        if not c.streams.audio:
            raise InputError(f"{path}: has no audio track; give a file with speech audio")
        ctx = c.streams.audio[0].codec_context
        if ctx is None:  # e.g. a truncated mp4 whose audio stream has no decodable codec setup
            raise InputError(f"{path}: the audio stream cannot be decoded (truncated or corrupt header); "
                             "re-encode or re-download the file")
        src_rate, channels = ctx.sample_rate, ctx.channels
        # Planar float keeping the source channels; the mean below is the downmix (FFmpeg's own mono
        # matrix weights stereo by 1/sqrt(2) each, 3 dB louder than librosa's mean).
        resampler = av.AudioResampler(format="fltp", layout=None, rate=sample_rate)
        parts = []
        try:
            for frame in c.decode(audio=0):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().mean(axis=0))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().mean(axis=0))
        except av.error.FFmpegError as exc:
            raise InputError(
                f"{path}: audio decoding failed ({exc.__class__.__name__}); truncated or corrupt?") from exc
    if not parts:
        raise InputError(f"{path}: the audio track is empty")
    wav = np.concatenate(parts).astype(np.float32)
    _audio_info(info, path, src_rate, channels, sample_rate, len(wav))
    return wav


def _audio_info(info: dict | None, path, src_rate, channels, sample_rate: int, n: int) -> None:
    if info is None:
        return
    src_rate, channels = int(src_rate or 0), int(channels or 0)
    info.update({"source": str(path), "source_sample_rate": src_rate, "source_channels": channels,
                 "sample_rate": int(sample_rate), "resampled": src_rate != int(sample_rate),
                 "downmixed": channels > 1, "n_samples": int(n)})


def check_av_sync(n_frames: int, fps: float, n_samples: int, sample_rate: int,
                  tolerance_s: float = AV_TOLERANCE_S, source=None, allow_longer_audio: bool = False) -> dict:
    """Compare audio and video lengths; the reference rule (Wav2Lip, EDTalk, syncnet_python) cuts or pads
    the audio to the video's duration. Returns what `fit_audio_to_video` will do (action none/trim/pad,
    mismatch in s and frames, target_samples, within_one_frame); refuses beyond `tolerance_s`.
    `allow_longer_audio`: the audio may run on (a segment cut from a longer recording) and is trimmed."""
    if fps <= 0 or sample_rate <= 0:
        raise InputError(f"{source or 'clip'}: invalid frame rate {fps} or sample rate {sample_rate}")
    video_s, audio_s = n_frames / fps, n_samples / sample_rate
    target = int(round(video_s * sample_rate))
    diff = audio_s - video_s
    rec = {"video_s": round(video_s, 4), "audio_s": round(audio_s, 4), "mismatch_s": round(diff, 4),
           "mismatch_frames": round(diff * fps, 2), "target_samples": target,
           "action": "none" if n_samples == target else ("trim" if n_samples > target else "pad"),
           "within_one_frame": abs(diff) <= 1.0 / fps, "tolerance_s": tolerance_s}
    if abs(diff) > tolerance_s and not (allow_longer_audio and diff > 0):
        longer, shorter = ("audio", "video") if diff > 0 else ("video", "audio")
        raise InputError(f"{source or 'clip'}: the {longer} is {abs(diff):.3f} s ({abs(diff) * fps:.1f} "
                         f"frames at {fps:g} fps) longer than the {shorter} ({audio_s:.3f} s audio, "
                         f"{video_s:.3f} s video), beyond the {tolerance_s:g} s tolerance; check that they "
                         "belong together or cut both to the same length")
    return rec


def fit_audio_to_video(wav: np.ndarray, n_frames: int, fps: float, sample_rate: int = 16000,
                       tolerance_s: float = AV_TOLERANCE_S, source=None, allow_longer_audio: bool = False
                       ) -> tuple[np.ndarray, dict]:
    """Audio cut or zero-padded (silence) to the video's duration, and `check_av_sync`'s record of it."""
    wav = np.asarray(wav, np.float32).reshape(-1)
    rec = check_av_sync(n_frames, fps, len(wav), sample_rate, tolerance_s, source, allow_longer_audio)
    target = rec["target_samples"]
    out = wav[:target] if len(wav) >= target else np.pad(wav, (0, target - len(wav)))
    return out, rec


def write_wav(path, audio: np.ndarray, sample_rate: int = 16000) -> Path:
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".wav", dir=path.parent)
    os.close(fd)
    try:
        sf.write(tmp, np.asarray(audio, np.float32), sample_rate, subtype="PCM_16")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class VideoWriter:
    """Incremental H.264 writer with an optional AAC track, atomic on close."""

    def __init__(self, path, fps: float = 25, audio: np.ndarray | None = None, sample_rate: int = 16000,
                 crf: int = DEFAULT_CRF):
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(suffix=self.path.suffix or ".mp4", dir=self.path.parent)
        os.close(fd)
        self.container = av.open(self.tmp, mode="w")
        self.fps = Fraction(fps).limit_denominator(1001)
        self.stream = None
        self.crf = crf
        self.audio = None if audio is None else np.asarray(audio, np.float32).reshape(-1)
        self.sample_rate = sample_rate
        self.audio_stream = None
        self.frames_written = 0

    def _open_streams(self, h: int, w: int) -> None:
        self.stream = self.container.add_stream("libx264", rate=self.fps)
        self.stream.width, self.stream.height = w, h
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(self.crf), "preset": "medium"}
        if self.audio is not None:
            self.audio_stream = self.container.add_stream("aac", rate=self.sample_rate)
            self.audio_stream.layout = "mono"

    def write(self, frames: np.ndarray) -> None:
        import av

        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
            raise InputError(f"video frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
        if self.stream is None:
            if frames.shape[1] % 2 or frames.shape[2] % 2:
                raise InputError(f"H.264 needs even frame sizes, got {frames.shape[2]}x{frames.shape[1]}")
            self._open_streams(frames.shape[1], frames.shape[2])
        for f in frames:
            for packet in self.stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                self.container.mux(packet)
            self.frames_written += 1

    def _write_audio(self) -> None:
        import av

        pcm = np.clip(self.audio, -1, 1)
        step = 1024
        for start in range(0, len(pcm), step):
            chunk = pcm[start:start + step]
            frame = av.AudioFrame.from_ndarray(chunk[None, :].astype(np.float32), format="flt", layout="mono")
            frame.sample_rate = self.sample_rate
            frame.pts = start
            for packet in self.audio_stream.encode(frame):
                self.container.mux(packet)
        for packet in self.audio_stream.encode(None):
            self.container.mux(packet)

    def close(self) -> Path:
        try:
            if self.stream is None:
                raise InputError(f"{self.path}: no frames were written")
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            if self.audio_stream is not None:
                self._write_audio()
            self.container.close()
            os.replace(self.tmp, self.path)
        finally:
            if os.path.exists(self.tmp):
                try:
                    self.container.close()
                except Exception:  # noqa: BLE001 - already failing; the temp file goes regardless
                    pass
                os.unlink(self.tmp)
        return self.path

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            try:
                self.container.close()
            finally:
                if os.path.exists(self.tmp):
                    os.unlink(self.tmp)


def write_video(path, frames: np.ndarray, fps: float = 25, audio: np.ndarray | None = None,
                sample_rate: int = 16000, crf: int = DEFAULT_CRF) -> Path:
    with VideoWriter(path, fps=fps, audio=audio, sample_rate=sample_rate, crf=crf) as w:
        w.write(frames)
    return Path(path)


def frames_to_tensor(frames: np.ndarray):
    """uint8 (T, H, W, 3) RGB -> float32 torch (T, 3, H, W) in [-1, 1]."""
    import torch

    from metrics.functional.image import check_finite

    check_finite(frames, "frames")  # uint8 cannot hold NaN: a float array with NaN says more than its dtype
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if not frames.flags.writeable:
        frames = frames.copy()  # torch warns on read-only buffers (e.g. memory-mapped or decoded views)
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_frames(x) -> np.ndarray:
    """float (T, 3, H, W) in [-1, 1] -> uint8 (T, H, W, 3) by the fixed map round((x + 1) * 127.5)."""
    y = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(dtype=__import__("torch").uint8)
    return y.permute(0, 2, 3, 1).cpu().numpy()
