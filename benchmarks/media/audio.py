"""Reading audio (mono float32 at a sample rate, resampling and downmixing recorded) and writing WAV."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.media.video import _open
from metrics.errors import InputError


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
