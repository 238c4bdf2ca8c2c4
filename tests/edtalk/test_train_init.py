"""From-scratch initialisation and the fast training path of the FIR filters."""
import pytest
import torch
import torch.nn.functional as F

from ablations.variants import resolve_config
from edtalk.model.ops import _fir_depthwise, make_kernel, upfirdn2d
from edtalk.train.engine import build_models


def test_fir_training_path_matches_the_exact_convolution_and_its_gradient():
    k = torch.flip(make_kernel([1, 3, 3, 1]) * 4, [0, 1]).double()
    x = torch.randn(2, 5, 13, 11, dtype=torch.float64, requires_grad=True)
    exact = F.conv2d(x.reshape(10, 1, 13, 11), k.view(1, 1, 4, 4)).reshape(2, 5, 10, 8)
    assert torch.allclose(_fir_depthwise(x, k), exact, atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: _fir_depthwise(t, k), (x,))
    g = torch.randn_like(exact)
    a, = torch.autograd.grad(exact, x, g)
    b, = torch.autograd.grad(_fir_depthwise(x, k), x, g)
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


def test_copy_source_init_makes_the_untrained_model_output_the_source():
    torch.manual_seed(0)
    model, _, mcfg = build_models(resolve_config("smoke"), 32)
    assert mcfg.flow_grid == "pixel-centres"
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    lat, feats = model.encode(x)
    d = torch.randn_like(lat) * 3  # any motion
    e = torch.randn(2, lat.shape[1])  # any expression: EEM starts as the identity too
    assert torch.allclose(model.decode(lat, d, feats, e), x, atol=1e-5)
    # Each part matters: LIA's random image path, or LIA's grid, and the output is no copy.
    for overrides in ({"image_path_init": "release"}, {"model": {"flow_grid": "lia"}}):
        torch.manual_seed(0)
        other, _, _ = build_models(resolve_config("smoke", overrides=overrides), 32)
        lat, feats = other.encode(x)
        assert (other.decode(lat, d, feats) - x).abs().mean() > 0.02
    # paper keeps the released initialisation and grid (the official checkpoints need LIA's grid).
    paper = resolve_config("paper")
    assert (paper.flow_init, paper.image_path_init) == ("release", "release")


def test_flow_grids():
    from edtalk.config import ModelConfig
    from edtalk.model.generator import ToFlow
    from metrics.errors import InputError

    feat = torch.randn(1, 4, 8, 8)
    x = torch.randn(1, 4, 8, 8)
    for grid, exact in (("pixel-centres", True), ("lia", False)):
        head = ToFlow(4, 16, grid=grid)
        with torch.no_grad():
            head.conv.weight.zero_()
        warped, _, _ = head(x, torch.randn(1, 16), feat)
        # zero flow + mask 0.5: the pixel-centre grid samples every pixel exactly on itself.
        assert torch.allclose(warped, 0.5 * feat, atol=1e-6) == exact
    with pytest.raises(InputError, match="flow_grid"):
        ModelConfig(flow_grid="centres")


def test_cosine_lr_schedule():
    from edtalk.train.config import StageConfig
    from edtalk.train.engine import lr_factor
    from metrics.errors import InputError

    s = StageConfig("autoencoder", 100, 2, lr_schedule="cosine")
    assert lr_factor(s, 0) == 1.0 and abs(lr_factor(s, 50) - 0.5) < 1e-12 and lr_factor(s, 99) < 1e-3
    assert all(lr_factor(s, i) >= lr_factor(s, i + 1) for i in range(99))
    assert lr_factor(StageConfig("autoencoder", 100, 2), 70) == 1.0
    with pytest.raises(InputError, match="lr_schedule"):
        lr_factor(StageConfig("autoencoder", 100, 2, lr_schedule="step"), 3)


def test_generated_frames_do_not_depend_on_the_rng_state():
    """The decoder's noise inputs are drawn from a fixed seed in evaluation: a resumed evaluation (other
    RNG history) scores exactly what an uninterrupted one does, and training's RNG stream is untouched."""
    import numpy as np

    from edtalk.train.engine import build_models
    from edtalk.train.evaluate import drive_frames

    cfg = resolve_config("smoke", "full", 0, {"flow_init": "release"})
    torch.manual_seed(0)
    model, _, _ = build_models(cfg, 16)
    noises = [m for m in model.modules() if type(m).__name__ == "NoiseInjection"]
    assert noises
    for m in noises:  # trained noise weights are non-zero; make the noise visible in the output
        m.weight.data.fill_(0.5)
    f = np.random.default_rng(0).integers(0, 255, (5, 16, 16, 3), dtype=np.uint8)
    first = drive_frames(model, f[0], f, f, f, "cpu")
    torch.manual_seed(123)
    torch.randn(10)
    state = torch.get_rng_state()
    assert np.array_equal(first, drive_frames(model, f[0], f, f, f, "cpu"))
    assert torch.equal(state, torch.get_rng_state())
    assert not np.array_equal(first, drive_frames(model, f[0], f, f, f, "cpu", noise_seed=1))  # noise matters
