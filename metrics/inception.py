"""The FID Inception: pytorch-fid 0.3.0's port of TensorFlow's 2015-12-05 InceptionV3, pool3 features.

Architecture as `mseitzer/pytorch-fid:src/pytorch_fid/inception.py` (`fid_inception_v3`): torchvision's
`inception_v3(num_classes=1008, aux_logits=False, init_weights=False)` with Mixed_5b..5d, 6b..6e, 7b
and 7c replaced by blocks whose pool branch follows the TF graph: 3x3 average pooling that ignores the
zero padding (`count_include_pad=False`) in the A, C and first E blocks, and 3x3 *max* pooling in the
last E block (Mixed_7c). The state-dict keys are torchvision's (`Conv2d_1a_3x3.conv.weight`, …,
`fc.weight` 1008x2048), so `pt_inception-2015-12-05-6726825d.pth` loads strictly.

Preprocessing as pytorch-fid's `InceptionV3([3])`: float RGB in [0, 1] (N, 3, H, W) resized to 299x299
with `F.interpolate(bilinear, align_corners=False)` and no antialiasing, then `2x - 1`. The output is
the 2048-d average pool of Mixed_7c. uint8 input is accepted and divided by 255, which is exactly what
pytorch-fid's `ToTensor()` does to the PNG frames it reads.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import inception as tv_inception

from metrics.errors import CheckpointMismatchError, InputError

__all__ = ["FIDInceptionV3", "load_fid_inception", "check_fid_images", "FID_INPUT_SIZE", "FID_FEATURES"]

FID_INPUT_SIZE = 299
FID_FEATURES = 2048


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's average pool leaves the padded zeros out of the mean.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(tv_inception.InceptionA):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([b1, b5, b3, bp], 1)


class FIDInceptionC(tv_inception.InceptionC):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                      self.branch7x7dbl_5):
            bd = layer(bd)
        bp = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([b1, b7, bd, bp], 1)


class FIDInceptionE(tv_inception.InceptionE):
    """Mixed_7b (`max_pool=False`, TF average pool) and Mixed_7c (`max_pool=True`, the TF graph's quirk)."""

    def __init__(self, in_channels: int, max_pool: bool = False):
        super().__init__(in_channels)
        self.max_pool = max_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _tf_avg_pool(x)
        bp = self.branch_pool(pooled)
        return torch.cat([b1, b3, bd, bp], 1)


_TRUNK = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
          "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
          "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")


class FIDInceptionV3(nn.Module):
    """`forward(images)` -> (N, 2048) float32 pool3 features of images in [0, 1] (or uint8)."""

    def __init__(self) -> None:
        super().__init__()
        net = tv_inception.inception_v3(weights=None, num_classes=1008, aux_logits=False, init_weights=False)
        net.Mixed_5b = FIDInceptionA(192, pool_features=32)
        net.Mixed_5c = FIDInceptionA(256, pool_features=64)
        net.Mixed_5d = FIDInceptionA(288, pool_features=64)
        net.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        net.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        net.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        net.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        net.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        for name in _TRUNK:
            setattr(self, name, getattr(net, name))
        self.fc = net.fc  # unused for features, but part of the released state dict
        self.requires_grad_(False)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Mixed_7c pooled to (N, 2048) from network input already in [-1, 1] at 299x299."""
        for name in _TRUNK:
            x = getattr(self, name)(x)
        return F.adaptive_avg_pool2d(x, 1).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = check_fid_images(images)
        x = x.to(next(self.parameters()).device)
        x = F.interpolate(x, size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode="bilinear", align_corners=False,
                          antialias=False)
        return self.trunk(2 * x - 1)


def check_fid_images(images, what: str = "images") -> torch.Tensor:
    """(N, 3, H, W) float32 in [0, 1]: float input is range-checked, uint8 is divided by 255."""
    x = torch.as_tensor(images)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise InputError(f"FID {what} must be (N, 3, H, W) RGB, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise InputError(f"FID {what}: empty batch")
    if x.dtype == torch.uint8:
        return x.float() / 255
    if not x.is_floating_point():
        raise InputError(f"FID {what} must be float in [0, 1] or uint8, got {x.dtype}")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        hint = "map [-1, 1] frames with (x + 1) / 2" if lo >= -1 - 1e-3 and hi <= 1 + 1e-3 else \
            "divide 0..255 values by 255"
        raise InputError(f"FID {what} must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]; {hint}")
    return x.float()


def load_fid_inception(path=None, device=None, verify: bool = True) -> FIDInceptionV3:
    """The FID Inception with `locate("inception-fid", path)` loaded strictly, in eval mode on `device`."""
    from metrics.utils import load_matching_state, resolve_device, safe_torch_load
    from metrics.weights import locate

    p = locate("inception-fid", path, verify=verify)
    state = safe_torch_load(p, "pytorch-fid's FID Inception state dict")
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"{p} holds a {type(state).__name__}, not an Inception state dict")
    model = FIDInceptionV3()
    load_matching_state(model, state, p, "pytorch-fid's FID Inception state dict")
    return model.to(resolve_device(device)).eval()
