"""Audio → mouth: the Wav2Lip-encoder predictor trains a few steps and reduces its loss; the
checkpoint round-trips; the release's Audio2Lip key layout is kept."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from edtalk.model.audio2motion import Audio2Motion, Audio2MotionConfig, AudioToCoefficients
from edtalk.train import audio_stage as A
from metrics.errors import InputError


def _records(n=6, t=20, n_mouth=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    recs = []
    for i in range(n):
        loud = torch.rand(t, generator=g)
        mel = loud.view(t, 1, 1) * torch.linspace(2, -2, 80).view(1, 80, 1) + 0.1 * torch.randn(
            t, 80, 16, generator=g
        )
        mouth = torch.stack([loud, 0.5 * loud, 1 - loud], -1)[:, :n_mouth]
        recs.append(
            A.ClipRecord(
                name=f"c{i}",
                identity=f"id{i}",
                split="train" if i < n - 1 else "test",
                emotion=i % 8,
                mel=mel,
                mouth=mouth,
                pose=torch.zeros(t, 3),
                expression=torch.zeros(10),
                speech=torch.zeros(4),
                gt_jaw=loud,
                gt_pose_deg=torch.zeros(t, 3),
            )
        )
    return recs


def test_release_key_layout():
    m = AudioToCoefficients(20)
    keys = set(m.state_dict())
    assert "mapping.weight" in keys and "mapping.bias" in keys
    assert any(k.startswith("audio_encoder.") for k in keys)
    assert m.mapping.weight.shape == (20, 512)
    assert torch.all(m.mapping.bias == 0)
    assert m(torch.randn(3, 1, 80, 16)).shape == (3, 20)


def test_mouth_predictor_trains_and_reduces_loss():
    """The release's recipe (frozen Wav2Lip encoder, only the Linear map trains) keeps this fast."""
    torch.manual_seed(0)
    recs = _records()
    cfg = dataclasses.replace(
        A.audio_stage_preset("smoke"), mouth_iters=25, mouth_batch=4, mouth_lr=1e-2, train_audio_encoder=False
    )
    mouth = AudioToCoefficients(3)
    enc_before = {k: v.clone() for k, v in mouth.audio_encoder.state_dict().items() if "running" not in k}
    hist = A.train_mouth(mouth, recs, cfg, device="cpu", seed=0)
    first, last = A._first_last(hist)
    assert last["feature"] < 0.5 * first["feature"]
    assert {"feature", "smooth", "loss"} <= set(hist[0])
    after = mouth.audio_encoder.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in enc_before.items())


def test_mouth_target_size_mismatch_and_sync_without_generator_are_errors():
    recs = _records()
    cfg = dataclasses.replace(A.audio_stage_preset("smoke"), mouth_iters=1, mouth_batch=2)
    with pytest.raises(InputError, match="targets have 3"):
        A.train_mouth(AudioToCoefficients(20), recs, cfg, device="cpu")
    expert = torch.nn.Module()
    expert.forward_aud = lambda a: a
    expert.forward_lip = lambda v: v
    with pytest.raises(InputError, match="generator"):
        A.train_mouth(
            AudioToCoefficients(3),
            recs,
            cfg,
            device="cpu",
            sync_expert=expert,
            sync_inputs=lambda m, f: (m, f),
        )


def test_audio2motion_checkpoint_round_trip(tmp_path):
    cfg = Audio2MotionConfig(
        n_mouth=20,
        pose={"n_pose": 6, "audio_dim": 160, "history": 2, "hidden": 16, "n_steps": 2, "dropout": 0.0},
        expression={
            "in_dim": 8,
            "n_exp": 10,
            "n_emotions": 8,
            "hidden": 16,
            "dropout": 0.0,
            "extractor": "offline-stats",
        },
    )
    model = Audio2Motion(cfg).eval()
    from metrics.utils import atomic_torch_save

    atomic_torch_save(model.checkpoint(), tmp_path / "a2m.pt")
    back = Audio2Motion.load(tmp_path / "a2m.pt")
    mel = torch.randn(9, 80, 16)
    assert torch.equal(model.predict_mouth(mel), back.predict_mouth(mel))
    assert back.predict_mouth(mel).shape == (9, 20)
    raw = back.predict_mouth(mel, smooth=False)
    assert not torch.equal(raw, back.predict_mouth(mel))
    with pytest.raises(InputError, match=r"\(T, 80, 16\)"):
        back.predict_mouth(torch.randn(9, 80, 12))
