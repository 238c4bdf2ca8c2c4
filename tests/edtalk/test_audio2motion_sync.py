"""SyncLoss: with a SyncNet expert trained here in a few seconds, shifting the audio lowers agreement."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edtalk.model.audio2motion import SyncLoss, smooth_coefficients
from metrics.errors import InputError

W = 5  # frames per sync window, as Wav2Lip's expert


def _toy_clip(g: torch.Generator, t: int):
    """Speech-like envelope e_t; mel windows whose energy follows e; a mouth whose height follows e."""
    env = torch.rand(t + W, generator=g)  # syllable-like loudness per frame, independent across frames
    spec = torch.linspace(1.0, 0.2, 80).view(80, 1)
    # a Wav2Lip mel window covers 16 mel steps = 5 video frames starting at the frame
    cols = torch.arange(16) * W // 16
    mel = torch.stack(
        [spec * env[i + cols].view(1, 16) + 0.05 * torch.randn(80, 16, generator=g) for i in range(t)]
    )
    frames = torch.full((t, 3, 16, 16), -1.0)
    for i in range(t):
        h = 1 + int(round(6 * env[i].item()))
        frames[i, :, 8 : 8 + h, 4:12] = 1.0  # the mouth lives in the lower half
    return mel, frames


class TinySyncNet(nn.Module):
    """syncnet_python interface: forward_aud(mel window) / forward_lip(5-frame lower halves)."""

    def __init__(self):
        super().__init__()
        self.aud = nn.Sequential(
            nn.Flatten(), nn.Linear(80 * 16, 64), nn.ReLU(), nn.Linear(64, 16), nn.ReLU()
        )
        self.lip = nn.Sequential(
            nn.Flatten(), nn.Linear(W * 3 * 8 * 16, 64), nn.ReLU(), nn.Linear(64, 16), nn.ReLU()
        )

    def forward_aud(self, mel):  # (B,1,80,16): the window at the first frame, as Wav2Lip
        return self.aud(mel)

    def forward_lip(self, video):  # (B,3,5,H,W) → lower half
        return self.lip(video[..., video.shape[-2] // 2 :, :])


def _windows(mel, frames, starts, shift=0):
    a = torch.stack([mel[s + shift] for s in starts]).unsqueeze(1)
    v = torch.stack([frames[s : s + W] for s in starts]).permute(0, 2, 1, 3, 4)
    return a, v


@pytest.fixture(scope="module")
def expert():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    mel, frames = _toy_clip(g, 400)
    net = TinySyncNet()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    bce = nn.BCELoss()
    for _ in range(250):  # Wav2Lip's expert recipe: BCE on cosine, in-sync vs off-sync pairs
        starts = torch.randint(10, 380, (32,), generator=g).tolist()
        a_pos, v = _windows(mel, frames, starts)
        shifts = [
            int(s) * (1 if torch.rand(1, generator=g) > 0.5 else -1)
            for s in torch.randint(3, 9, (32,), generator=g)
        ]
        a_neg = torch.stack([mel[s + d] for s, d in zip(starts, shifts, strict=True)]).unsqueeze(1)
        a = torch.cat([a_pos, a_neg])
        vv = torch.cat([v, v])
        y = torch.cat([torch.ones(32), torch.zeros(32)])
        cos = nn.functional.cosine_similarity(net.forward_aud(a), net.forward_lip(vv)).clamp(1e-6, 1 - 1e-6)
        loss = bce(cos, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


def test_shifted_audio_lowers_sync_agreement(expert):
    g = torch.Generator().manual_seed(123)  # a held-out clip
    mel, frames = _toy_clip(g, 200)
    sync = SyncLoss(expert)
    starts = list(range(10, 180, 3))
    a, v = _windows(mel, frames, starts)
    aligned = sync.agreement(a, v).item()
    loss_aligned = sync(a, v).item()
    for shift in (4, 8):
        a_s, _ = _windows(mel, frames, starts, shift=shift)
        assert sync.agreement(a_s, v).item() < aligned - 0.1
        assert sync(a_s, v).item() > loss_aligned


def test_sync_loss_freezes_the_expert_but_passes_gradients_to_frames(expert):
    sync = SyncLoss(expert).train()
    assert not expert.training and all(not p.requires_grad for p in expert.parameters())
    g = torch.Generator().manual_seed(5)
    mel, frames = _toy_clip(g, 30)
    a, v = _windows(mel, frames, [2, 10])
    v = v.clone().requires_grad_(True)
    sync(a, v).backward()
    assert v.grad is not None and v.grad.abs().sum() > 0


def test_sync_expert_without_the_interface_is_rejected():
    with pytest.raises(InputError, match="forward_aud"):
        SyncLoss(nn.Linear(3, 3))


def test_release_smoothing_keeps_constants_and_damps_jitter():
    x = torch.ones(10, 4) * 3
    assert torch.allclose(smooth_coefficients(x), x, atol=1e-6)
    jitter = torch.tensor([1.0, -1.0] * 10).view(20, 1)
    y = smooth_coefficients(jitter)
    assert y[2:-2].abs().max() < 0.1 + 1e-6  # 0.452 - 2·0.274 = -0.096
    assert smooth_coefficients(torch.zeros(2, 7, 3)).shape == (2, 7, 3)
