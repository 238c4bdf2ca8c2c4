"""The evaluator networks: one small image CNN per factor, and a SyncNet of syncnet_python's design.

Every image net takes float (N, 3, S, S) in [-1, 1] at the evaluator size S (64 by default; the
`Evaluators` API resizes frames of any size to it). `SyncNet` keeps syncnet_python's interface and
layer layout (`netcnnaud`/`netfcaud` on (N, 1, 13, 20) MFCC windows, `netcnnlip`/`netfclip` on
(N, 3, 5, S, S) BGR 0..255 crops, Euclidean distance between the two embeddings), narrower and on
small mouth crops, so `metrics.functional.sync.lse(..., model=, crop_size=)` scores with it unchanged.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv_bn(c_in: int, c_out: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class ConvNet(nn.Module):
    """A plain strided CNN: `features(x) -> (N, feat_dim)` (the penultimate layer), `forward -> head`.

    The trunk keeps spatial layout (flatten, no global pooling) because landmarks and pose need it.
    """

    def __init__(self, out_dim: int, in_size: int = 64, width: int = 32, feat_dim: int = 128):
        super().__init__()
        w = width
        layers, c, size = [], 3, in_size
        for k, c_out in enumerate([w, 2 * w, 4 * w, 4 * w]):  # 64 -> 32 -> 16 -> 8 -> 4
            layers += _conv_bn(c, c_out, 2) + (_conv_bn(c_out, c_out) if k in (1, 2) else [])
            c, size = c_out, (size + 1) // 2
        self.trunk = nn.Sequential(*layers)
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(c * size * size, feat_dim), nn.BatchNorm1d(feat_dim),
                                nn.ReLU(inplace=True))
        self.head = nn.Linear(feat_dim, out_dim)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.trunk(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class LandmarkNet(nn.Module):
    """68 heatmaps at a quarter of the input size (an hourglass with one skip), read out by soft-argmax
    (integral regression), so coordinates are sub-pixel and the net is translation-equivariant.

    `forward(x) -> (N, 136)` landmark (x, y) pairs in [-1, 1] over the input (pixel edges at ±1).
    """

    def __init__(self, in_size: int = 64, width: int = 32, feat_dim: int = 128, n_points: int = 68):
        super().__init__()
        w = width
        self.down1 = nn.Sequential(*_conv_bn(3, w, 2), *_conv_bn(w, 2 * w, 2), *_conv_bn(2 * w, 2 * w))  # /4
        self.down2 = nn.Sequential(*_conv_bn(2 * w, 4 * w, 2), *_conv_bn(4 * w, 4 * w), *_conv_bn(4 * w, 4 * w))  # /8
        self.fuse = nn.Sequential(*_conv_bn(6 * w, 4 * w), nn.Conv2d(4 * w, n_points, 1))
        self.log_temperature = nn.Parameter(torch.tensor(0.0))
        self.n_points = n_points

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.down1(x)
        b = F.interpolate(self.down2(a), size=a.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.fuse(torch.cat([a, b], 1)) * self.log_temperature.exp()
        n, k, h, w = logits.shape
        prob = logits.flatten(2).softmax(-1).view(n, k, h, w)
        xs = (torch.arange(w, device=x.device, dtype=prob.dtype) + 0.5) / w * 2 - 1  # cell centres
        ys = (torch.arange(h, device=x.device, dtype=prob.dtype) + 0.5) / h * 2 - 1
        px, py = (prob.sum(2) * xs).sum(-1), (prob.sum(3) * ys).sum(-1)
        return torch.stack([px, py], -1).flatten(1)


class PoseNet(nn.Module):
    """Two pose estimates from one ConvNet, averaged: a direct regression head, and facial geometry —
    the net's 68 predicted landmarks through a fixed linear map (`geometry`, ridge-fitted on the
    training ground truth: landmarks -> pose). Outputs are yaw/pitch/roll over the world's limits.

    With six training faces the direct head alone learns per-face pitch biases (unseen faces came out
    up to 10° off); pose is linear in the landmark geometry here and landmarks transfer, while the
    direct head is the more precise for yaw and roll. Both are trained, together with the landmarks.
    """

    def __init__(self, in_size: int = 64, width: int = 32, feat_dim: int = 128):
        super().__init__()
        self.net = ConvNet(136 + 3, in_size, width, feat_dim)
        self.register_buffer("geometry", torch.zeros(137, 3))

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(landmarks in [-1, 1] (N, 136), direct pose (N, 3), geometric pose (N, 3))."""
        out = self.net(x)
        lm = out[:, :136]
        return lm, out[:, 136:], torch.cat([lm, torch.ones_like(lm[:, :1])], 1) @ self.geometry

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, direct, geometric = self.heads(x)
        return (direct + geometric) / 2


