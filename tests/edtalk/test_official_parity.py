"""Our model on the release's checkpoints reproduces the official outputs (parity_seed1.npz)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from edtalk import official
from edtalk.animate import animate, animate_per_frame

TOL = 1e-4


def build(parity_dir, seed, out):
    subprocess.run([sys.executable, str(parity_dir / "build_checkpoints.py"), str(seed), str(out)], check=True,
                   capture_output=True)
    return out


@pytest.fixture(scope="module")
def seed1(parity_dir, tmp_path_factory):
    ck = build(parity_dir, 1, tmp_path_factory.mktemp("ck1"))
    data = dict(np.load(parity_dir / "parity_seed1.npz"))
    return ck, {k: torch.from_numpy(v) for k, v in data.items()}


@pytest.fixture(scope="module")
def generator(seed1):
    return official.load_generator(seed1[0] / "EDTalk.pt")


def maxdiff(a, b):
    return (a - b).abs().max().item()


def test_bases_and_heads(generator, seed1):
    _, d = seed1
    with torch.no_grad():
        q = generator.bases_matrix()
        c = generator.coefficients(generator.encode(d["mouth"])[0])
    assert maxdiff(q, d["bases_Q"]) <= TOL
    assert maxdiff(c["mouth"], d["alpha_lip"]) <= TOL
    assert maxdiff(c["pose"], d["alpha_pose"]) <= TOL
    assert maxdiff(c["expression"], d["alpha_exp"]) <= TOL


def test_video_driven_batched_and_per_frame(generator, seed1):
    _, d = seed1
    kw = dict(mouth=d["mouth"], pose=d["pose"], expression=d["expression"])
    assert maxdiff(animate(generator, d["source"], **kw), d["video_driven"]) <= TOL
    assert maxdiff(animate_per_frame(generator, d["source"], **kw), d["video_driven"]) <= TOL


def test_audio_driven(generator, seed1):
    ck, d = seed1
    a2l = official.load_audio2lip(ck / "Audio2Lip.pt")
    with torch.no_grad():
        coeffs = a2l(d["mel"])
    assert maxdiff(coeffs, d["audio2lip"]) <= TOL
    out = animate(generator, d["source"], mouth_coeffs=coeffs, pose=d["pose"], expression=d["expression"])
    assert maxdiff(out, d["audio_driven"]) <= TOL


def test_lip_pose_reconstruct(seed1):
    ck, d = seed1
    lp = official.load_lip_pose_generator(ck / "EDTalk_lip_pose.pt")
    out = animate(lp, d["source"], mouth=d["mouth"], pose=d["mouth"])
    assert maxdiff(out, d["lip_pose_reconstruct"]) <= TOL


def test_other_seed_batched_equals_release_procedure(parity_dir, tmp_path_factory):
    """Seed 2: batched fast path == the release's per-frame procedure; QR invariants hold."""
    ck = build(parity_dir, 2, tmp_path_factory.mktemp("ck2"))
    g = official.load_generator(ck / "EDTalk.pt")
    gen = torch.Generator().manual_seed(0)
    src = torch.rand(1, 3, 256, 256, generator=gen) * 2 - 1
    drv = torch.rand(2, 3, 256, 256, generator=gen) * 2 - 1
    fast = animate(g, src, mouth=drv, pose=drv.flip(0), expression=drv, batch_size=2)
    slow = animate_per_frame(g, src, mouth=drv, pose=drv.flip(0), expression=drv)
    assert maxdiff(fast, slow) <= TOL
    with torch.no_grad():
        q = g.bases_matrix()
        assert maxdiff(q.T @ q, torch.eye(36)) < 1e-5
        lp = torch.linalg.qr(g.direction_lipnonlip.weight + 1e-8)[0]
        assert maxdiff(q[:, :26], lp) < 1e-5  # prefix property: the expression bank leaves lip/pose alone
