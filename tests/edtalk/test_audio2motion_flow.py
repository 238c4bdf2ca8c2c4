"""PoseFlow: exact likelihood (invertibility, log-det vs autograd Jacobian), seeded sampling, training."""

from __future__ import annotations

import math

import pytest
import torch

from edtalk.model.pose_flow import ActNorm, AffineCoupling, InvertibleLinear, PoseFlow, mel_window_stats
from metrics.errors import InputError


def _perturbed_flow(n_pose=6, audio_dim=10, **kw) -> PoseFlow:
    """A small double-precision flow whose layers are all far from the identity."""
    torch.manual_seed(0)
    flow = PoseFlow(
        n_pose=n_pose, audio_dim=audio_dim, hidden=32, n_steps=3, history=3, dropout=0.0, **kw
    ).double()
    x = torch.randn(4, 9, n_pose, dtype=torch.double)
    a = torch.randn(4, 9, audio_dim, dtype=torch.double)
    flow.fit_normalizer(x * 3 + 1, a * 2 - 1)  # non-trivial standardisation is part of the density
    flow.train()
    flow.nll(x * 3 + 1, a * 2 - 1)  # data-dependent ActNorm init
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow.eval()


def test_flow_is_invertible_to_1e5():
    flow = _perturbed_flow()
    x = torch.randn(2, 7, 6, dtype=torch.double) * 3 + 1
    a = torch.randn(2, 7, 10, dtype=torch.double)
    z, _ = flow.encode(x, a)
    assert not torch.allclose(z, (x - flow.pose_mean) / flow.pose_std, atol=1e-2)  # not the identity
    x_back = flow.sample(a, z=z)
    assert (x_back - x).abs().max().item() < 1e-5
    # and in float32 too, the precision the model trains in
    flow32 = flow.float()
    z32, _ = flow32.encode(x.float(), a.float())
    assert (flow32.sample(a.float(), z=z32) - x.float()).abs().max().item() < 1e-4 * x.abs().max().item()


@pytest.mark.parametrize("layer", ["actnorm", "invlinear", "coupling"])
def test_each_layer_logdet_matches_autograd_jacobian(layer):
    torch.manual_seed(3)
    d, c = 5, 4
    if layer == "actnorm":
        m = ActNorm(d).double()
        m.log_scale.data.normal_()
        m.bias.data.normal_()
    elif layer == "invlinear":
        m = InvertibleLinear(d).double()
        m.upper.data.normal_()
        m.lower.data.normal_()
    else:
        m = AffineCoupling(d, c, 16).double()
        for p in m.parameters():
            p.data.normal_(0, 0.5)
    m.eval()
    x = torch.randn(1, d, dtype=torch.double)
    cond = torch.randn(1, c, dtype=torch.double)
    y, logdet = m(x, cond)
    jac = torch.autograd.functional.jacobian(lambda v: m(v.unsqueeze(0), cond)[0][0], x[0])
    assert torch.allclose(logdet[0], torch.linalg.slogdet(jac)[1], atol=1e-10)
    assert torch.allclose(m.inverse(y, cond), x, atol=1e-10)


def test_log_prob_is_exact_change_of_variables():
    """log p(x_t | x_<t, a) = log N(z_t) + log|det ∂z_t/∂x_t| with the Jacobian from autograd."""
    flow = _perturbed_flow()
    x = torch.randn(1, 6, 6, dtype=torch.double) * 3 + 1
    a = torch.randn(1, 6, 10, dtype=torch.double)
    z, logp = flow.encode(x, a)
    for t in (0, 3, 5):

        def frame_map(xt, t=t):
            xx = x.clone()
            xx[0, t] = xt
            return flow.encode(xx, a)[0][0, t]

        jac = torch.autograd.functional.jacobian(frame_map, x[0, t])
        expected = -0.5 * (z[0, t].pow(2).sum() + 6 * math.log(2 * math.pi)) + torch.linalg.slogdet(jac)[1]
        assert abs(logp[0, t].item() - expected.item()) < 1e-8
        # causality: frame t's density does not depend on later frames
        if t < 5:
            xx = x.clone()
            xx[0, t + 1 :] += 5.0
            assert abs(flow.log_prob(xx, a)[0, t].item() - logp[0, t].item()) < 1e-9


