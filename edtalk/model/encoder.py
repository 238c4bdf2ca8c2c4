"""LIA's appearance encoder: a ResNet-style downsampling stack to a 1x1 latent, plus the
multi-scale features of the source that the generator warps (8x8 ... size x size)."""
from __future__ import annotations

import math

from torch import nn

from edtalk.config import ModelConfig
from edtalk.model.ops import ConvLayer, EqualConv2d, ResBlock


class AppearanceNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        size = cfg.size
        convs: list[nn.Module] = [ConvLayer(3, cfg.channels(size), 1)]
        in_ch = cfg.channels(size)
        for i in range(int(math.log2(size)), 2, -1):
            out_ch = cfg.channels(2 ** (i - 1))
            convs.append(ResBlock(in_ch, out_ch))
            in_ch = out_ch
        convs.append(EqualConv2d(in_ch, cfg.latent_dim, 4, padding=0, bias=False))
        self.convs = nn.Sequential(*convs)

    def forward(self, x):
        feats = []
        h = x
        for conv in self.convs:
            h = conv(h)
            feats.append(h)
        # feats[-1] is the 1x1 latent; the generator uses 8x8 ... full resolution, coarse first.
        return h.flatten(1), feats[::-1][2:]

    def latent(self, x):
        """The latent alone (B, D): the same layers as `forward`, without keeping the skip features."""
        return self.convs(x).flatten(1)


class Encoder(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.net_app = AppearanceNet(cfg)

    def forward(self, x):
        return self.net_app(x)
