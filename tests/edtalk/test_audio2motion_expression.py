"""ExpressionPredictor and its speech feature extractors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edtalk.model.expression_predictor import (
    ExpressionPredictor,
    OfflineSpeechStats,
    PrecomputedFeatures,
    build_extractor,
    extract_batch,
    pitch_track,
)
from metrics.errors import InputError


def _tone(f0: float, seconds: float = 1.0, sr: int = 16000, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    # a few harmonics, like a voiced vowel
    return (amp * sum(np.sin(2 * np.pi * k * f0 * t) / k for k in (1, 2, 3))).astype(np.float32)


def test_pitch_track_finds_f0_and_silence():
    for f0 in (110.0, 220.0, 330.0):
        est, voiced, _ = pitch_track(_tone(f0))
        assert voiced.mean() > 0.9
        assert abs(np.median(est[voiced]) - f0) / f0 < 0.03
    _, voiced, _ = pitch_track(np.random.default_rng(0).normal(0, 0.3, 16000).astype(np.float32))
    assert voiced.mean() < 0.2  # white noise is unvoiced


def test_offline_stats_separate_high_and_low_pitched_loud_and_soft_speech():
    pytest.importorskip("edtalk.audio_features")
    ext = OfflineSpeechStats()
    low, high = ext(_tone(110.0, amp=0.1)), ext(_tone(300.0, amp=0.6))
    assert low.shape == high.shape == (ext.dim,)
    assert np.isfinite(low).all()
    pitch_mean = 240  # first prosody entry: mean log-f0
    assert high[pitch_mean] - low[pitch_mean] == pytest.approx(np.log(300 / 110), abs=0.1)
    assert high[pitch_mean + 7] > low[pitch_mean + 7]  # energy mean (dB)
    with pytest.raises(InputError, match="16 kHz"):
        ext(_tone(110.0), sample_rate=22050)
    with pytest.raises(InputError, match="0.1 s"):
        ext(np.zeros(100, np.float32))


def test_predictor_trains_and_reduces_loss_and_classifies():
    torch.manual_seed(0)
    n, d, k = 160, 24, 10
    emotion = torch.arange(n) % 8
    centres = torch.randn(8, k) * 2
    target = centres[emotion] + 0.1 * torch.randn(n, k)
    feats = target @ torch.randn(k, d) + 0.3 * torch.randn(n, d)  # speech features carry the emotion
    model = ExpressionPredictor(d, n_exp=k, n_emotions=8, hidden=64, dropout=0.0)
    model.fit_normalizer(feats, target)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    start = model.loss(feats, target, emotion)[0].item()
    for _ in range(150):
        loss, logs = model.loss(feats, target, emotion)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    end, logs = model.loss(feats, target, emotion)
    assert end.item() < 0.3 * start
    assert set(logs) == {"exp_mse", "exp_ce"}
    acc = (model.emotion_logits(model(feats)).argmax(1) == emotion).float().mean()
    assert acc > 0.9
    assert model(feats[:1]).shape == (1, k)  # batch of one works (LayerNorm, not BatchNorm)
    with pytest.raises(InputError, match=f"\\(B, {d}\\)"):
        model(torch.zeros(2, d + 1))
    with pytest.raises(ValueError):
        model.loss(feats)


def test_precomputed_features_pool_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    hubert = rng.normal(size=(37, 16)).astype(np.float32)
    np.save(tmp_path / "clip_a.npy", hubert)
    np.save(tmp_path / "clip_b.npy", hubert[None])  # (1,T,D) export layout
    torch.save(torch.from_numpy(hubert[0]), tmp_path / "clip_c.pt")
    (tmp_path / "clip_bad.npy").write_bytes(b"not an array")
    ext = build_extractor("precomputed", str(tmp_path), 16)
    a = ext(key="clip_a")
    assert a.shape == (32,) and np.allclose(a[:16], hubert.mean(0), atol=1e-6)
    assert np.allclose(ext(key="clip_b"), a)
    feats = extract_batch(ext, [None, None], ["clip_a", "clip_b"])
    assert feats.shape == (2, 32)
    pooled = PrecomputedFeatures(tmp_path, 16, pooled=True)
    assert pooled.dim == 16 and np.allclose(pooled(key="clip_c"), hubert[0])
    with pytest.raises(InputError, match="clip_missing"):
        ext(key="clip_missing")
    with pytest.raises(InputError, match="cannot read"):
        ext(key="clip_bad")
    with pytest.raises(InputError, match=r"expected \(T, 8\)"):
        build_extractor("precomputed", str(tmp_path), 8)(key="clip_a")
    with pytest.raises(InputError, match="pass key="):
        ext(np.zeros(16000, np.float32))
    with pytest.raises(InputError, match="not a directory"):
        PrecomputedFeatures(tmp_path / "nope", 16)
    with pytest.raises(InputError, match="needs --exp-features-dir"):
        build_extractor("precomputed")
    with pytest.raises(InputError, match="unknown expression feature extractor"):
        build_extractor("hubert")
