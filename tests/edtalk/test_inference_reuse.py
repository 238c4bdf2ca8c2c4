"""The inference fast path reuses work without changing a bit: EEM's source part, products of the weights,
one encoding per clip, the depthwise FIR kernel where it is exact; and it decodes without noise inputs."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from edtalk.animate import animate
from edtalk.model import EDTalk, ops
from edtalk.presets import model_preset


@pytest.fixture
def model() -> EDTalk:
    torch.manual_seed(0)
    return EDTalk(model_preset("smoke", size=32, channel_scale=0.125)).eval()  # small: seconds per test


@pytest.fixture
def frames():
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, 32, 32, generator=g) * 2 - 1, torch.rand(2, 3, 32, 32, generator=g) * 2 - 1


def plain_frames(model, src, mouth, pose, expression):
    """The release's per-frame procedure with nothing reused (no source parts, no weight products)."""
    outs = []
    with torch.no_grad():
        for t in range(mouth.shape[0]):
            lat, feats = model.encode(src)
            coeffs = {f: model.coefficients(model.encode(x[t:t + 1])[0])[f]
                      for f, x in (("mouth", mouth), ("pose", pose), ("expression", expression))}
            d, e = model.compose(coeffs)
            outs.append(model.decode(lat, d, feats, e, noise=False))
    return torch.cat(outs)


def test_fast_path_gives_the_per_frame_procedure_bits(model, frames):
    src, drv = frames
    assert model.cfg.uses_eem
    fast = animate(model, src, mouth=drv, pose=drv.flip(0), expression=drv, batch_size=2)
    assert torch.equal(fast, plain_frames(model, src, drv, drv.flip(0), drv))


def test_eem_source_part_is_what_the_frame_would_compute(model, frames):
    src, _ = frames
    with torch.no_grad():
        _, feats = model.encode(src)
        parts = model.dec.source_parts(feats)
        e = torch.randn(1, model.cfg.latent_dim)
        for eem, feat, part in zip(model.dec.fineadainresblock, feats, parts, strict=True):
            assert torch.equal(eem(feat, e, part), eem(feat, e))
            assert torch.equal(eem(feat, e), feat + eem.norm2(eem.conv2(feat), e))


def test_one_clip_for_several_factors_is_encoded_once_even_as_separate_slices(model, frames, monkeypatch):
    src, drv = frames
    calls = []
    encode, latents = model.encode, model.encode_latents
    monkeypatch.setattr(model, "encode", lambda x: calls.append(x.shape[0]) or encode(x))
    monkeypatch.setattr(model, "encode_latents", lambda x: calls.append(x.shape[0]) or latents(x))
    animate(model, src, mouth=drv[:2], pose=drv[:2], expression=drv[:2])
    assert sum(calls) == 1 + 2  # the source, then each frame once
    calls.clear()
    animate(model, src, mouth=drv, pose=drv.flip(0), expression=drv.clone())
    assert sum(calls) == 1 + 3 * 2  # three different clips


def test_decoding_has_no_noise_inputs_as_the_release(model, frames):
    """The release never passes noise to its StyledConvs; a checkpoint's noise weights must not matter."""
    src, drv = frames
    base = animate(model, src, mouth=drv)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, ops.NoiseInjection):
                m.weight.fill_(0.5)
    torch.manual_seed(1)
    assert torch.equal(animate(model, src, mouth=drv), base)
    batched = animate(model, src, mouth=drv, batch_size=2, exact=False)
    torch.manual_seed(2)
    assert torch.equal(animate(model, src, mouth=drv, batch_size=2, exact=False), batched)


def test_weight_products_are_reused_only_while_the_weights_are_unchanged():
    torch.manual_seed(0)
    layer = ops.EqualLinear(8, 4)
    x = torch.randn(2, 8)
    with torch.no_grad():
        plain = F.linear(x, layer.weight * layer.scale, layer.bias * layer.lr_mul)
        cache: dict = {}
        with ops.reuse_weight_products(cache):
            assert torch.equal(layer(x), plain)
            assert len(cache) == 2  # weight and bias, kept for the next call
            layer.weight.mul_(2)  # an in-place update bumps the version: recomputed, not stale
            assert torch.equal(layer(x), F.linear(x, layer.weight * layer.scale, layer.bias))
    assert layer(x).requires_grad  # outside the block (and with autograd) nothing is cached


def test_depthwise_fir_is_kept_only_where_it_gives_the_single_channel_bits(monkeypatch):
    table: dict = {}
    monkeypatch.setattr(ops, "_DEPTHWISE_IS_EXACT", table)
    w = torch.flip(ops.make_kernel([1, 3, 3, 1]) * 4, [0, 1])
    x = torch.randn(2, 5, 21, 19)
    single = F.conv2d(x.reshape(10, 1, 21, 19), w.view(1, 1, 4, 4)).reshape(2, 5, 18, 16)
    depthwise = F.conv2d(x.reshape(1, 10, 21, 19), w.expand(10, 1, 4, 4).contiguous(), groups=10).view_as(single)
    with torch.no_grad():
        assert torch.equal(ops._fir_exact(x, w), single)  # first call: both run, the single-channel one returned
        (key, verdict), = table.items()
        assert verdict == torch.equal(depthwise, single)
        assert torch.equal(ops._fir_exact(x, w), single)
        table[key] = False  # where the kernels disagree, the single-channel form runs
        assert torch.equal(ops._fir_exact(x, w), single)
        ops._fir_exact(x.double(), w.double())
    assert len(table) == 1  # float64 never tries the depthwise form


def test_side_by_side_benchmark_says_what_release_dir_must_hold(tmp_path):
    from edtalk.perf.release_side_by_side import main
    from metrics.errors import InputError

    with pytest.raises(InputError, match="networks/generator.py.*--release-dir"):
        main(["--release-dir", str(tmp_path)])
