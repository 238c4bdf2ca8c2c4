"""drive_from_audio / --pose-sampling: pose from the flow, the source or a video; expression from
the predictor or a given vector; rendering through the model's compose/decode."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from torch import nn

from edtalk.model.audio2motion import (
    Audio2Motion,
    Audio2MotionConfig,
    add_animate_arguments,
    drive_from_audio,
    render_coefficients,
    resolve_pose_sampling,
)
from metrics.errors import InputError, MissingWeightsError


class FakeEDTalk(nn.Module):
    """The EDTalk interface the animation path uses: encode, coefficients, compose, decode."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(3, 9)

    def encode(self, img):
        return self.proj(img.mean((2, 3))), [img]

    def coefficients(self, latent):
        return {"mouth": latent[:, :2], "pose": latent[:, 2:5], "expression": latent[:, 5:9]}

    def compose(self, c):
        parts = [v for v in (c.get("mouth"), c.get("pose"), c.get("expression")) if v is not None]
        e = c.get("expression")
        return torch.cat(parts, -1).sum(-1, keepdim=True), e

    def decode(self, latent, d, feats, e):
        shift = d.view(-1, 1, 1, 1) + (0 if e is None else e.sum(-1).view(-1, 1, 1, 1))
        return feats[0] + 0.01 * shift


class Stats:
    name, dim = "fake", 6

    def __call__(self, wav=None, sample_rate=16000, key=None):
        return np.full(6, float(np.abs(wav).mean()), np.float32)


def _a2m(parts=("pose", "expression"), n_pose=3):
    cfg = Audio2MotionConfig(
        n_mouth=2,
        pose={"n_pose": n_pose, "audio_dim": 160, "history": 2, "hidden": 16, "n_steps": 2, "dropout": 0.0},
        expression={
            "in_dim": 6,
            "n_exp": 4,
            "n_emotions": 8,
            "hidden": 8,
            "dropout": 0.0,
            "extractor": "fake",
        },
    )
    m = Audio2Motion(cfg, with_mouth=False).eval()
    m.trained_parts = tuple(parts)
    return m


@pytest.fixture
def inputs():
    torch.manual_seed(0)
    model = FakeEDTalk().eval()
    source = torch.rand(1, 3, 8, 8) * 2 - 1
    mel = torch.randn(12, 80, 16)
    wav = np.random.default_rng(0).normal(0, 0.1, 12 * 640).astype(np.float32)
    mouth = torch.randn(12, 2)
    return model, source, mel, wav, mouth


def test_pose_sampling_modes(inputs):
    model, source, mel, wav, mouth = inputs
    a2m = _a2m()
    kw = dict(mouth_coeffs=mouth, mel_windows=mel, expression_extractor=Stats())
    flow = drive_from_audio(model, source, wav, a2m, None, seed=1, **kw)  # default with a2m: flow
    assert flow["pose"].shape == (12, 3) and flow["mouth"].shape == (12, 2)
    assert torch.equal(flow["pose"], drive_from_audio(model, source, wav, a2m, "flow", seed=1, **kw)["pose"])
    assert not torch.equal(
        flow["pose"], drive_from_audio(model, source, wav, a2m, "flow", seed=2, **kw)["pose"]
    )
    src_pose = model.coefficients(model.encode(source)[0])["pose"][0]
    still = drive_from_audio(model, source, wav, a2m, "source", **kw)["pose"]
    assert torch.allclose(still, src_pose.expand(12, -1))
    frames = torch.rand(5, 3, 8, 8) * 2 - 1
    vid = drive_from_audio(
        model, source, wav, a2m, None, pose_frames=frames, **kw
    )  # default with --pose: video
    vpose = model.coefficients(model.encode(frames)[0])["pose"]
    assert torch.allclose(vid["pose"][:5], vpose) and torch.allclose(vid["pose"][5:], vpose[-1].expand(7, -1))
    # expression: predicted once per utterance, or the given vector
    assert flow["expression"].shape == (12, 4) and torch.equal(flow["expression"][0], flow["expression"][-1])
    given = drive_from_audio(model, source, wav, a2m, "source", expression_coeffs=torch.ones(1, 4), **kw)
    assert torch.equal(given["expression"], torch.ones(12, 4))
    out = render_coefficients(model, source, flow, batch=5, progress=False)
    assert out.shape == (12, 3, 8, 8)


