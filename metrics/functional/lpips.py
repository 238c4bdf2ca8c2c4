"""LPIPS (Zhang et al. 2018) as the `lpips` package computes it: net='alex', version 0.1.

Algorithm of `lpips.LPIPS(net='alex', version='0.1')` (richzhang/PerceptualSimilarity, pip lpips 0.1.4):
RGB (N, 3, H, W) in [-1, 1] -> ScalingLayer -> AlexNet `features` cut after each ReLU into five
slices -> unit-normalise channels -> squared difference -> learned 1x1 `lin` heads -> spatial mean
-> sum over the five layers. No resizing. The linear heads ship inside the lpips wheel
(`lpips/weights/v0.1/alex.pth`) and lpips loads them itself; the AlexNet trunk would be downloaded by
torchvision, so here it is built randomly (`pnet_rand=True`, no download) and then loaded from
torchvision's `alexnet-owt-7be5be79.pth` found by `metrics.weights.locate("alexnet-lpips")`.

Feeding [0, 1] images to LPIPS without `normalize=True` is the classic mistake (it gives lower,
better-looking numbers), so inputs that are all non-negative are rejected unless `normalize=True`
says they are [0, 1] (or `check_range=False` says they really are dark-free [-1, 1] images).
"""
from __future__ import annotations

import contextlib
import io
import os
import warnings
from typing import TYPE_CHECKING

from metrics.errors import CheckpointMismatchError, InputError

if TYPE_CHECKING:
    import torch

__all__ = ["load_lpips", "check_lpips_pair", "lpips_per_pair", "lpips", "ALEX_SLICES"]

#: lpips' `pretrained_networks.alexnet`: torchvision `features[lo:hi]` becomes `slice{k}`.
ALEX_SLICES = ((0, 2), (2, 5), (5, 8), (8, 10), (10, 12))
_TOL = 1e-3
_CACHE: dict = {}  # (file, mtime, size, device) -> loaded network; torch is imported only when used


def _trunk_state(state: dict, path) -> dict:
    """torchvision AlexNet keys `features.<i>.<param>` -> lpips keys `net.slice<k>.<i>.<param>`."""
    out = {}
    for key, value in state.items():
        parts = key.removeprefix("module.").split(".")
        if len(parts) != 3 or parts[0] != "features" or not parts[1].isdigit():
            continue  # the classifier is not part of LPIPS
        i = int(parts[1])
        k = next((n for n, (lo, hi) in enumerate(ALEX_SLICES, 1) if lo <= i < hi), None)
        if k is None:
            raise CheckpointMismatchError(f"{path}: layer features.{i} is not in torchvision's AlexNet")
        out[f"net.slice{k}.{i}.{parts[2]}"] = value
    return out


def load_lpips(path=None, device=None, verify: bool = True) -> torch.nn.Module:
    """`lpips.LPIPS(net='alex', version='0.1')` in eval mode, trunk from `locate("alexnet-lpips", path)`."""
    import lpips as lpips_pkg

    from metrics.utils import resolve_device, safe_torch_load
    from metrics.weights import locate

    p = locate("alexnet-lpips", path, verify=verify)
    state = safe_torch_load(p, "torchvision's AlexNet state dict")
    if not isinstance(state, dict):
        raise CheckpointMismatchError(
            f"{p} holds a {type(state).__name__}, not a torchvision AlexNet state dict")
    trunk = _trunk_state(state, p)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained is deprecated"
        model = lpips_pkg.LPIPS(pretrained=True, net="alex", version="0.1", pnet_rand=True, verbose=False)
    own = {k: v for k, v in model.state_dict().items() if k.startswith("net.")}
    missing = sorted(set(own) - set(trunk))
    wrong = sorted(k for k in own if k in trunk and tuple(trunk[k].shape) != tuple(own[k].shape))
    if missing or wrong:
        raise CheckpointMismatchError(
            f"{p} is not torchvision's AlexNet state dict: {len(missing)} trunk tensors missing "
            f"(e.g. {missing[:2]}), {len(wrong)} of wrong shape (e.g. {wrong[:2]})")
    model.load_state_dict(trunk, strict=False)  # the lin heads were loaded from the wheel above
    return model.to(resolve_device(device)).eval()


