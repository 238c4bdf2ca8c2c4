"""Mel features exactly as the EDTalk release computes them (Wav2Lip's audio.py + hparams.py).

16 kHz audio -> pre-emphasis 0.97 -> |STFT| (n_fft 800, hop 200, win 800, Hann, centred) -> 80 Slaney
mel bands (55..7600 Hz) -> dB (floor -100 dB) - 20 dB reference -> symmetric normalisation to +-4.
That is 80 mel frames per second; each 25 fps video frame gets a 16-frame (0.2 s) window.
Pure numpy, so it runs anywhere (no numba JIT on first call).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.signal import lfilter

from metrics.errors import InputError

SAMPLE_RATE = 16000
N_FFT = 800
HOP = 200
WIN = 800
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS = 4.0
MEL_STEP = 16          # mel frames per video-frame window
MEL_PER_SECOND = SAMPLE_RATE / HOP


def _hz_to_mel(f):
    f = np.asarray(f, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = f / f_sp
    min_log_hz = 1000.0
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, mels)


def _mel_to_hz(m):
    m = np.asarray(m, dtype=np.float64)
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@lru_cache(maxsize=4)
def mel_basis(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN,
              fmax: float = FMAX) -> np.ndarray:
    """Slaney-style (librosa default: htk=False, norm='slaney') triangular filterbank, (n_mels, 1+n_fft/2)."""
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2: n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def stft_magnitude(y: np.ndarray) -> np.ndarray:
    """|STFT| with a periodic Hann window, frames centred by zero padding (librosa >= 0.10 default)."""
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN) / WIN)).astype(np.float32)
    y = np.pad(y, (N_FFT // 2, N_FFT // 2), mode="constant")
    n_frames = 1 + (len(y) - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n_frames)[:, None]
    frames = y[idx] * window[None, :]
    return np.abs(np.fft.rfft(frames, n=N_FFT, axis=1)).T.astype(np.float32)  # (1+n_fft/2, n_frames)


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """(80, N) normalised log-mel of a 16 kHz mono waveform in [-1, 1]."""
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise InputError(f"melspectrogram needs mono audio (1-D), got shape {wav.shape}; downmix first")
    if wav.size < WIN:
        raise InputError(f"audio too short for one STFT window: {wav.size} samples < {WIN}")
    if not np.isfinite(wav).all():
        raise InputError("audio contains NaN or inf samples")
    emphasised = lfilter([1, -PREEMPHASIS], [1], wav.astype(np.float64)).astype(np.float32)
    mel = mel_basis() @ stft_magnitude(emphasised)
    min_level = np.exp(MIN_LEVEL_DB / 20 * np.log(10))
    s = 20 * np.log10(np.maximum(min_level, mel)) - REF_LEVEL_DB
    s = (2 * MAX_ABS) * ((s - MIN_LEVEL_DB) / (-MIN_LEVEL_DB)) - MAX_ABS
    return np.clip(s, -MAX_ABS, MAX_ABS).astype(np.float32)


def crop_to_frames(wav: np.ndarray, fps: float = 25.0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Drop the samples after the last whole video frame."""
    per_frame = sample_rate / fps
    n = int(len(wav) // per_frame)
    return wav[: int(round(n * per_frame))]


def mel_windows(mel: np.ndarray, n_frames: int, fps: float = 25.0) -> np.ndarray:
    """(T, 80, 16) windows; frame i's window starts 2 video frames earlier (mel index
    int(80/fps * (i - 2))) and indices beyond either end repeat the edge column, as the release does."""
    if mel.ndim != 2 or mel.shape[0] != N_MELS:
        raise InputError(f"mel must be (80, N), got {mel.shape}")
    per_frame = MEL_PER_SECOND / fps
    starts = np.array([int(per_frame * (i - 2)) for i in range(n_frames)])
    idx = np.clip(starts[:, None] + np.arange(MEL_STEP)[None, :], 0, mel.shape[1] - 1)  # (T, 16)
    return np.ascontiguousarray(mel[:, idx].transpose(1, 0, 2)).astype(np.float32)
