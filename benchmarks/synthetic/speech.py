"""A source-filter (formant) speech synthesiser whose phoneme timeline also gives the mouth's ground truth.

Syllables of random consonants (p/b/m closures, s/f fricatives) and vowels (formant targets), with
pauses. The glottal source is a pulse train at the speaker's pitch, shaped by emotion (level, range),
filtered by three formant resonators; fricatives are band-shaped noise; closures are silent. The
mouth targets per phoneme (jaw_open, lip_width, closure) are smoothed over time (coarticulation), so
audio energy and mouth opening are causally linked, as SyncNet needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

SAMPLE_RATE = 16000
FPS = 25
# phoneme: (kind, formants F1..F3 Hz, mouth target jaw_open, lip_width, closure)
PHONEMES = {
    "sil": ("pause", (0, 0, 0), (0.05, 0.0, 0.0)),
    "a": ("vowel", (750, 1200, 2600), (0.95, 0.1, 0.0)),
    "e": ("vowel", (500, 1900, 2600), (0.55, 0.6, 0.0)),
    "i": ("vowel", (300, 2300, 3000), (0.25, 0.9, 0.0)),
    "o": ("vowel", (500, 850, 2500), (0.6, -0.7, 0.0)),
    "u": ("vowel", (320, 800, 2300), (0.3, -1.0, 0.0)),
    "p": ("closure", (0, 0, 0), (0.0, 0.0, 1.0)),
    "b": ("closure", (0, 0, 0), (0.0, 0.0, 1.0)),
    "m": ("nasal", (250, 1100, 2300), (0.0, 0.0, 1.0)),
    "s": ("fricative", (5000, 0, 0), (0.15, 0.5, 0.0)),
    "f": ("fricative", (3500, 0, 0), (0.12, 0.1, 0.3)),
}
PHONEME_IDS = {k: i for i, k in enumerate(PHONEMES)}
VOWELS = ("a", "e", "i", "o", "u")
CONSONANTS = ("p", "b", "m", "s", "f")


@dataclass(frozen=True)
class Prosody:
    pitch_scale: float = 1.0
    pitch_range: float = 1.0
    loudness: float = 1.0
    tempo: float = 1.0


def phoneme_timeline(rng: np.random.Generator, seconds: float, tempo: float) -> list[tuple[str, float]]:
    """[(phoneme, duration_s)] covering `seconds`: syllables C V (C) with pauses between phrases."""
    out, t = [], 0.0
    while t < seconds:
        if out and rng.random() < 0.12:
            seq = [("sil", rng.uniform(0.12, 0.3))]
        else:
            seq = []
            if rng.random() < 0.8:
                seq.append((str(rng.choice(CONSONANTS)), rng.uniform(0.05, 0.09)))
            seq.append((str(rng.choice(VOWELS)), rng.uniform(0.1, 0.22)))
        for ph, d in seq:
            d /= tempo
            out.append((ph, d))
            t += d
    return out


def _resonator(x: np.ndarray, f: float, bw: float) -> np.ndarray:
    r = np.exp(-np.pi * bw / SAMPLE_RATE)
    th = 2 * np.pi * f / SAMPLE_RATE
    return lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], x)


def synthesize(timeline, base_pitch: float, prosody: Prosody, rng: np.random.Generator, n_frames: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(audio float32 at 16 kHz for n_frames/25 s, mouth (T,3), phoneme id per frame (T,))."""
    n = int(round(n_frames * SAMPLE_RATE / FPS))
    audio = np.zeros(n)
    ph_samples = np.zeros(n, dtype=np.int64)
    t0 = 0
    t = np.arange(n) / SAMPLE_RATE
    f0 = base_pitch * prosody.pitch_scale * (1 + 0.08 * prosody.pitch_range * np.sin(2 * np.pi * 0.7 * t)
                                             + 0.04 * prosody.pitch_range * np.sin(2 * np.pi * 2.3 * t + 1))
    phase = np.cumsum(f0 / SAMPLE_RATE)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # one impulse per glottal period
    glottal = lfilter([1.0], [1, -0.95], pulses)  # spectral tilt
    for ph, dur in timeline:
        t1 = min(n, t0 + int(dur * SAMPLE_RATE))
        if t1 <= t0:
            break
        kind, formants, _ = PHONEMES[ph]
        seg = slice(t0, t1)
        m = t1 - t0
        ramp = np.minimum(1, np.minimum(np.arange(m), np.arange(m)[::-1]) / max(1, int(0.01 * SAMPLE_RATE)))
        # Each kind is set to a fixed loudness (RMS): vowels loudest, nasals quieter, fricatives
        # quieter still, closures and pauses silent, so energy follows how open the mouth is.
        if kind in ("vowel", "nasal"):
            src = glottal[seg]
            y = sum(_resonator(src, f, bw) * g
                    for f, bw, g in zip(formants, (80, 100, 140), (1.0, 0.6, 0.3), strict=True))
            rms = 1.0 if kind == "vowel" else 0.25
            audio[seg] = y / (np.sqrt((y ** 2).mean()) + 1e-9) * rms * ramp
        elif kind == "fricative":
            y = _resonator(rng.normal(size=m), formants[0], 1500)
            audio[seg] = y / (np.sqrt((y ** 2).mean()) + 1e-9) * 0.12 * ramp
        ph_samples[seg] = PHONEME_IDS[ph]
        t0 = t1
    audio *= prosody.loudness
    peak = np.abs(audio).max()
    if peak > 0:
        audio = audio / peak * 0.6 * min(prosody.loudness, 1.4) / 1.4
    # mouth ground truth per video frame, coarticulated by a Gaussian over ~60 ms
    frame_ph = ph_samples[(np.arange(n_frames) * SAMPLE_RATE // FPS + SAMPLE_RATE // (2 * FPS)).clip(0, n - 1)]
    fine_t = np.arange(0, n, 80)  # 5 ms steps
    targets = np.array([PHONEMES[list(PHONEMES)[p]][2] for p in ph_samples[fine_t]])
    k = np.exp(-0.5 * (np.arange(-12, 13) / 6.0) ** 2)
    k /= k.sum()
    smooth = np.stack([np.convolve(np.pad(targets[:, j], 12, mode="edge"), k, mode="valid") for j in range(3)], 1)
    idx = (np.arange(n_frames) * SAMPLE_RATE / FPS / 80 + 4).astype(int).clip(0, len(smooth) - 1)
    return audio.astype(np.float32), smooth[idx].astype(np.float32), frame_ph
