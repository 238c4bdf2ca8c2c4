"""Video and audio I/O on PyAV (its wheels carry FFmpeg): probe, stream, read, and write H.264 + AAC.

Readers raise `InputError` with the file name and what to do when a file is missing, unreadable,
empty or lacks a stream that is needed. Writers go through a temporary file renamed into place, so
an interrupted write never leaves a truncated video behind.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from metrics.errors import InputError

DEFAULT_CRF = 12  # visually lossless; keeps decoded frames close to what was rendered


@dataclass
class VideoClip:
    frames: np.ndarray  # uint8 (T, H, W, 3) RGB
    fps: float


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


def probe_video(path) -> dict:
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
        return {"fps": fps, "n_frames": int(n), "width": v.codec_context.width, "height": v.codec_context.height,
                "has_audio": bool(c.streams.audio), "pix_fmt": v.codec_context.pix_fmt}


def iter_video(path, chunk: int = 64, size: int | None = None) -> Iterator[np.ndarray]:
    """Decoded RGB frames in chunks of at most `chunk`, optionally resized to size x size."""
    import av

    buf: list[np.ndarray] = []
    count = 0
    with _open(path) as c:
        if not c.streams.video:
            raise InputError(f"{path}: has no video stream")
        try:
            for frame in c.decode(video=0):
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
    fps = probe_video(path)["fps"]
    return VideoClip(np.concatenate(list(iter_video(path, chunk=256, size=size))), fps)


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


def read_audio(path, sample_rate: int = 16000) -> np.ndarray:
    """Mono float32 in [-1, 1] at `sample_rate` (resampled and downmixed as needed)."""
    import av

    path = Path(path)
    if path.suffix.lower() == ".wav":
        try:
            import soundfile as sf

            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
            mono = data.mean(axis=1)
            if sr == sample_rate:
                return mono.astype(np.float32)
        except (RuntimeError, OSError):
            pass  # fall through to FFmpeg, which reads more variants
    with _open(path) as c:
        if not c.streams.audio:
            raise InputError(f"{path}: has no audio track; give a file with speech audio")
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        parts = []
        try:
            for frame in c.decode(audio=0):
                for out in resampler.resample(frame):
                    parts.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                parts.append(out.to_ndarray().reshape(-1))
        except av.error.FFmpegError as exc:
            raise InputError(f"{path}: audio decoding failed ({exc.__class__.__name__}); truncated or corrupt?") from exc
    if not parts:
        raise InputError(f"{path}: the audio track is empty")
    return np.concatenate(parts).astype(np.float32)


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
