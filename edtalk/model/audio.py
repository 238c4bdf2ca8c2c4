"""Wav2Lip's audio encoder and the release's audio-to-lip map (80x16 mel window -> 20 mouth coefficients)."""
from __future__ import annotations

import torch
from torch import nn


class ConvBlock(nn.Module):
    """Conv + BatchNorm + ReLU, with an optional identity residual (Wav2Lip's `Conv2d`)."""

    def __init__(self, cin, cout, kernel_size, stride, padding, residual=False):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout))
        self.residual = residual

    def forward(self, x):
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return torch.relu(out)


class AudioEncoder(nn.Sequential):
    """(N,1,80,16) mel windows -> (N,512) embeddings."""

    def __init__(self):
        spec = [  # (cin, cout, stride, padding, residual)
            (1, 32, 1, 1, False), (32, 32, 1, 1, True), (32, 32, 1, 1, True),
            (32, 64, (3, 1), 1, False), (64, 64, 1, 1, True), (64, 64, 1, 1, True),
            (64, 128, 3, 1, False), (128, 128, 1, 1, True), (128, 128, 1, 1, True),
            (128, 256, (3, 2), 1, False), (256, 256, 1, 1, True),
            (256, 512, 1, 0, False),
        ]
        blocks = [ConvBlock(ci, co, 3, s, p, r) for ci, co, s, p, r in spec]
        blocks.append(ConvBlock(512, 512, 1, 1, 0))
        super().__init__(*blocks)

    def forward(self, mel):
        return super().forward(mel).flatten(1)


class Audio2Lip(nn.Module):
    """Keys `audio_encoder.*`, `mapping.*`: the release's Audio2Lip.pt loads unchanged."""

    def __init__(self, n_mouth: int = 20):
        super().__init__()
        self.audio_encoder = AudioEncoder()
        self.mapping = nn.Linear(512, n_mouth)
        nn.init.zeros_(self.mapping.bias)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        if mel.dim() != 4 or tuple(mel.shape[1:]) != (1, 80, 16):
            from metrics.errors import InputError

            raise InputError(f"audio2lip expects mel windows of shape (T, 1, 80, 16), got {tuple(mel.shape)}")
        return self.mapping(self.audio_encoder(mel))
