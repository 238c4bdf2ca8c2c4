"""Inference: drive a source image with per-factor drivers, fast and in bounded memory.

What the release's demo does per output frame: encode the source again, encode the drivers (three
times when one clip drives all factors), run QR on the banks, run EEM's source convolution on the
source features, decode, one frame at a time. Here the source is encoded once, EEM's source part
(`Synthesis.source_parts`) and the bases are computed once per call, each distinct driver clip is
encoded once (mouth, pose and expression often share a clip), products of the weights alone are
reused (`edtalk.model.ops.reuse_weight_products`), and long inputs stream in chunks. `exact=True`
(one frame at a time, the default and what runs on CPU) gives the release's bits; `exact=False`
batches frames (on GPUs; on CPU it is slower, see `edtalk.perf.release_side_by_side`).

A driver left out keeps the source's own value of that factor: its coefficients are those the
heads extract from the source image itself (the source acts as that factor's driver on every frame).
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from edtalk.model import EDTalk
from edtalk.model.audio2motion import smooth_coefficients  # noqa: F401 (the release's kernel 3, sigma 1)
from edtalk.model.ops import reuse_weight_products
from metrics.errors import InputError


def _check_frames(name: str, x: torch.Tensor, size: int) -> None:
    if x.dim() != 4 or x.shape[1] != 3:
        raise InputError(f"{name} must be (T, 3, H, W) frames in [-1, 1], got shape {tuple(x.shape)}")
    if x.shape[-1] != size or x.shape[-2] != size:
        raise InputError(f"{name} frames are {x.shape[-2]}x{x.shape[-1]} but the model takes {size}x{size}; "
                         "crop/resize them first")
    if not torch.isfinite(x).all():
        raise InputError(f"{name} contains NaN or inf values")


@torch.no_grad()
def animate(model: EDTalk, source: torch.Tensor, mouth=None, pose=None, expression=None, mouth_coeffs=None,
            expression_coeffs=None, pose_coeffs=None, batch_size: int = 8, exact: bool = True) -> torch.Tensor:
    """Returns (T, 3, H, W) generator output (not clamped). Drivers are (T,3,H,W) frames in [-1, 1]
    or, per factor, (T, K) coefficients; a (1, ...) driver is held for every frame."""
    return torch.cat(list(animate_chunks(model, source, mouth=mouth, pose=pose, expression=expression,
                                         mouth_coeffs=mouth_coeffs, expression_coeffs=expression_coeffs,
                                         pose_coeffs=pose_coeffs, batch_size=batch_size, exact=exact)))


@torch.no_grad()
def animate_chunks(model: EDTalk, source: torch.Tensor, mouth=None, pose=None, expression=None,
                   mouth_coeffs=None, expression_coeffs=None, pose_coeffs=None,
                   batch_size: int = 8, exact: bool = True) -> Iterator[torch.Tensor]:
    """Like `animate`, yielding output batches so a caller can write them out as they come."""
    cfg = model.cfg
    dev = next(model.parameters()).device
    if source.dim() == 3:
        source = source[None]
    _check_frames("source", source, cfg.size)
    if source.shape[0] != 1:
        raise InputError(f"source must be one image (1, 3, H, W), got {source.shape[0]}")
    drivers = {"mouth": mouth, "pose": pose, "expression": expression}
    given = {"mouth": mouth_coeffs, "pose": pose_coeffs, "expression": expression_coeffs}
    if not cfg.expression and (expression is not None or expression_coeffs is not None):
        raise InputError("this generator is lip/pose-only (EDTalk_lip_pose): it takes no expression driver")
    for f in ("mouth", "pose", "expression"):
        if drivers[f] is not None and given[f] is not None:
            raise InputError(f"give either {f} frames or {f}_coeffs, not both")
    for f, x in drivers.items():
        if x is not None:
            _check_frames(f, x, cfg.size)
    supplied = {f"{f} frames": x for f, x in drivers.items() if x is not None}
    supplied.update({f"{f}_coeffs": c for f, c in given.items() if c is not None})
    if not supplied:
        raise InputError("nothing drives the source: give at least one of mouth, pose, expression or coefficients")
    lengths = {k: v.shape[0] for k, v in supplied.items()}
    n = max(lengths.values())
    bad = {k: t for k, t in lengths.items() if t not in (1, n)}
    if bad:
        raise InputError(f"driver lengths disagree: {lengths}; trim them to the same number of frames")

    model.eval()
    weight_products: dict = {}  # reused by every batch of this call (the weights cannot change meanwhile)
    with reuse_weight_products(weight_products):
        lat_src, feats = model.encode(source.to(dev))
        own = model.coefficients(lat_src)  # the source's own coefficients for factors left out
        parts = model.dec.source_parts(feats)
        bases = model.bases()
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        with reuse_weight_products(weight_products):
            d, e = model.compose(_batch_coefficients(model, drivers, given, own, start, stop, exact), bases)
            yield _decode(model, lat_src, d, feats, e, parts, exact)


def _batch_coefficients(model: EDTalk, drivers: dict, given: dict, own: dict, start: int, stop: int,
                        exact: bool) -> dict[str, torch.Tensor]:
    """Each factor's coefficients for frames start..stop: given, from its driver's frames, or the source's own."""
    dev, b = own["mouth"].device, stop - start
    coeffs: dict[str, torch.Tensor] = {}
    encoded: dict[tuple, dict[str, torch.Tensor]] = {}
    for f in ["mouth", "pose"] + (["expression"] if model.cfg.expression else []):
        if given[f] is not None:
            c = given[f].to(dev, own[f].dtype)  # the model's dtype (float64 in the parity test)
            coeffs[f] = (c if c.shape[0] == 1 else c[start:stop]).expand(b, -1)
        elif drivers[f] is not None:
            x = drivers[f]
            x = x if x.shape[0] == 1 else x[start:stop]
            key = _same_frames_key(drivers[f])  # one encoding per distinct driver clip
            if key not in encoded:
                encoded[key] = _encode_driver(model, x.to(dev), exact)
            coeffs[f] = encoded[key][f].expand(b, -1)
        else:
            coeffs[f] = own[f].expand(b, -1)
    return coeffs


