"""Test helpers for the trainer: a tiny drawn-face world with exact landmarks, and a tiny model that
follows the EDTalk contract (encode / coefficients / compose / decode, QR banks, EEM switch) so the
engine's mechanics (resume, NaN, DDP) are tested in seconds, independent of the full model's size."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import torch
from torch import nn

from edtalk.train.data import FramePool, PoolClip


def face_landmarks(size: int, yaw: float, jaw: float) -> np.ndarray:
    """68 points: jaw line 0–16, brows 17–26, nose 27–35, eyes 36–47, mouth 48–67 (outer/inner)."""
    c = size / 2 + yaw * size * 0.08
    lm = np.zeros((68, 2), np.float32)
    t = np.linspace(-1, 1, 17)
    lm[0:17] = np.stack([c + t * size * 0.3, size * 0.5 + np.sqrt(1 - t ** 2) * size * 0.3], 1)
    lm[17:27] = np.stack([c + np.linspace(-0.25, 0.25, 10) * size, np.full(10, size * 0.3)], 1)
    lm[27:36] = np.stack([np.full(9, c), np.linspace(0.35, 0.55, 9) * size], 1)
    for k, ex in ((36, -0.12), (42, 0.12)):
        a = np.linspace(0, 2 * np.pi, 6, endpoint=False)
        lm[k:k + 6] = np.stack([c + ex * size + np.cos(a) * size * 0.04, size * 0.4 + np.sin(a) * size * 0.02], 1)
    open_px = 1 + jaw * size * 0.08
    a = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    lm[48:60] = np.stack([c + np.cos(a) * size * 0.1, size * 0.68 + np.sin(a) * (open_px + size * 0.02)], 1)
    a = np.linspace(0, 2 * np.pi, 8, endpoint=False)
    lm[60:68] = np.stack([c + np.cos(a) * size * 0.07, size * 0.68 + np.sin(a) * open_px], 1)
    return lm


def draw_face(size: int, identity: int, yaw: float, jaw: float) -> tuple[np.ndarray, np.ndarray]:
    rs = np.random.default_rng(identity)
    skin = rs.integers(120, 230, 3).tolist()
    bg = rs.integers(0, 90, 3).tolist()
    img = np.full((size, size, 3), bg, np.uint8)
    lm = face_landmarks(size, yaw, jaw)
    cx = int(lm[27, 0])
    cv2.ellipse(img, (cx, size // 2), (int(size * 0.32), int(size * 0.4)), 0, 0, 360, skin, -1)
    for k in (36, 42):
        cv2.circle(img, tuple(int(v) for v in lm[k:k + 6].mean(0)), max(1, size // 24), (30, 30, 30), -1)
    cv2.fillPoly(img, [lm[48:60].astype(np.int32)], (150, 40, 50))
    cv2.fillPoly(img, [lm[60:68].astype(np.int32)], (20, 10, 10))
    return img, lm


def tiny_pool(size: int = 32, identities: int = 3, clips: int = 2, frames: int = 6, seed: int = 0,
              split: str = "train", first_identity: int = 0) -> FramePool:
    out = []
    rng = np.random.default_rng(seed)
    for i in range(first_identity, first_identity + identities):
        for j in range(clips):
            yaw = rng.uniform(-1, 1, frames)
            jaw = rng.uniform(0, 1, frames)
            imgs, lms = zip(*(draw_face(size, i, y, m) for y, m in zip(yaw, jaw, strict=True)), strict=True)
            out.append(PoolClip(f"id{i}_{j}", f"id{i}", "neutral" if j == 0 else "happy", split,
                                np.stack(imgs), np.stack(lms),
                                {"mouth": np.stack([jaw, jaw * 0, jaw * 0], 1),
                                 "pose": np.stack([yaw * 30, yaw * 0, yaw * 0], 1)}))
    return FramePool(out)


@dataclasses.dataclass
class FakeConfig:
    size: int = 32
    latent_dim: int = 16
    n_mouth: int = 4
    n_pose: int = 2
    n_exp: int = 3
    orthogonal: bool = True
    eem: bool = True


class FakeEDTalk(nn.Module):
    """The EDTalk interface at toy scale (conv encoder, QR banks, additive 'EEM', conv decoder)."""

    def __init__(self, cfg: FakeConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.latent_dim
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 8, 4, 2, 1),
                                     nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(8 * (cfg.size // 4) ** 2, d))
        self.trunk = nn.Linear(d, d)
        self.mouth_head = nn.Linear(d, cfg.n_mouth)
        self.pose_head = nn.Linear(d, cfg.n_pose)
        self.expression_head = nn.Linear(d, cfg.n_exp)
        self.mouth_bank = nn.Parameter(torch.randn(d, cfg.n_mouth))
        self.pose_bank = nn.Parameter(torch.randn(d, cfg.n_pose))
        self.expression_bank = nn.Parameter(torch.randn(d, cfg.n_exp))
        self.eem = nn.Linear(d, 8) if cfg.eem else None
        self.decoder = nn.Sequential(nn.Linear(d, 8 * (cfg.size // 4) ** 2),
                                     nn.Unflatten(1, (8, cfg.size // 4, cfg.size // 4)),
                                     nn.Upsample(scale_factor=2), nn.Conv2d(8, 8, 3, 1, 1), nn.LeakyReLU(0.2),
                                     nn.Upsample(scale_factor=2), nn.Conv2d(8, 3, 3, 1, 1))
        self.skip = nn.Conv2d(3, 3, 1)

    def encode(self, img):
        return self.encoder(img), img

    def coefficients(self, latent):
        h = self.trunk(latent)
        return {"mouth": self.mouth_head(h), "pose": self.pose_head(h), "expression": self.expression_head(h)}

    def bases(self):
        w = torch.cat([self.mouth_bank, self.pose_bank, self.expression_bank], 1)
        return torch.linalg.qr(w + 1e-8)[0] if self.cfg.orthogonal else w

    def compose(self, coeffs):
        q = self.bases()
        nm, npo = self.cfg.n_mouth, self.cfg.n_pose
        parts = {"mouth": q[:, :nm], "pose": q[:, nm:nm + npo], "expression": q[:, nm + npo:]}
        d, e = 0, None
        for k, basis in parts.items():
            c = coeffs.get(k)
            if c is None:
                continue
            v = c @ basis.T
            d = d + v
            if k == "expression":
                e = v
        return d, e

    def decode(self, latent_src, d, feats, e=None):
        x = self.decoder(latent_src + d) + self.skip(feats)
        if e is not None and self.eem is not None:
            x = x + self.eem(e).mean(1).view(-1, 1, 1, 1)
        return torch.tanh(x)


class FakeDisc(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Flatten(),
                                 nn.Linear(8 * (size // 2) ** 2, 1))

    def forward(self, x):
        return self.net(x)


def fake_build(train_cfg, size):
    fields = {f.name for f in dataclasses.fields(FakeConfig)}
    cfg = FakeConfig(size=size, **{k: v for k, v in dataclasses.asdict(train_cfg.model).items()
                                   if k in fields and k != "size"})
    return FakeEDTalk(cfg), FakeDisc(size), cfg
