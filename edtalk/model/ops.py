"""StyleGAN2 building blocks in plain PyTorch (no custom CUDA ops), with the parameter names the
official EDTalk / LIA checkpoints use, so their state dicts load unchanged.

Equalised learning rate: weights are stored N(0, 1) and scaled at run time by 1/sqrt(fan_in).
"""
from __future__ import annotations

import contextlib
import contextvars
import math

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)

# Inference-only reuse of values computed from the weights alone (scaled weights, biases), active inside
# `reuse_weight_products()`: the weights cannot change during one `animate` call, and the cache ends with it.
_WEIGHT_PRODUCTS: contextvars.ContextVar[dict | None] = contextvars.ContextVar("weight_products", default=None)


@contextlib.contextmanager
def reuse_weight_products(cache: dict | None = None):
    """Within this block and without autograd, `self.weight * self.scale` and the like are computed once per
    module and kept in `cache` (pass the same dict to reuse them across blocks); each is keyed by its tensors'
    identity, storage and version, so an in-place update of a weight is still seen."""
    previous = _WEIGHT_PRODUCTS.get()
    _WEIGHT_PRODUCTS.set({} if cache is None else cache)
    try:
        yield
    finally:
        _WEIGHT_PRODUCTS.set(previous)


def _weight_product(module: nn.Module, name: str, make, *tensors: torch.Tensor) -> torch.Tensor:
    cache = _WEIGHT_PRODUCTS.get()
    if cache is None or torch.is_grad_enabled():
        return make()
    key = tuple((id(t), t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
    hit = cache.get((id(module), name))
    if hit is None or hit[0] != key:
        hit = cache[(id(module), name)] = (key, make())
    return hit[1]


def _inplace_ok(x: torch.Tensor) -> bool:
    """In-place activation is safe (same bits, fewer allocations) when autograd does not record."""
    return not (torch.is_grad_enabled() and x.requires_grad)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = 0.2,
                     scale: float = SQRT2) -> torch.Tensor:
    if x.dim() > 2 and bias.dim() == 1:
        bias = bias.view(1, -1, *([1] * (x.dim() - 2)))
    if _inplace_ok(x):
        return F.leaky_relu(x + bias, negative_slope, inplace=True).mul_(scale)
    return F.leaky_relu(x + bias, negative_slope) * scale


def make_kernel(k) -> torch.Tensor:
    k = torch.tensor(k, dtype=torch.float32)
    if k.dim() == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def _fir_depthwise(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Valid correlation of every channel of x with w, as one depthwise convolution (autograd's own backward).

    The training path: forward and backward 1.40x / 1.32x faster per stage-0 / stage-1 smoke step than the
    separable shift-and-add form it replaced (quiet, 1 thread, `python -m edtalk.perf.train_breakdown`), and the
    same sums in another order (losses move by float rounding)."""
    c, (kh, kw) = x.shape[1], w.shape
    return F.conv2d(x, w.view(1, 1, kh, kw).expand(c, 1, kh, kw), groups=c)


# (device type, dtype, maps, padded height, padded width, kernel) -> whether the depthwise form of the FIR
# convolution gives the single-channel form's bits on this machine (checked once per shape, below)
_DEPTHWISE_IS_EXACT: dict[tuple, bool] = {}


def _fir_exact(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Valid correlation of each of the B*C maps of x with the flipped kernel w, with LIA's bits.

    LIA's native op runs one single-channel convolution over (B*C, 1, H, W) maps: oneDNN's slowest path
    (at 256 px a fifth of inference time). One depthwise convolution (groups = B*C) computes the same sums
    about 5x faster in float32, and oneDNN accumulates both with the same FMAs in the same order, so the
    bits agree; that is not promised across CPUs and kernels, so the first call of each shape runs both and
    keeps the depthwise form only where they are equal. Float64 (much slower depthwise, and it rounds
    differently) keeps the single-channel form; training takes `_fir_depthwise`.
    """
    b, c, hp, wp = x.shape
    kh, kw = w.shape
    n, out_hw = b * c, (hp - kh + 1, wp - kw + 1)

    def single():
        return F.conv2d(x.reshape(n, 1, hp, wp), w.view(1, 1, kh, kw)).reshape(b, c, *out_hw)

    if x.dtype != torch.float32 or not _inplace_ok(x):
        return single()

    def depthwise():
        return F.conv2d(x.reshape(1, n, hp, wp), w.expand(n, 1, kh, kw).contiguous(), groups=n).view(b, c, *out_hw)

    key = (x.device.type, x.dtype, n, hp, wp, tuple(w.flatten().tolist()))
    return fast_where_same_bits(_DEPTHWISE_IS_EXACT, key, depthwise, single)


def fast_where_same_bits(verdicts: dict, key, fast, reference) -> torch.Tensor:
    """`fast()` where the first call with this key found it gives `reference()`'s bits, else `reference()`.

    The first call runs both, records the verdict in `verdicts` and returns the reference's result, so every
    call returns the reference's bits; later calls with the key pay for one path only."""
    verdict = verdicts.get(key)
    if verdict is None:
        ref = reference()
        verdicts[key] = torch.equal(fast(), ref)
        return ref
    return fast() if verdict else reference()


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with `kernel` (FIR), downsample; per channel."""
    b, c, h, w = x.shape
    if up > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = pad
    x = F.pad(x, [max(p0, 0), max(p1, 0), max(p0, 0), max(p1, 0)])
    if p0 < 0 or p1 < 0:
        x = x[:, :, max(-p0, 0): x.shape[2] - max(-p1, 0), max(-p0, 0): x.shape[3] - max(-p1, 0)]
    w = torch.flip(kernel, [0, 1]).to(x.dtype)
    # Training: the depthwise convolution with autograd, equal up to float rounding; inference keeps the
    # release's bits (parity).
    x = _fir_depthwise(x, w) if torch.is_grad_enabled() and x.requires_grad else _fir_exact(x, w)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


class Blur(nn.Module):
    def __init__(self, kernel, pad, upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor ** 2
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x):
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    def __init__(self, kernel, factor: int = 2):
        super().__init__()
        self.factor = factor
        k = make_kernel(kernel) * factor ** 2
        self.register_buffer("kernel", k)
        p = k.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x):
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class EqualConv2d(nn.Module):
    def __init__(self, in_ch, out_ch, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_ch * kernel_size ** 2)
        self.stride, self.padding = stride, padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x):
        weight = _weight_product(self, "weight", lambda: self.weight * self.scale, self.weight)
        return F.conv2d(x, weight, bias=self.bias, stride=self.stride, padding=self.padding)


class EqualLinear(nn.Module):
    def __init__(self, in_dim, out_dim, bias=True, bias_init=0.0, lr_mul=1.0, activation=None):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul

    def forward(self, x):
        weight = _weight_product(self, "weight", lambda: self.weight * self.scale, self.weight)
        bias = (_weight_product(self, "bias", lambda: self.bias * self.lr_mul, self.bias)
                if self.bias is not None else None)
        if self.activation:
            return fused_leaky_relu(F.linear(x, weight), bias)
        return F.linear(x, weight, bias)


class FusedLeakyReLU(nn.Module):
    """Bias + leaky ReLU(0.2) * sqrt(2); the bias is stored (1, C, 1, 1) as in LIA."""

    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x):
        return fused_leaky_relu(x, self.bias)


class ScaledLeakyReLU(nn.Module):
    def forward(self, x):
        if _inplace_ok(x):
            return F.leaky_relu(x, 0.2).mul_(SQRT2)
        return F.leaky_relu(x, 0.2) * SQRT2


class ConvLayer(nn.Sequential):
    def __init__(self, in_ch, out_ch, kernel_size, downsample=False, blur_kernel=(1, 3, 3, 1),
                 bias=True, activate=True):
        layers: list[nn.Module] = []
        if downsample:
            p = len(blur_kernel) - 2 + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(EqualConv2d(in_ch, out_ch, kernel_size, stride=stride, padding=padding,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_ch) if bias else ScaledLeakyReLU())
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_ch, out_ch, 1, downsample=True, activate=False, bias=False,
                              blur_kernel=blur_kernel)

    def forward(self, x):
        out = self.conv2(self.conv1(x))
        if _inplace_ok(out):
            return out.add_(self.skip(x)).div_(SQRT2)
        return (out + self.skip(x)) / SQRT2


class ModulatedConv2d(nn.Module):
    """Style-modulated convolution, one grouped conv for the whole batch."""

    def __init__(self, in_ch, out_ch, kernel_size, style_dim, demodulate=True, upsample=False,
                 blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.in_ch, self.out_ch, self.k = in_ch, out_ch, kernel_size
        self.upsample, self.demodulate = upsample, demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.scale = 1 / math.sqrt(in_ch * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)

    def forward(self, x, style):
        b, c, h, w = x.shape
        s = self.modulation(style).view(b, 1, c, 1, 1)
        weight = _weight_product(self, "weight", lambda: self.scale * self.weight, self.weight) * s
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(b, self.out_ch, 1, 1, 1)
        x = x.reshape(1, b * c, h, w)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(b * c, self.out_ch, self.k, self.k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=b)
            out = out.view(b, self.out_ch, out.shape[-2], out.shape[-1])
            return self.blur(out)
        weight = weight.view(b * self.out_ch, c, self.k, self.k)
        out = F.conv2d(x, weight, padding=self.padding, groups=b)
        return out.view(b, self.out_ch, h, w)


class NoiseInjection(nn.Module):
    # Under DDP this process holds the rows rank::world_size of the global batch, and every rank's RNG has the
    # same seed: each draws the whole global batch's noise, in the order one process would, and keeps its rows,
    # so the ranks together inject what one process with the global batch would (the trainer sets these).
    rank, world_size = 0, 1

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        noise = x.new_empty(x.shape[0] * self.world_size, 1, x.shape[2], x.shape[3]).normal_()
        if self.world_size > 1:
            noise = noise[self.rank::self.world_size]
        return x + self.weight * noise


class StyledConv(nn.Module):
    def __init__(self, in_ch, out_ch, kernel_size, style_dim, upsample=False, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x, style, noise: bool = True):
        """`noise=False`: no noise input, as the release's generator runs (it never passes one)."""
        out = self.conv(x, style)
        return self.activate(self.noise(out) if noise else out)