def _encode_driver(model: EDTalk, x: torch.Tensor, exact: bool) -> dict[str, torch.Tensor]:
    """Coefficients of driver frames; `exact`: one frame at a time, the release's bits. On CPU that is also the
    fastest way: run as batches, the encoder's convolutions were slower (1.52 vs 1.82 frames/s at 8 frames, 2
    threads, quiet 2-core host) at 2.5x the memory (issue 17; `python -m edtalk.perf.release_side_by_side`)."""
    return _per_frame(lambda f: model.coefficients(model.encode_latents(f)), x, exact)


def _same_frames_key(x: torch.Tensor) -> tuple:
    """Equal for two tensors that view the same frames (one clip given for several factors, even as two slices)."""
    return x.data_ptr(), x.device, x.dtype, tuple(x.shape), x.stride()


def _decode(model: EDTalk, lat_src, d, feats, e, parts, exact: bool) -> torch.Tensor:
    """Decode a batch of motions: frame by frame (`exact`), or as one batch. No noise inputs, as the release."""
    if exact:
        return torch.cat([model.decode(lat_src, d[i:i + 1], feats, None if e is None else e[i:i + 1], parts,
                                       noise=False) for i in range(d.shape[0])])
    b = d.shape[0]

    def grow(maps):
        return None if maps is None else [m.expand(b, -1, -1, -1) for m in maps]

    return model.decode(lat_src.expand(b, -1), d, grow(feats), e, grow(parts), noise=False)


def _per_frame(fn, x: torch.Tensor, exact: bool) -> dict[str, torch.Tensor]:
    """fn over a batch, or frame by frame (concatenating its dict outputs) when `exact`."""
    if not exact or x.shape[0] == 1:
        return fn(x)
    parts = [fn(x[i:i + 1]) for i in range(x.shape[0])]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@torch.no_grad()
def animate_per_frame(model: EDTalk, source, mouth=None, pose=None, expression=None, mouth_coeffs=None,
                      expression_coeffs=None) -> torch.Tensor:
    """The release's procedure (test_EDTalk_V / test_EDTalk_A), one frame at a time.

    Kept as the reference the fast path is tested and benchmarked against: per frame it encodes the
    source and each driver again and recomputes the QR of the banks.
    """
    cfg = model.cfg
    ref = next(x for x in (mouth, pose, expression, mouth_coeffs, expression_coeffs) if x is not None)
    outs = []
    for t in range(ref.shape[0]):
        lat_src, feats = model.encode(source)
        own = model.coefficients(lat_src)
        coeffs = {}
        for f, x, c in (("mouth", mouth, mouth_coeffs), ("pose", pose, None),
                        ("expression", expression, expression_coeffs)):
            if f == "expression" and not cfg.expression:
                continue
            if c is not None:
                coeffs[f] = c[t:t + 1]
            elif x is not None:
                coeffs[f] = model.coefficients(model.encode(x[t:t + 1])[0])[f]
            else:
                coeffs[f] = own[f]
        d, e = model.compose(coeffs)
        outs.append(model.decode(lat_src, d, feats, e, noise=False))
    return torch.cat(outs)
