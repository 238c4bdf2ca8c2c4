"""StyleGAN2's discriminator (rosinality's, which LIA and EDTalk train with), sized by the model config."""
from __future__ import annotations

import torch
from torch import nn

from edtalk.model.ops import ConvLayer, EqualLinear, ResBlock


class Discriminator(nn.Module):
    """rosinality's StyleGAN2 discriminator (the one EDTalk/LIA train with): ConvLayer 1x1, ResBlocks
    down to 4x4, minibatch stddev (group 4, 1 feature), 3x3 conv, EqualLinear(fused lrelu) → 1 logit.
    Widths follow the model config's channel table so it scales with the presets."""

    def __init__(self, mcfg, stddev_group: int = 4):
        super().__init__()

        size = mcfg.size
        convs = [ConvLayer(3, mcfg.channels(size), 1)]
        res, in_ch = size, mcfg.channels(size)
        while res > 4:
            out_ch = mcfg.channels(res // 2)
            convs.append(ResBlock(in_ch, out_ch))
            in_ch, res = out_ch, res // 2
        self.convs = nn.Sequential(*convs)
        self.stddev_group = stddev_group
        self.final_conv = ConvLayer(in_ch + 1, mcfg.channels(4), 3)
        self.final_linear = nn.Sequential(
            EqualLinear(mcfg.channels(4) * 16, mcfg.channels(4), activation="fused_lrelu"),
            EqualLinear(mcfg.channels(4), 1))

    def forward(self, x):
        out = self.convs(x)
        b, c, h, w = out.shape
        group = min(b, self.stddev_group)
        while b % group:  # the group must divide the batch
            group -= 1
        sd = out.view(group, -1, 1, c, h, w)
        sd = torch.sqrt(sd.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        sd = sd.repeat(group, 1, h, w)
        out = self.final_conv(torch.cat([out, sd], 1))
        return self.final_linear(out.flatten(1))