def test_density_integrates_to_one_in_2d():
    """A numerical check of normalisation: ∫ p(x_1 | a) dx over a grid ≈ 1 for a 2-d flow."""
    flow = _perturbed_flow(n_pose=2, audio_dim=3)
    a = torch.randn(1, 1, 3, dtype=torch.double)
    lo, hi, n = -25.0, 25.0, 401
    g = torch.linspace(lo, hi, n, dtype=torch.double)
    xx, yy = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1).unsqueeze(1)
    logp = flow.log_prob(pts, a.expand(pts.shape[0], -1, -1))[:, 0]
    mass = logp.exp().sum().item() * ((hi - lo) / (n - 1)) ** 2
    assert abs(mass - 1.0) < 0.02


def test_sampling_is_repeatable_with_a_seed_and_temperature_scales_spread():
    flow = _perturbed_flow().float()
    a = torch.randn(3, 20, 10)
    s1 = flow.sample(a, seed=7)
    s2 = flow.sample(a, seed=7)
    s3 = flow.sample(a, seed=8)
    assert torch.equal(s1, s2)
    assert not torch.allclose(s1, s3)
    cold = flow.sample(a, seed=7, temperature=0.0)
    assert torch.equal(cold, flow.sample(a, seed=123, temperature=0.0))  # τ=0 is deterministic
    hot = flow.sample(a.repeat(8, 1, 1), seed=1, temperature=1.0)
    warm = flow.sample(a.repeat(8, 1, 1), seed=1, temperature=0.3)
    assert warm.std(0).mean() < hot.std(0).mean()


def test_sample_is_primed_by_the_source_pose():
    flow = _perturbed_flow().float()
    a = torch.randn(1, 5, 10)
    src = torch.full((1, 6), 4.0)
    s_a = flow.sample(a, seed=0, temperature=0.0, init=src)
    s_b = flow.sample(a, seed=0, temperature=0.0, init=-src)
    assert not torch.allclose(s_a, s_b)


def test_training_reduces_nll_and_learns_audio_dependence():
    """Poses that follow the audio: after a few steps the NLL drops clearly below the start."""
    torch.manual_seed(0)
    b, t = 16, 24
    a = torch.randn(b, t, 4)
    pose = torch.stack([2 * a[..., 0], a[..., 1] - a[..., 2], 0.5 * a[..., 3]], -1) + 0.1 * torch.randn(
        b, t, 3
    )
    flow = PoseFlow(n_pose=3, audio_dim=4, hidden=32, n_steps=2, history=2, dropout=0.0)
    flow.fit_normalizer(pose, a)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    flow.train()
    start = flow.nll(pose, a).item()
    for _ in range(60):
        loss = flow.nll(pose, a)
        opt.zero_grad()
        loss.backward()
        opt.step()
    flow.eval()
    end = flow.nll(pose, a).item()
    assert end < start - 1.0
    # shuffled audio must now be less likely: the flow uses the conditioning
    assert flow.nll(pose, a[torch.randperm(b)]).item() > end + 0.5


def test_bad_shapes_raise_input_error():
    flow = PoseFlow(n_pose=6, audio_dim=10, hidden=8, n_steps=1)
    with pytest.raises(InputError, match="audio"):
        flow.nll(torch.zeros(1, 4, 6), torch.zeros(1, 4, 9))
    with pytest.raises(InputError, match="poses"):
        flow.nll(torch.zeros(1, 5, 6), torch.zeros(1, 4, 10))
    with pytest.raises(InputError, match="mel"):
        mel_window_stats(torch.zeros(4, 40, 16))
    assert mel_window_stats(torch.zeros(2, 4, 80, 16)).shape == (2, 4, 160)
