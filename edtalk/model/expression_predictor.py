"""Audio → expression: an utterance-level predictor of the 10 expression-bank coefficients.

The paper's "semantics-aware expression predictor" (paper.md §1.5c) pools HuBERT-large audio
features and EmoBERTa text features over the clip and maps them with MLPs to one 10-d expression
weight vector per utterance (constant over time, like the released `predefined_exp_weights`). Neither
encoder's weights can be obtained offline here, so the speech features are pluggable:

- `OfflineSpeechStats` (built in, no weights): utterance statistics of our own log-mel spectrogram
  (`edtalk.audio_features.melspectrogram`, the Wav2Lip mel), of an autocorrelation pitch track and of
  frame energy: the prosodic cues (pitch level/range, loudness, tempo, spectral tilt) that carry
  emotion in speech.
- `PrecomputedFeatures`: per-clip arrays a user computed elsewhere (e.g. HuBERT-large, 1024-d per
  frame); they are mean+std pooled over time, which is what the paper's pooled audio vector does.

`ExpressionPredictor` is audio-only (no text branch: we have no transcripts or text encoder). It is
trained by MSE to the expression head's coefficients, optionally plus emotion cross-entropy through
a linear classifier on the *predicted coefficients*, which makes the 10-d output itself carry the
emotion (the half-released code hints at label gating, paper.md §2.4).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

from metrics.errors import InputError

__all__ = [
    "SpeechFeatureExtractor",
    "OfflineSpeechStats",
    "PrecomputedFeatures",
    "ExpressionPredictor",
    "pitch_track",
    "build_extractor",
]


class SpeechFeatureExtractor(Protocol):
    """What the predictor needs from a feature extractor: a name, a fixed size, one vector per clip."""

    name: str
    dim: int

    def __call__(
        self, wav: np.ndarray | None = None, sample_rate: int = 16000, key: str | None = None
    ) -> np.ndarray: ...


def pitch_track(
    wav: np.ndarray,
    sample_rate: int = 16000,
    fmin: float = 60.0,
    fmax: float = 500.0,
    frame: float = 0.04,
    hop: float = 0.01,
    threshold: float = 0.45,
):
    """F0 per 10 ms by normalised autocorrelation (FFT); returns (f0_hz, voiced_mask, rms).

    A frame counts as voiced when the autocorrelation peak in the [fmin, fmax] lag range exceeds
    `threshold` of the zero-lag energy and the frame is not near-silent. Simple, dependency-free and
    deterministic, which is all utterance statistics need.
    """
    wav = np.asarray(wav, dtype=np.float64).reshape(-1)
    n, h = int(round(frame * sample_rate)), int(round(hop * sample_rate))
    if wav.size < n:
        wav = np.pad(wav, (0, n - wav.size))
    n_frames = 1 + (wav.size - n) // h
    idx = np.arange(n)[None, :] + h * np.arange(n_frames)[:, None]
    frames = wav[idx] * np.hanning(n)[None, :]
    frames = frames - frames.mean(1, keepdims=True)
    spec = np.fft.rfft(frames, 2 * n, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :n]
    energy = ac[:, 0] + 1e-12
    lo, hi = int(sample_rate / fmax), min(int(sample_rate / fmin), n - 1)
    seg = ac[:, lo:hi] / energy[:, None]
    lag = lo + seg.argmax(1)
    peak = seg.max(1)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    voiced = (peak > threshold) & (rms > 0.02 * (rms.max() + 1e-12))
    return sample_rate / lag, voiced, rms


def _stats(x: np.ndarray) -> list[float]:
    if x.size == 0:
        return [0.0] * 5
    p10, p50, p90 = np.percentile(x, [10, 50, 90])
    return [float(x.mean()), float(x.std()), float(p10), float(p50), float(p90)]


class OfflineSpeechStats:
    """Utterance vector: log-mel mean/std (80+80) + Δlog-mel std (80) + pitch/energy/tempo stats (18)."""

    name = "offline-stats"
    dim = 258

    def __call__(
        self, wav: np.ndarray | None = None, sample_rate: int = 16000, key: str | None = None
    ) -> np.ndarray:
        from edtalk.audio_features import melspectrogram

        if wav is None:
            raise InputError("offline-stats features need the waveform; pass wav=")
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if sample_rate != 16000:
            raise InputError(
                f"offline-stats features expect 16 kHz audio, got {sample_rate} Hz; "
                "read it with benchmarks.media.read_audio (resamples)"
            )
        if wav.size < 1600:
            raise InputError(
                f"audio is {wav.size} samples long; need at least 0.1 s to compute speech features"
            )
        mel = np.asarray(melspectrogram(wav), dtype=np.float64)  # (80, N), Wav2Lip-normalised log-mel
        dmel = np.diff(mel, axis=1) if mel.shape[1] > 1 else np.zeros_like(mel)
        f0, voiced, rms = pitch_track(wav, sample_rate)
        logf0 = np.log(f0[voiced]) if voiced.any() else np.zeros(0)
        db = 20 * np.log10(rms + 1e-5)
        dlogf0 = np.abs(np.diff(logf0)) if logf0.size > 1 else np.zeros(0)
        # onsets per second: upward crossings of the median energy, a crude syllable-rate proxy
        above = db > np.median(db)
        rate = float(np.sum(above[1:] & ~above[:-1])) / (wav.size / sample_rate)
        pause = float(np.mean(db < db.max() - 30.0))  # share of near-silent frames (pausing)
        prosody = (
            _stats(logf0)
            + [float(voiced.mean()), float(dlogf0.mean()) if dlogf0.size else 0.0]
            + _stats(db)
            + [float(np.abs(np.diff(db)).mean()) if db.size > 1 else 0.0]
            + [rate, pause, float(np.sqrt(np.mean(wav**2)))]
        )
        # 7 pitch + 6 energy + 3 tempo/level = 16, then the voiced-frame energy mean/std (loudness
        # while speaking, robust to pauses) = 18. The clip's duration is deliberately not a feature:
        # it says more about how a data set was cut than about the speaker's emotion.
        vdb = db[voiced] if voiced.any() else np.zeros(1)
        prosody += [float(vdb.mean()), float(vdb.std())]
        out = np.concatenate([mel.mean(1), mel.std(1), dmel.std(1), np.asarray(prosody)]).astype(np.float32)
        assert out.shape == (self.dim,)
        return out


class PrecomputedFeatures:
    """Features a user computed elsewhere (e.g. HuBERT), one file per clip: `<root>/<key>.npy|.pt`.

    A (T, D) array is pooled to [mean, std] (2·D); a (D,) array is used as is (then dim = D).
    """

    name = "precomputed"

    def __init__(self, root: str | os.PathLike, dim: int, pooled: bool = False):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(
                f"precomputed features: {self.root} is not a directory; point it at the folder "
                "that holds one <clip>.npy (T,D) per clip"
            )
        self.in_dim = int(dim)
        self.pooled = pooled
        self.dim = self.in_dim if pooled else 2 * self.in_dim

    def _load(self, key: str) -> np.ndarray:
        for ext in (".npy", ".pt"):
            path = self.root / f"{key}{ext}"
            if path.exists():
                try:
                    if ext == ".npy":
                        return np.load(path, allow_pickle=False)
                    return torch.load(path, map_location="cpu", weights_only=True).numpy()
                except Exception as exc:
                    raise InputError(
                        f"precomputed features: cannot read {path} ({exc.__class__.__name__}); "
                        "re-export it as a float .npy array"
                    ) from None
        raise InputError(
            f"precomputed features: no {key}.npy or {key}.pt in {self.root}; "
            "compute features for every clip first"
        )

    def __call__(
        self, wav: np.ndarray | None = None, sample_rate: int = 16000, key: str | None = None
    ) -> np.ndarray:
        if key is None:
            raise InputError("precomputed features are looked up by clip name; pass key=")
        arr = np.asarray(self._load(key), dtype=np.float32)
        if self.pooled:
            arr = arr.reshape(-1)
            if arr.shape != (self.in_dim,):
                raise InputError(
                    f"precomputed features: {self.root}/{key}: expected a ({self.in_dim},) vector, "
                    f"got {arr.shape}"
                )
            return arr
        if arr.ndim == 3 and arr.shape[0] == 1:  # (1,T,D) as HuBERT exports usually are
            arr = arr[0]
        if arr.ndim != 2 or arr.shape[1] != self.in_dim or arr.shape[0] < 1:
            raise InputError(
                f"precomputed features: {self.root}/{key}: expected (T, {self.in_dim}), got {arr.shape}"
            )
        return np.concatenate([arr.mean(0), arr.std(0)]).astype(np.float32)


def build_extractor(
    kind: str = "offline-stats", root: str | None = None, dim: int | None = None, pooled: bool = False
) -> SpeechFeatureExtractor:
    """Extractor by name: "offline-stats" (built in) or "precomputed" (needs root and dim)."""
    if kind == "offline-stats":
        return OfflineSpeechStats()
    if kind == "precomputed":
        if root is None or dim is None:
            raise InputError("--exp-features precomputed needs --exp-features-dir and --exp-features-dim")
        return PrecomputedFeatures(root, dim, pooled)
    raise InputError(f"unknown expression feature extractor {kind!r}; use 'offline-stats' or 'precomputed'")


class ExpressionPredictor(nn.Module):
    """Utterance features (B, D) → expression coefficients (B, n_exp), plus emotion logits from them."""

    def __init__(
        self,
        in_dim: int,
        n_exp: int = 10,
        n_emotions: int = 8,
        hidden: int = 256,
        dropout: float = 0.2,
        extractor: str = "offline-stats",
    ):
        super().__init__()
        self.in_dim, self.n_exp, self.n_emotions, self.extractor = in_dim, n_exp, n_emotions, extractor
        # Linear→ReLU→norm→Linear→ReLU→Linear, the paper's branch shape; LayerNorm instead of BN so
        # it behaves the same at batch size 1 (one clip at inference).
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.ReLU(),
            nn.LayerNorm(hidden),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_exp),
        )
        self.classifier = nn.Linear(n_exp, n_emotions)
        self.register_buffer("feat_mean", torch.zeros(in_dim))
        self.register_buffer("feat_std", torch.ones(in_dim))
        self.register_buffer("coef_mean", torch.zeros(n_exp))
        self.register_buffer("coef_std", torch.ones(n_exp))

    def config(self) -> dict:
        return {
            "in_dim": self.in_dim,
            "n_exp": self.n_exp,
            "n_emotions": self.n_emotions,
            "hidden": self.net[0].out_features,
            "dropout": self.net[3].p,
            "extractor": self.extractor,
        }

    @torch.no_grad()
    def fit_normalizer(self, feats: torch.Tensor, coeffs: torch.Tensor | None = None) -> None:
        self.feat_mean.copy_(feats.mean(0))
        self.feat_std.copy_(feats.std(0, unbiased=False).clamp_min(1e-4))
        if coeffs is not None:
            self.coef_mean.copy_(coeffs.mean(0))
            self.coef_std.copy_(coeffs.std(0, unbiased=False).clamp_min(1e-4))

    def _check(self, feats: torch.Tensor) -> None:
        if feats.dim() != 2 or feats.shape[1] != self.in_dim:
            raise InputError(
                f"expression predictor: expected features (B, {self.in_dim}) from the "
                f"'{self.extractor}' extractor, got {tuple(feats.shape)}"
            )

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """Expression coefficients in the expression head's units (B, n_exp)."""
        self._check(feats)
        out = self.net((feats - self.feat_mean) / self.feat_std)
        return out * self.coef_std + self.coef_mean

    def emotion_logits(self, coeffs: torch.Tensor) -> torch.Tensor:
        return self.classifier((coeffs - self.coef_mean) / self.coef_std)

    def loss(
        self,
        feats: torch.Tensor,
        target: torch.Tensor | None = None,
        emotion: torch.Tensor | None = None,
        cls_weight: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """MSE to target coefficients (normalised units) + cls_weight · CE(emotion); either may be absent."""
        if target is None and emotion is None:
            raise ValueError("need a coefficient target, an emotion label, or both")
        pred = self(feats)
        total = pred.new_zeros(())
        logs: dict[str, float] = {}
        if target is not None:
            mse = ((pred - target) / self.coef_std).pow(2).mean()
            total = total + mse
            logs["exp_mse"] = float(mse.detach())
        if emotion is not None and cls_weight > 0:
            ce = nn.functional.cross_entropy(self.emotion_logits(pred), emotion)
            total = total + cls_weight * ce
            logs["exp_ce"] = float(ce.detach())
        return total, logs


def extract_batch(
    extractor: SpeechFeatureExtractor,
    wavs: Sequence[np.ndarray | None],
    keys: Sequence[str | None] | None = None,
    sample_rate: int = 16000,
) -> torch.Tensor:
    """Features for several clips → (B, D) float tensor."""
    keys = keys or [None] * len(wavs)
    return torch.from_numpy(np.stack([extractor(w, sample_rate, k) for w, k in zip(wavs, keys, strict=True)]))