def _cached_lpips(weights, device, verify: bool) -> torch.nn.Module:
    """One loaded network per (file, device), so the functional form does not reload 244 MB per call."""
    from metrics.utils import resolve_device
    from metrics.weights import locate

    p = locate("alexnet-lpips", weights, verify=False)
    st = os.stat(p)
    key = (str(p.resolve()), st.st_mtime_ns, st.st_size, str(resolve_device(device)))
    if key not in _CACHE:
        _CACHE.clear()
        _CACHE[key] = load_lpips(p, device, verify)
    return _CACHE[key]


def check_lpips_pair(a, b, normalize: bool = False,
                     check_range: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two (N, 3, H, W) float batches and return them in [-1, 1] (float32)."""
    import torch

    a, b = torch.as_tensor(a), torch.as_tensor(b)
    a, b = (a[None] if a.ndim == 3 else a), (b[None] if b.ndim == 3 else b)
    if a.shape != b.shape:
        raise InputError(f"LPIPS inputs differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim != 4 or a.shape[1] != 3:
        raise InputError(f"LPIPS takes (N, 3, H, W) RGB batches, got shape {tuple(a.shape)}")
    if a.shape[0] == 0:
        raise InputError("LPIPS: empty batch")
    if not (a.is_floating_point() and b.is_floating_point()):
        raise InputError(f"LPIPS takes float images in [-1, 1], got {a.dtype} and {b.dtype}; "
                         "convert uint8 with x / 127.5 - 1")
    lo, hi = min(float(a.min()), float(b.min())), max(float(a.max()), float(b.max()))
    if normalize:
        if lo < -_TOL or hi > 1 + _TOL:
            raise InputError(f"LPIPS with normalize=True takes images in [0, 1], got values in "
                             f"[{lo:.3g}, {hi:.3g}]; pass normalize=False for [-1, 1] input")
        return a.float() * 2 - 1, b.float() * 2 - 1
    if lo < -1 - _TOL or hi > 1 + _TOL:
        raise InputError(f"LPIPS takes images in [-1, 1], got values in [{lo:.3g}, {hi:.3g}]; "
                         "map 0..255 with x / 127.5 - 1, or [0, 1] with normalize=True")
    if check_range and lo >= 0 and hi > lo:
        raise InputError(f"LPIPS inputs look like [0, 1] images (values in [{lo:.3g}, {hi:.3g}], none "
                         "negative) but LPIPS takes [-1, 1]: pass normalize=True (or feed x * 2 - 1); if "
                         "they really are [-1, 1], pass check_range=False")
    return a.float(), b.float()


def lpips_per_pair(a, b, net: torch.nn.Module | None = None, weights=None, normalize: bool = False,
                   device=None, batch_size: int = 32, check_range: bool = True,
                   verify: bool = True) -> torch.Tensor:
    """(N,) float64 LPIPS distance of each pair a[i], b[i] (net='alex', v0.1)."""
    import torch

    x, y = check_lpips_pair(a, b, normalize, check_range)
    if net is None:
        net = _cached_lpips(weights, device, verify)
    dev = next(net.parameters()).device
    with torch.no_grad():
        out = [net(x[i:i + batch_size].to(dev), y[i:i + batch_size].to(dev)).flatten().double().cpu()
               for i in range(0, len(x), batch_size)]
    return torch.cat(out)


def lpips(a, b, weights=None, normalize: bool = False, *, net: torch.nn.Module | None = None, device=None,
          batch_size: int = 32, check_range: bool = True, verify: bool = True) -> float:
    """Mean LPIPS (alex, v0.1) over the pairs of two (N, 3, H, W) batches in [-1, 1] ([0, 1] with
    `normalize=True`).

    `weights`: the AlexNet trunk file (default: `locate("alexnet-lpips")`); `net`: an already loaded
    `load_lpips()` network instead. Lower is more similar.
    """
    d = lpips_per_pair(a, b, net, weights, normalize, device, batch_size, check_range, verify)
    return float(d.mean())
