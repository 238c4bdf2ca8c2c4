"""From-scratch initialisation and the fast training path of the FIR filters."""
import torch
import torch.nn.functional as F

from edtalk.model.ops import _fir_separable, _FIRConv, _separable_factors, make_kernel, upfirdn2d
from edtalk.train.api import resolve_config
from edtalk.train.engine import build_models


def test_fir_fast_paths_match_the_exact_convolution():
    k = torch.flip(make_kernel([1, 3, 3, 1]) * 4, [0, 1]).double()
    x = torch.randn(2, 5, 13, 11, dtype=torch.float64, requires_grad=True)
    exact = F.conv2d(x.reshape(10, 1, 13, 11), k.view(1, 1, 4, 4)).reshape(2, 5, 10, 8)
    assert torch.allclose(_fir_separable(x, *_separable_factors(k)), exact, atol=1e-12)
    # The custom backward equals autograd's, checked numerically too.
    single = x.detach().reshape(10, 1, 13, 11).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: _FIRConv.apply(t, k.view(1, 1, 4, 4)), (single,))
    g = torch.randn_like(exact)
    a, = torch.autograd.grad(exact, x, g)
    b, = torch.autograd.grad(_fir_separable(x, *_separable_factors(k)), x, g)
    assert torch.allclose(a, b, atol=1e-12)


def test_upfirdn_training_and_inference_paths_agree():
    k = make_kernel([1, 3, 3, 1]) * 4
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        exact = upfirdn2d(x, k, up=2, pad=(2, 1))
    fast = upfirdn2d(x.clone().requires_grad_(True), k, up=2, pad=(2, 1))
    assert torch.allclose(fast, exact, atol=1e-5)


def test_identity_flow_init_starts_every_warp_at_the_identity():
    model, _, _ = build_models(resolve_config("smoke"), 32)
    heads = list(model.dec.to_flows)
    assert heads and all(float(h.conv.weight.detach().abs().sum()) == 0.0 for h in heads)
    x = torch.randn(2, 3, 32, 32)
    lat, feats = model.encode(x)
    torch.manual_seed(0)
    d = torch.randn_like(lat) * 3  # any motion: the flows ignore it until trained
    out_a = model.decode(lat, d, feats)
    out_b = model.decode(lat, -d, feats)
    # The RGB path is the warped source features only: an identity warp makes it motion-independent.
    assert torch.allclose(out_a, out_b, atol=1e-5)
    release, _, _ = build_models(resolve_config("smoke", overrides={"flow_init": "release"}), 32)
    assert all(float(h.conv.weight.detach().abs().sum()) > 0 for h in release.dec.to_flows)


def test_stage_adam_beta1_reaches_the_optimiser(tmp_path):
    from edtalk.train.data import FramePool
    from edtalk.train.engine import Trainer

    cfg = resolve_config("smoke")
    assert cfg.stage("autoencoder").adam_beta1 == 0.9 and resolve_config("paper").stage("autoencoder").adam_beta1 == 0.0
    pool = FramePool.generate(2, 1, 4, 32, seed=0, test_identities=0)
    tr = Trainer(cfg, tmp_path / "run", pool, progress=False)
    opt_g, opt_d = tr._optimisers(list(tr.model.parameters())[:2], 0.002, 0.9)
    assert opt_g.param_groups[0]["betas"][0] == 0.9 and opt_d.param_groups[0]["betas"][0] == 0.0