def test_untrained_parts_fall_back_or_refuse(inputs):
    model, source, mel, wav, mouth = inputs
    pose_only = _a2m(parts=("pose",))
    res = drive_from_audio(model, source, wav, pose_only, "flow", mouth_coeffs=mouth, mel_windows=mel)
    assert res["expression"] is None  # keeps the source's expression
    exp_only = _a2m(parts=("expression",))
    with pytest.raises(MissingWeightsError, match="--parts pose"):
        drive_from_audio(
            model,
            source,
            wav,
            exp_only,
            "flow",
            mouth_coeffs=mouth,
            mel_windows=mel,
            expression_extractor=Stats(),
        )
    with pytest.raises(MissingWeightsError, match="audio-to-lip"):
        drive_from_audio(model, source, wav, pose_only, "flow", mel_windows=mel)
    no_a2m = drive_from_audio(model, source, wav, None, None, mouth_coeffs=mouth, mel_windows=mel)
    assert no_a2m["expression"] is None and torch.allclose(no_a2m["pose"][0], no_a2m["pose"][-1])


def test_pose_sampling_option_and_its_errors():
    parser = argparse.ArgumentParser()
    add_animate_arguments(parser)
    args = parser.parse_args(["--pose-sampling", "flow", "--audio2motion", "a.pt", "--pose-seed", "3"])
    assert (args.pose_sampling, args.audio2motion, args.pose_seed, args.pose_temperature) == (
        "flow",
        "a.pt",
        3,
        0.7,
    )
    with pytest.raises(SystemExit):
        parser.parse_args(["--pose-sampling", "dance"])
    assert resolve_pose_sampling(None, True, True) == "video"
    assert resolve_pose_sampling(None, False, True) == "flow"
    assert resolve_pose_sampling(None, False, False) == "source"
    with pytest.raises(MissingWeightsError, match="--audio2motion"):
        resolve_pose_sampling("flow", False, False)
    with pytest.raises(InputError, match="--pose VIDEO"):
        resolve_pose_sampling("video", False, True)


@pytest.mark.slow  # the real generator at smoke size costs ≈1-2 s per encode/decode on 2 CPU cores
def test_with_the_real_model_render_and_reconstruction_training(tmp_path):
    """The smoke-size EDTalk: coefficients drive it, and the mouth stage's reconstruction loss
    renders through it (frozen), loaded from a run directory's model.pt."""
    import dataclasses

    from edtalk.model import EDTalk
    from edtalk.presets import model_preset
    from edtalk.train import audio_stage as A
    from metrics.utils import atomic_torch_save

    torch.manual_seed(0)
    cfg = model_preset("smoke")
    atomic_torch_save(
        {
            "format": "edtalk-bench/model@1",
            "model_config": dataclasses.asdict(cfg),
            "model": EDTalk(cfg).state_dict(),
            "variant": "full",
        },
        tmp_path / "model.pt",
    )
    model = A.load_trained_generator(tmp_path, "cpu")
    assert model is not None and all(not p.requires_grad for p in model.parameters())
    assert A.load_trained_generator(tmp_path / "nothing", "cpu") is None
    source = torch.rand(1, 3, cfg.size, cfg.size) * 2 - 1
    a2m = _a2m(parts=("pose",), n_pose=cfg.n_pose)
    pose = model.coefficients(model.encode(source)[0])["pose"]
    a2m.pose_flow.fit_normalizer(
        pose.expand(4, -1).unsqueeze(0) + torch.randn(1, 4, 6) * 0.1, torch.randn(1, 4, 160)
    )
    coeffs = drive_from_audio(
        model,
        source,
        np.zeros(3 * 640, np.float32),
        a2m,
        "flow",
        mouth_coeffs=torch.zeros(3, cfg.n_mouth),
        mel_windows=torch.randn(3, 80, 16),
    )
    frames = render_coefficients(model, source, coeffs, batch=4, progress=False)
    assert frames.shape == (3, 3, cfg.size, cfg.size) and torch.isfinite(frames).all()
    # mouth training through the frozen generator: the reconstruction term is computed and finite
    t = 8
    rec = A.ClipRecord(
        name="c",
        identity="i",
        split="train",
        emotion=0,
        mel=torch.randn(t, 80, 16),
        mouth=torch.zeros(t, cfg.n_mouth),
        pose=pose.expand(t, -1).clone(),
        expression=torch.zeros(cfg.n_exp),
        speech=torch.zeros(4),
        gt_jaw=torch.zeros(t),
        gt_pose_deg=torch.zeros(t, 3),
        frames_ref=source.expand(t, -1, -1, -1).clone(),
    )
    stage = dataclasses.replace(
        A.audio_stage_preset("smoke"), mouth_iters=2, mouth_batch=1, mouth_window=2, train_audio_encoder=False
    )
    mouth = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(80 * 16, cfg.n_mouth))
    hist = A.train_mouth(mouth, [rec], stage, device="cpu", generator=model)
    assert all(np.isfinite(h["recon_l1"]) for h in hist)
    from metrics.errors import CheckpointMismatchError

    (tmp_path / "model.pt").write_bytes(b"broken")
    with pytest.raises(CheckpointMismatchError, match="model.pt: cannot load the trained generator"):
        A.load_trained_generator(tmp_path, "cpu")
