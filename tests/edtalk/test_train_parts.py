"""Trainer parts without a model: mouth swap, losses, presets/variants, data sampling, CLI errors."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from train_fakes import draw_face, tiny_pool

from ablations.variants import VARIANTS, get_variant, resolve_config
from edtalk.presets import model_preset, train_preset
from edtalk.train import losses as L
from edtalk.train.api import parse_stages
from edtalk.train.config import TrainConfig, apply_overrides
from edtalk.train.data import FramePool, PairDataset, PoolClip, ResumableDistributedSampler
from edtalk.train.mouth_swap import mouth_box, similarity_transform, swap_mouth, three_points
from metrics.errors import InputError, MissingWeightsError


# ---------------------------------------------------------------- mouth swap
def test_similarity_transform_recovers_a_known_one():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (3, 2))
    ang, s, t = 0.3, 1.2, np.array([5.0, -7.0])
    r = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ (s * r).T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], s * r, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


def test_swap_mouth_pastes_the_source_mouth_only_in_the_box():
    a, la = draw_face(64, identity=1, yaw=0.5, jaw=1.0)  # open mouth, turned
    b, lb = draw_face(64, identity=2, yaw=-0.5, jaw=0.0)  # closed mouth
    out = swap_mouth(a, la, b, lb)
    x0, y0, x1, y1 = mouth_box(lb)
    outside = np.ones(b.shape[:2], bool)
    outside[max(y0, 0):y1, max(x0, 0):x1] = False
    assert np.array_equal(out[outside], b[outside])  # untouched outside dst's mouth box
    # A's open (dark) inner mouth now sits at b's mouth centre.
    cx, cy = three_points(lb)[2].round().astype(int)
    assert out[cy, cx].max() < 40 and not np.array_equal(out[y0:y1, x0:x1], b[y0:y1, x0:x1])


def test_swap_mouth_release_canvas_quirk_pastes_black_past_224():
    a, la = draw_face(64, 1, 0.0, 1.0)
    b, lb = draw_face(64, 2, 0.0, 0.0)
    quirk = swap_mouth(a, la, b, lb, canvas=40)  # scaled analogue of the 224-on-256 canvas
    x0, y0, x1, y1 = mouth_box(lb)
    assert y1 > 40 and (quirk[40:y1, max(x0, 0):x1] == 0).all()


def test_swap_mouth_rejects_bad_landmarks():
    a, la = draw_face(32, 1, 0.0, 0.5)
    with pytest.raises(InputError, match="ldmk_dst"):
        swap_mouth(a, la, a, la[:60])
    bad = la.copy()
    bad[3] = np.nan
    with pytest.raises(InputError, match="ldmk_src"):
        swap_mouth(a, bad, a, la)


# ---------------------------------------------------------------- losses
def test_perceptual_fallback_is_named_and_behaves():
    p = L.PerceptualLoss("auto", scales=(1.0, 0.5), layers=2)
    assert p.name.startswith("random-vgg19(seed=0)") and "offline fallback" in p.name
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    assert float(p(x, x)) == 0.0
    loss = p(y, x)
    loss.backward()
    assert loss > 0 and y.grad.abs().sum() > 0
    assert all(not q.requires_grad for q in p.parameters())
    # Same seed → same fixed trunk (all DDP ranks agree).
    q = L.PerceptualLoss("auto", scales=(1.0, 0.5), layers=2)
    assert torch.equal(p(y, x), q(y, x))


def test_perceptual_vgg19_requested_without_weights_is_an_error():
    with pytest.raises(MissingWeightsError, match="vgg19-dcbb9e9d.pth"):
        L.PerceptualLoss("vgg19")


def test_perceptual_uses_cached_vgg19_when_present(tmp_path, monkeypatch):
    from torchvision.models.vgg import cfgs, make_layers

    ck = tmp_path / "hub" / "checkpoints"
    ck.mkdir(parents=True)
    feats = make_layers(cfgs["E"])
    torch.save({f"features.{k}": v for k, v in feats.state_dict().items()}, ck / L.VGG19_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    p = L.PerceptualLoss("auto", layers=1)
    assert p.name.startswith("vgg19-imagenet")
    assert torch.equal(p.trunk.slices[0][0].weight, feats[0].weight)


def test_feature_cosine_and_gan_terms():
    d = torch.randn(4, 16)
    assert torch.isclose(L.feature_cosine(d, d), torch.tensor(4 * np.exp(-1.0), dtype=torch.float32))
    assert torch.isclose(L.feature_cosine(d, -d), torch.tensor(4 * np.exp(1.0), dtype=torch.float32))
    assert L.g_nonsaturating(torch.full((3, 1), 10.0)) < 1e-3
    assert L.d_logistic(torch.full((3, 1), 10.0), torch.full((3, 1), -10.0)) < 1e-3


# ---------------------------------------------------------------- config / variants
def test_presets_and_unknown_preset():
    for name in ("smoke", "study", "paper"):
        cfg = train_preset(name)
        assert [s.name for s in cfg.stages] == ["autoencoder", "mouth_pose", "expression"]
        assert set(cfg.stage("expression").trainable) == {"expression_head", "expression_bank", "eem"}
    assert train_preset("paper").stage("mouth_pose").iterations == 4000  # paper.md §2.2
    with pytest.raises(InputError, match="did you mean 'smoke'"):
        train_preset("smok")


def test_config_roundtrip_and_unknown_field():
    cfg = resolve_config("smoke", "no-eem", seed=5)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="did you mean 'feature_loss'"):
        apply_overrides(cfg, {"feature_los": False})
    with pytest.raises(InputError, match="unknown loss field 'vgg'"):
        apply_overrides(cfg, {"losses": {"vgg": 1.0}})


def test_variant_table():
    assert set(VARIANTS) == {"full", "no-orthogonality", "no-mouth-bank", "no-pose-bank", "no-expression-bank",
                             "no-banks", "no-eem", "no-cross-reconstruction", "no-feature-loss", "joint-training"}
    assert resolve_config("smoke", "no-orthogonality").model == dataclasses.replace(model_preset("smoke"),
                                                                                    orthogonal=False)
    assert resolve_config("smoke", "no-cross-reconstruction").cross_reconstruction is False
    assert resolve_config("smoke", "joint-training").joint_training is True
    assert get_variant("no-banks").paper["psnr"] == 20.302 and get_variant("no-eem").paper["acc_emo"] == 49.37
    with pytest.raises(InputError, match="did you mean 'no-eem'"):
        get_variant("no-emm")


def test_parse_stages():
    assert parse_stages("all") is None
    assert parse_stages("1") == {"mouth_pose"}
    assert parse_stages([0, "expression"]) == {"autoencoder", "expression"}
    with pytest.raises(InputError, match="--stage"):
        parse_stages("3")


# ---------------------------------------------------------------- data
def test_pair_samples_are_deterministic_and_shaped():
    pool = tiny_pool()
    ds = PairDataset(pool, "mouth_pose", 8, seed=1)
    s1, s2 = ds[3], ds[3]
    assert set(s1) == {"a_id", "a", "b_id", "b", "a_b", "b_a", "a_mouth", "b_mouth"}
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert s1["a"].shape == (3, 32, 32) and s1["a"].min() >= -1 and s1["a"].max() <= 1
    ds.set_epoch(1)
    assert not all(torch.equal(s1[k], ds[3][k]) for k in s1)
    ex = PairDataset(pool, "expression", 8, seed=1)[0]
    assert set(ex) == {"source", "target", "target_mouth"}


def test_mouth_mask_covers_the_mouth_box_only():
    from edtalk.train.data import mouth_mask

    img, lm = draw_face(64, 0, 0.0, 0.8)
    m = mouth_mask(lm, 64)
    ys, xs = torch.nonzero(m[0], as_tuple=True)
    mouth = lm[48:68]
    # the box holds every mouth landmark (± the 1-px margin at 64 px), and nothing far from it
    assert xs.min() <= mouth[:, 0].min() and xs.max() >= mouth[:, 0].max() - 1
    assert ys.min() <= mouth[:, 1].min() and ys.max() >= mouth[:, 1].max() - 1
    assert xs.max() <= mouth[:, 0].max() + 2 and ys.min() >= mouth[:, 1].min() - 2
    assert 0 < m.sum() < 0.2 * 64 * 64


def test_masked_l1_is_the_mean_error_inside_the_mask():
    pred, target = torch.zeros(2, 3, 8, 8), torch.zeros(2, 3, 8, 8)
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:4, 2:4] = 1
    pred[:, :, 2:4, 2:4] = 0.5  # error inside the mask
    pred[:, :, 6:, 6:] = 1.0  # error outside: ignored
    assert torch.isclose(L.masked_l1(pred, target, mask), torch.tensor(0.5))
    assert L.masked_l1(pred, target, torch.zeros_like(mask)) == 0  # empty mask: no term, no NaN


def test_sampler_resumes_mid_epoch_and_shards():
    ds = PairDataset(tiny_pool(), "autoencoder", 12, seed=0)
    full = list(ResumableDistributedSampler(ds, 1, 0, seed=0))
    s = ResumableDistributedSampler(ds, 1, 0, seed=0)
    s.set_position(0, 5)
    assert list(s) == full[5:]
    r0, r1 = ResumableDistributedSampler(ds, 2, 0, 0), ResumableDistributedSampler(ds, 2, 1, 0)
    assert sorted(list(r0) + list(r1)) == sorted(full) and not set(r0) & set(r1)


def test_pool_rejects_bad_clips():
    good = tiny_pool().clips[0]
    with pytest.raises(InputError, match="landmarks"):
        FramePool([PoolClip("x", "i", "neutral", "train", good.frames, good.landmarks[:2])])
    with pytest.raises(InputError, match="uint8"):
        FramePool([PoolClip("x", "i", "neutral", "train", good.frames.astype(np.float32), good.landmarks)])
    with pytest.raises(InputError, match="no clips"):
        FramePool([])


# ---------------------------------------------------------------- CLI
def test_cli_variants_lists_all(capsys):
    from edtalk.cli import main

    assert main(["variants"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in VARIANTS)


def test_cli_train_errors_are_one_line(tmp_path, capsys):
    from edtalk.cli import main

    assert main(["train", "--variant", "no-bank", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "unknown variant 'no-bank'" in err and "did you mean 'no-banks'" in err
    assert len(err.strip().splitlines()) == 1
    assert main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "r")]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["train", "--variant", "joint-training", "--stage", "1", "--out", str(tmp_path / "r")]) == 2
    assert "single stage" in capsys.readouterr().err


def test_missing_in_memory_generator_is_a_user_error(monkeypatch):
    import types

    from edtalk.train.api import load_pools

    monkeypatch.setitem(__import__("sys").modules, "benchmarks.synthetic", types.ModuleType("benchmarks.synthetic"))
    with pytest.raises(InputError, match="--data DIR"):
        load_pools(resolve_config("smoke"), None)
