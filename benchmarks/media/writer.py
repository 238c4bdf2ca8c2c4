"""Writing H.264 + AAC video through a temporary file renamed into place."""
from __future__ import annotations

import functools
import os
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from metrics.errors import InputError

DEFAULT_CRF = 12  # visually lossless; keeps decoded frames close to what was rendered


@functools.lru_cache(maxsize=1)
def x264_asm_without_avx512() -> str | None:
    """x264's own CPU detection minus AVX-512, as a value of x264's `asm` option; None without AVX-512.

    Why: x264's AVX-512 `mbtree_propagate_list` (lookahead, macroblock tree) always handles 8 macroblocks at a
    time, so on a frame whose width is not a multiple of 128 px it also propagates phantom macroblocks read past
    the end of each row; on the last row those bytes lie past x264's arrays and hold whatever the heap held before.
    The same encode then gives different quantisers, and decoded pixels, from one process to the next. The SSSE3 to
    AVX2 versions stop at the row's end (and agree with each other bit for bit), so every other capability is kept.
    """
    import av
    import av.logging

    level = av.logging.get_level()
    av.logging.set_level(av.logging.INFO)  # x264 names what it detected only at INFO level
    try:
        with av.logging.Capture() as logs:
            probe = av.CodecContext.create("libx264", "w")
            probe.width, probe.height, probe.pix_fmt = 16, 16, "yuv420p"
            probe.time_base = Fraction(1, 25)
            probe.open()
            del probe
    finally:
        av.logging.set_level(level)
    prefix = "using cpu capabilities:"
    detected = next((m.split(":", 1)[1].split() for _, _, m in logs if m.startswith(prefix)), [])
    if "AVX512" not in detected:
        return None
    return ",".join(name for name in detected if name != "AVX512")


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
        options = {"crf": str(self.crf), "preset": "medium"}
        asm = x264_asm_without_avx512()
        if asm is not None:
            options["x264-params"] = f"asm={asm}"
        self.stream.options = options
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