class IdentityNet(nn.Module):
    """ConvNet trunk + an embedding layer, trained with a CosFace head over the training identities.

    `forward(x)` is the L2-normalised embedding; `logits(x, labels)` the margin-penalised class scores.
    """

    def __init__(self, n_classes: int, in_size: int = 64, width: int = 32, feat_dim: int = 128,
                 embed_dim: int = 64, scale: float = 16.0, margin: float = 0.2):
        super().__init__()
        self.net = ConvNet(embed_dim, in_size, width, feat_dim)  # its head is the embedding layer
        self.classes = nn.Parameter(torch.randn(n_classes, embed_dim) * 0.1)
        self.scale, self.margin = scale, margin

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=1)

    def logits(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        cos = self(x) @ F.normalize(self.classes, dim=1).T
        return self.scale * (cos - self.margin * F.one_hot(labels, cos.shape[1]))


def _bn_relu3(conv: nn.Module, c: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm3d(c), nn.ReLU(inplace=True)]


def _bn_relu2(conv: nn.Module, c: int) -> list[nn.Module]:
    return [conv, nn.BatchNorm2d(c), nn.ReLU(inplace=True)]


class SyncNet(nn.Module):
    """syncnet_python's two-stream `S`, scaled down for 5-frame stacks of S×S mouth crops.

    Audio tower: the same six convolutions, pools and kernel sizes as `S.netcnnaud` on 13×20 MFCC
    windows (13 cepstra × 20 steps of 10 ms = 5 video frames at 25 fps), at ~1/8 of its width.
    Video tower: `S.netcnnlip`'s sequence (a 5-frame temporal conv, then 2-D convs with three
    stride-2 pools, a final conv that covers the remaining map), sized for S = `crop_size`,
    at 1/6 of its width.
    Inputs are taken exactly as syncnet_python takes them (raw MFCCs; BGR 0..255 frames); the
    normalisation (MFCC mean/std of the training set, pixels to [-1, 1]) is inside the model.
    """

    def __init__(self, crop_size: int = 32, embed_dim: int = 128,
                 aud_widths: tuple[int, ...] = (8, 16, 32, 32, 32, 64),
                 lip_widths: tuple[int, ...] = (16, 32, 48, 48, 48, 96)):
        super().__init__()
        a = aud_widths
        self.netcnnaud = nn.Sequential(
            *_bn_relu2(nn.Conv2d(1, a[0], 3, 1, 1), a[0]), nn.MaxPool2d(1, 1),
            *_bn_relu2(nn.Conv2d(a[0], a[1], 3, 1, 1), a[1]), nn.MaxPool2d(3, (1, 2)),
            *_bn_relu2(nn.Conv2d(a[1], a[2], 3, padding=1), a[2]),
            *_bn_relu2(nn.Conv2d(a[2], a[3], 3, padding=1), a[3]),
            *_bn_relu2(nn.Conv2d(a[3], a[4], 3, padding=1), a[4]), nn.MaxPool2d(3, 2),
            *_bn_relu2(nn.Conv2d(a[4], a[5], (5, 4), padding=0), a[5]),
        )
        v, s = lip_widths, crop_size
        for _ in range(3):  # the three (1,3,3)/(1,2,2) max-pools with padding 1
            s = (s - 1) // 2 + 1
        self.netcnnlip = nn.Sequential(
            *_bn_relu3(nn.Conv3d(3, v[0], (5, 3, 3), 1, (0, 1, 1)), v[0]),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_bn_relu3(nn.Conv3d(v[0], v[1], (1, 3, 3), 1, (0, 1, 1)), v[1]),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_bn_relu3(nn.Conv3d(v[1], v[2], (1, 3, 3), padding=(0, 1, 1)), v[2]),
            *_bn_relu3(nn.Conv3d(v[2], v[3], (1, 3, 3), padding=(0, 1, 1)), v[3]),
            *_bn_relu3(nn.Conv3d(v[3], v[4], (1, 3, 3), padding=(0, 1, 1)), v[4]),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_bn_relu3(nn.Conv3d(v[4], v[5], (1, s, s), padding=0), v[5]),
        )
        self.netfcaud = nn.Sequential(nn.Linear(a[5], 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, embed_dim))
        self.netfclip = nn.Sequential(nn.Linear(v[5], 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, embed_dim))
        self.register_buffer("mfcc_mean", torch.zeros(13))
        self.register_buffer("mfcc_std", torch.ones(13))
        self.crop_size = crop_size

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, 13, 20) MFCC windows (python_speech_features on int16-scale audio) -> (N, embed_dim)."""
        x = (x - self.mfcc_mean[:, None]) / self.mfcc_std[:, None]
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3, 5, S, S) BGR crops in 0..255 -> (N, embed_dim)."""
        return self.netfclip(self.netcnnlip(x / 127.5 - 1.0).flatten(1))
