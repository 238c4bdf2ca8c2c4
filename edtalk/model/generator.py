"""LIA's flow-warping StyleGAN2 decoder with EDTalk's expression enhancement module (EEM).

At each resolution 8..size the decoder predicts a flow (tanh) and an occlusion mask (sigmoid) from
its own feature map, warps the matching source-encoder feature with it, and blends:
`warped + decoder_feature * (1 - mask)`. EEM injects the expression direction `e` into each source
feature by AdaIN before it is warped.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edtalk.config import ModelConfig
from edtalk.model.ops import ConvLayer, ModulatedConv2d, StyledConv, Upsample


class ConstantInput(nn.Module):
    def __init__(self, channels, size=4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int):
        return self.input.expand(batch, -1, -1, -1)


class ToRGB(nn.Module):
    def __init__(self, in_ch, upsample=True, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ConvLayer(in_ch, 3, 1)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, skip=None):
        out = self.conv(x) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ToFlow(nn.Module):
    """Flow + mask head; warps the source feature and blends it into the decoder feature."""

    def __init__(self, in_ch, style_dim, blur_kernel=(1, 3, 3, 1), grid: str = "lia"):
        super().__init__()
        self.grid = grid
        self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_ch, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self._grid_cache: dict[tuple, torch.Tensor] = {}

    def _identity_grid(self, n: int, ref: torch.Tensor) -> torch.Tensor:
        key = (n, ref.device, ref.dtype)
        if key not in self._grid_cache:
            # linspace(-1, 1) on both axes, x first, built with numpy in float64 exactly as LIA
            # does: the decoder amplifies last-bit differences, so parity needs the same values.
            # "pixel-centres" (see ModelConfig.flow_grid) puts every pixel exactly on itself.
            xs = np.linspace(-1, 1, n) if self.grid == "lia" else (2 * np.arange(n) + 1) / n - 1
            grid = np.stack(np.meshgrid(xs, xs), 2)
            self._grid_cache[key] = torch.tensor(grid).float()[None].to(device=ref.device, dtype=ref.dtype)
        return self._grid_cache[key]

    def forward(self, x, style, feat, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        flow = torch.tanh(out[:, 0:2]).permute(0, 2, 3, 1) + self._identity_grid(x.shape[2], x)
        mask = torch.sigmoid(out[:, 2:3])
        warped = F.grid_sample(feat, flow, mode="bilinear", padding_mode="zeros", align_corners=False) * mask
        return warped, warped + x * (1 - mask), out


class AdaIN(nn.Module):
    def __init__(self, channels, cond_dim, hidden):
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Linear(cond_dim, hidden), nn.ReLU())
        self.mlp_gamma = nn.Linear(hidden, channels)
        self.mlp_beta = nn.Linear(hidden, channels)

    def forward(self, x, cond):
        return self.modulate(F.instance_norm(x, eps=1e-5), cond)

    def modulate(self, normalized, cond):
        """The conditioned scale and shift of an instance-normalised map."""
        h = self.mlp_shared(cond.flatten(1))
        gamma = self.mlp_gamma(h)[:, :, None, None]
        beta = self.mlp_beta(h)[:, :, None, None]
        return normalized * (1 + gamma) + beta


class ExpressionEnhancement(nn.Module):
    """EEM: residual AdaIN block conditioned on the expression direction.

    The release computes `actvn(norm1(conv1(x)))` and then overwrites it with `norm2(conv2(x))`,
    so the output is `x + norm2(conv2(x))`. conv1/norm1 are kept (their weights are in the
    checkpoints) but not evaluated, which gives identical outputs at lower cost.
    """

    def __init__(self, channels, cond_dim, hidden=128):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.norm1 = AdaIN(channels, cond_dim, hidden)
        self.norm2 = AdaIN(channels, cond_dim, hidden)

    def forward(self, x, e, normalized=None):
        """`normalized`: `self.source_part(x)` computed earlier (x is a source feature, the same every frame)."""
        normalized = self.source_part(x) if normalized is None else normalized
        return x + self.norm2.modulate(normalized, e)

    def source_part(self, x):
        """What depends on the source feature alone: a third of a frame's decoder FLOPs at 256 px."""
        return F.instance_norm(self.conv2(x), eps=1e-5)


class Synthesis(nn.Module):
    def __init__(self, cfg: ModelConfig, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        style = cfg.latent_dim
        self.log_size = int(math.log2(cfg.size))
        self.input = ConstantInput(cfg.channels(4))
        self.conv1 = StyledConv(cfg.channels(4), cfg.channels(4), 3, style, blur_kernel=blur_kernel)
        # Defined by LIA and present in every checkpoint, but LIA's forward never uses it.
        self.to_rgb1 = ToRGB(cfg.channels(4), upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.to_flows = nn.ModuleList()
        in_ch = cfg.channels(4)
        for i in range(3, self.log_size + 1):
            out_ch = cfg.channels(2 ** i)
            self.convs.append(StyledConv(in_ch, out_ch, 3, style, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch))
            self.to_flows.append(ToFlow(out_ch, style, blur_kernel=blur_kernel, grid=cfg.flow_grid))
            in_ch = out_ch
        if cfg.uses_eem:
            self.fineadainresblock = nn.ModuleList(
                ExpressionEnhancement(cfg.channels(2 ** i), style, cfg.eem_hidden)
                for i in range(3, self.log_size + 1))
        else:
            self.fineadainresblock = None

    def source_parts(self, feats: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """EEM's per-source work on the source features (None without EEM), to pass to every frame's forward."""
        if self.fineadainresblock is None:
            return None
        return [eem.source_part(f) for eem, f in zip(self.fineadainresblock, feats, strict=True)]

    def forward(self, latent: torch.Tensor, feats: list[torch.Tensor], e: torch.Tensor | None = None,
                source_parts: list[torch.Tensor] | None = None, noise: bool = True):
        """latent (B, D): identity latent + motion; feats: source features 8x8..size; e: expression;
        source_parts: `self.source_parts(feats)` if already computed; noise=False: no noise inputs."""
        out = self.conv1(self.input(latent.shape[0]), latent, noise)
        skip = skip_flow = None
        for k, feat in enumerate(feats):
            if self.fineadainresblock is not None and e is not None:
                feat = self.fineadainresblock[k](feat, e, None if source_parts is None else source_parts[k])
            out = self.convs[2 * k](out, latent, noise)
            out = self.convs[2 * k + 1](out, latent, noise)
            warped, out, skip_flow = self.to_flows[k](out, latent, feat, skip_flow)
            skip = self.to_rgbs[k](warped, skip)
        return skip
