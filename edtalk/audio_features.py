"""Mel features exactly as the EDTalk release computes them (Wav2Lip's audio.py + hparams.py).

16 kHz audio -> pre-emphasis 0.97 -> |STFT| (n_fft 800, hop 200, win 800, Hann, centred) -> 80 Slaney
mel bands (55..7600 Hz) -> dB (floor -100 dB) - 20 dB reference -> symmetric normalisation to +-4.
That is 80 mel frames per second; each 25 fps video frame gets a 16-frame (0.2 s) window.
The STFT and the filterbank are librosa's, as in the release: equal to its output (max abs error 0.0 on
tests/fixtures/parity/mel_fixture.npz). librosa's first STFT in a process costs a few seconds (numba);
after that it is faster than the numpy version this replaced (0.17 vs 0.24 s per minute of audio).
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


@lru_cache(maxsize=4)
def mel_basis(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN,
              fmax: float = FMAX) -> np.ndarray:
    """The release's filterbank, `librosa.filters.mel` (Slaney: htk=False, norm='slaney'), (n_mels, 1+n_fft/2)."""
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)


def stft_magnitude(y: np.ndarray) -> np.ndarray:
    """|STFT| as the release's `audio._stft`: `librosa.stft` (Hann window, centred, zero padding)."""
    import librosa

    return np.abs(librosa.stft(y=y, n_fft=N_FFT, hop_length=HOP, win_length=WIN))


def melspectrogram(wav: np.ndarray) -> np.ndarray:
    """(80, N) float32 normalised log-mel of a 16 kHz mono waveform in [-1, 1] (the release's
    `audio.melspectrogram`, computed in float64 as it is, then stored as float32)."""
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise InputError(f"melspectrogram needs mono audio (1-D), got shape {wav.shape}; downmix first")
    if wav.size < WIN:
        raise InputError(f"audio too short for one STFT window: {wav.size} samples < {WIN}")
    if not np.isfinite(wav).all():
        raise InputError("audio contains NaN or inf samples")
    emphasised = lfilter([1, -PREEMPHASIS], [1], wav)  # float64, as the release's audio.preemphasis
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
