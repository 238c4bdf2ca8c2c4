"""Training losses (paper.md §2.1–2.2): L1, multi-scale perceptual, non-saturating GAN, and the
feature-level cosine constraint L_fea.

Perceptual network. The paper (and the released code) uses FOMM's VGGLoss: VGG19 with ImageNet
weights, image pyramid {1, .5, .25, .125}, relu1_1…relu5_1, each layer's L1 weighted 10. The
ImageNet weights cannot be downloaded here, so:
- "vgg19": used when `metrics.weights.resolve_weights("vgg19")` or
  `$TORCH_HOME/hub/checkpoints/vgg19-dcbb9e9d.pth` gives the torchvision file;
- "random-vgg19": the offline fallback — the same VGG19 trunk with fixed weights drawn from a seeded
  Kaiming initialisation (never trained, never updated). Random convolutional features still measure
  multi-scale local structure (edges, texture statistics), which is what the term adds over L1; they
  do not encode ImageNet semantics, so numbers are not comparable with VGG19-trained runs. The run
  records which one was used (`PerceptualLoss.name`).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

VGG19_FILE = "vgg19-dcbb9e9d.pth"
# relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 end after these torchvision `features` indices.
_SLICES = (2, 7, 12, 21, 30)


def find_vgg19_weights() -> Path | None:
    """The torchvision VGG19 ImageNet file if it is present locally (never downloads)."""
    try:
        from metrics.weights import resolve_weights  # optional: the weights manager may not exist
    except ImportError:
        resolve_weights = None
    if resolve_weights is not None:
        try:
            p = resolve_weights("vgg19")
            if p is not None and Path(p).is_file():
                return Path(p)
        except Exception:  # noqa: BLE001 — absent/unknown entry means "not cached"; fall back below
            pass
    home = Path(os.environ.get("TORCH_HOME") or Path.home() / ".cache" / "torch")
    p = home / "hub" / "checkpoints" / VGG19_FILE
    return p if p.is_file() else None


class BatchShare:
    """This process's share of the global batch, for the loss terms that are not means over samples.

    DistributedDataParallel averages gradients over the ranks, which equals one process with the global batch
    only for means over samples. A term summed over samples (L_fea) is scaled by the world size, so the
    average of the ranks' gradients is the global sum's; a mean over pixels whose count varies per sample (the
    mouth-box L1) divides by the count over the global batch (all-reduced) and is scaled likewise. The average
    of the ranks' values of every term is then one process's value. World size 1 changes nothing (the
    single-process numbers stay bit-identical)."""

    def __init__(self, world_size: int = 1):
        self.world_size = int(world_size)

    def summed(self, term: torch.Tensor) -> torch.Tensor:
        """A term summed over this rank's samples, weighted as its part of the global batch's sum."""
        return term * self.world_size if self.world_size > 1 else term

    def global_count(self, count: torch.Tensor) -> torch.Tensor:
        """`count` (a local sum that carries no gradient) summed over every rank."""
        if self.world_size == 1:
            return count
        total = count.detach().clone()
        torch.distributed.all_reduce(total)
        return total


ONE_PROCESS = BatchShare()


def masked_l1(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
              share: BatchShare = ONE_PROCESS) -> torch.Tensor:
    """Mean absolute error over the pixels where `mask` (B,1,H,W, 0/1) is set, over the global batch (`share`);
    0 where every mask is empty."""
    err = (pred - target).abs().mean(1, keepdim=True) * mask
    return share.summed(err.sum()) / share.global_count(mask.sum()).clamp_min(1.0)


class _VGGTrunk(nn.Module):
    def __init__(self, features: nn.Sequential, layers: int = 5):
        super().__init__()
        self.slices = nn.ModuleList()
        prev = 0
        for end in _SLICES[:layers]:
            self.slices.append(features[prev:end])
            prev = end
        # ImageNet normalisation of inputs in [0,1] (torchvision convention).
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        h = ((x + 1) / 2 - self.mean) / self.std
        out = []
        for s in self.slices:
            h = s(h)
            out.append(h)
        return out


class PerceptualLoss(nn.Module):
    """Multi-scale VGG19 L1 perceptual loss (FOMM VGGLoss) with a recorded offline fallback."""

    def __init__(self, net: str = "auto", scales=(1.0, 0.5, 0.25, 0.125), layer_weight: float = 10.0,
                 seed: int = 0, layers: int = 5):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        if net not in ("auto", "vgg19", "random-vgg19"):
            from metrics.errors import InputError
            raise InputError(f"perceptual_net must be auto, vgg19 or random-vgg19, not {net!r}")
        weights = find_vgg19_weights() if net in ("auto", "vgg19") else None
        if net == "vgg19" and weights is None:
            from metrics.errors import MissingWeightsError
            raise MissingWeightsError(
                f"perceptual_net='vgg19' needs {VGG19_FILE} in $TORCH_HOME/hub/checkpoints; put it there "
                "or use perceptual_net='auto' to fall back to 'random-vgg19'")
        # Only the convolutional trunk (torchvision's VGG19 "E" layout); building the 120M-parameter
        # classifier just to discard it would cost seconds per run.
        if not 1 <= layers <= len(_SLICES):
            from metrics.errors import InputError
            raise InputError(f"perceptual_layers must be 1..{len(_SLICES)}, not {layers}")
        # `layers` < 5 keeps only relu1_1…relu{layers}_1: the smoke preset's cheaper version on 2 CPU cores.
        features = make_layers(cfgs["E"], batch_norm=False)[: _SLICES[layers - 1]]
        if weights is not None:
            state = torch.load(weights, map_location="cpu", weights_only=True)
            own = features.state_dict()
            features.load_state_dict({k[len("features."):]: v for k, v in state.items()
                                      if k.startswith("features.") and k[len("features."):] in own})
            self.name = "vgg19-imagenet"
        else:
            # Seeded so every run (and every DDP rank) sees the same fixed trunk.
            g = torch.Generator().manual_seed(seed)
            for m in features.modules():
                if isinstance(m, nn.Conv2d):
                    fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                    with torch.no_grad():
                        m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                        m.bias.zero_()
            self.name = f"random-vgg19(seed={seed}) [offline fallback: no ImageNet VGG19 weights]"
        self.trunk = _VGGTrunk(features, layers)
        self.name += f", relu1_1..relu{layers}_1, scales {tuple(scales)}"

        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.trunk.eval()
        self.scales = tuple(scales)
        self.layer_weight = layer_weight

    def train(self, mode: bool = True):  # the trunk stays in eval mode (no dropout/bn anyway)
        super().train(mode)
        self.trunk.eval()
        return self

    def forward(self, pred, target):
        loss = pred.new_zeros(())
        for s in self.scales:
            if s != 1.0:
                # FOMM's ImagePyramide uses an anti-aliased downsample; bilinear with antialias matches its intent.
                p = F.interpolate(pred, scale_factor=s, mode="bilinear", align_corners=False, antialias=True)
                t = F.interpolate(target, scale_factor=s, mode="bilinear", align_corners=False, antialias=True)
            else:
                p, t = pred, target
            if min(p.shape[-2:]) < 8:  # too small for the trunk's pooling; skip this scale
                continue
            fp, ft = self.trunk(p), self.trunk(t.detach())
            for a, b in zip(fp, ft, strict=True):
                loss = loss + self.layer_weight * (a - b).abs().mean()
        return loss


def l1(pred, target):
    return (pred - target).abs().mean()


def g_nonsaturating(fake_logits):
    """Generator side of the non-saturating GAN loss: softplus(-D(G(z)))."""
    return F.softplus(-fake_logits).mean()


def d_logistic(real_logits, fake_logits):
    """Discriminator side: softplus(-D(x)) + softplus(D(G(z))) (StyleGAN2, no R1 as in the release)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def feature_cosine(d_cross, d_self, share: BatchShare = ONE_PROCESS):
    """L_fea = Σ_batch exp(−cos(d_cross, d_self)) (paper.md §2.2, summed over the batch as the code does; over
    the global batch under DDP, see BatchShare).

    Pulls the direction extracted from the mouth-swapped frame towards the one from the real frame.
    """
    cos = F.cosine_similarity(d_cross.flatten(1), d_self.flatten(1), dim=1, eps=1e-8)
    return share.summed(torch.exp(-cos).sum())
