"""The real EDTalk model (tiny size) under the trainer: each stage's step reduces its loss when
overfitting one batch, and each ablation switch changes the computation it should."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import default_collate
from train_fakes import tiny_pool

from ablations.variants import resolve_config
from edtalk.train import stages as S
from edtalk.train.config import apply_overrides
from edtalk.train.data import PairDataset
from edtalk.train.engine import build_models

SIZE = 16  # the smallest size the model supports: keeps these tests to seconds on 2 cores


def build(variant="full", **model):
    # LIA's random flow init: with the identity init the untrained decoder ignores every motion
    # coefficient, and these tests are about what the switches do to the computation.
    cfg = resolve_config("smoke", variant, seed=0, overrides={"flow_init": "release"})
    if model:
        cfg = apply_overrides(cfg, {"model": model})
    torch.manual_seed(0)
    gen, disc, mcfg = build_models(cfg, SIZE)
    return cfg, gen, disc, mcfg


def batch_for(kind, n=2, seed=0):
    ds = PairDataset(tiny_pool(size=SIZE), kind, 8, seed)
    return default_collate([ds[i] for i in range(n)])


@pytest.mark.parametrize("stage_index", [0, 1, 2])
def test_each_stage_overfits_one_batch(stage_index):
    cfg, gen, _, _ = build()
    cfg = apply_overrides(cfg, {"losses": {"perceptual": 0.0, "mouth": 0.0}})  # L1 alone keeps this fast
    scfg = cfg.stages[stage_index]
    stage = S.build_stage(dataclasses.replace(scfg, use_gan=False), cfg, None)
    params = S.set_trainable(gen, stage.trainable)
    opt = torch.optim.Adam(params, lr=3e-3)
    batch = batch_for(stage.kind)
    history = []
    for _ in range(8):
        terms = stage.generator_terms(gen, None, batch)[0]
        history.append(float(sum(v.detach() for k, v in terms.items() if k.endswith("l1"))))
        opt.zero_grad()
        sum(terms.values()).backward()
        opt.step()
    assert history[-1] < 0.95 * history[0], (scfg.name, history)


def test_orthogonality_switch():
    q = build()[1].bases_matrix()
    assert torch.allclose(q.T @ q, torch.eye(q.shape[1]), atol=1e-4)
    raw = build("no-orthogonality")[1].bases_matrix()
    assert not torch.allclose(raw.T @ raw, torch.eye(raw.shape[1]), atol=0.1)


def _output(gen, batch, change=None):
    lat, feats = gen.encode(batch["source"])
    c = gen.coefficients(gen.encode(batch["target"])[0])
    if change:
        c = {**c, change: c[change] + 3.0 * torch.randn_like(c[change])}
    return S.drive(gen, lat, feats, c, use_expression=True)


@pytest.mark.parametrize("factor", ["mouth", "pose", "expression"])
def test_bank_off_means_its_coefficients_do_not_change_the_output(factor):
    batch = batch_for("autoencoder")
    with torch.no_grad():
        # EEM runs on the expression direction: a valid config switches it off with the expression bank.
        gen = build(**{f"{factor}_bank": "off"}, **({"eem": False} if factor == "expression" else {}))[1]
        assert torch.equal(_output(gen, batch), _output(gen, batch, change=factor))
        full = build()[1]
        assert not torch.allclose(_output(full, batch), _output(full, batch, change=factor))


def test_no_banks_maps_heads_to_direct_latents():
    cfg, gen, _, mcfg = build("no-banks")
    assert mcfg.mouth_bank == mcfg.pose_bank == mcfg.expression_bank == "direct"
    c = gen.coefficients(torch.randn(2, mcfg.latent_dim))
    assert all(v.shape == (2, mcfg.latent_dim) for v in c.values())
    assert gen.bases() == {}


def test_no_eem_leaves_eem_untouched_in_stage_2():
    def stage2_changes(variant):
        cfg, gen, _, _ = build(variant)
        cfg = apply_overrides(cfg, {"losses": {"perceptual": 0.0}})
        stage = S.build_stage(dataclasses.replace(cfg.stages[2], use_gan=False), cfg, None)
        params = S.set_trainable(gen, stage.trainable)
        before = {k: v.clone() for k, v in gen.state_dict().items()}
        opt = torch.optim.Adam(params, lr=1e-2)
        sum(stage.generator_terms(gen, None, batch_for("expression"))[0].values()).backward()
        opt.step()
        return gen, {k for k, v in gen.state_dict().items() if not torch.equal(before[k], v)}

    gen, changed = stage2_changes("full")
    assert any("fineadainresblock" in k for k in changed) and any(k.startswith("exp_fc") for k in changed)
    assert not any(k.startswith(("enc.", "lip_fc", "pose_fc", "fc.", "direction_lipnonlip")) for k in changed)
    gen, changed = stage2_changes("no-eem")
    assert S.parameter_groups(gen)["eem"] == []
    assert not any("fineadainresblock" in k for k in changed) and any(k.startswith("exp_fc") for k in changed)


def test_resume_after_kill_equals_uninterrupted_with_the_real_model(tmp_path):
    """Killed mid stage 1 and resumed from its checkpoint, the real model ends bit-identical (CPU) to an
    uninterrupted run: weights, discriminator, optimiser moments and sampler position all restored."""
    from edtalk.train.engine import Trainer, param_checksum

    cfg = apply_overrides(resolve_config("smoke", "full", seed=1), {
        "stages": [dict(name=s.name, iterations=2, batch_size=2, trainable=s.trainable)
                   for s in resolve_config("smoke").stages],
        "checkpoint_every": 1, "log_every": 1, "sample_every": 100, "losses": {"perceptual": 0.0}})
    pool = tiny_pool(size=SIZE)
    a = Trainer(cfg, tmp_path / "a", pool, progress=False)
    a.prepare_run_dir(resume=False)
    a.fit()
    b = Trainer(cfg, tmp_path / "b", pool, progress=False, stop_after=3)
    b.prepare_run_dir(resume=False)
    with pytest.raises(KeyboardInterrupt):
        b.fit()
    c = Trainer(cfg, tmp_path / "b", pool, progress=False)
    c.prepare_run_dir(resume=True)
    c.fit()
    assert param_checksum(c.model) == param_checksum(a.model) and param_checksum(c.disc) == param_checksum(a.disc)


@pytest.mark.parametrize("kind_index", [0, 1])
def test_mouth_loss_switch_adds_a_mouth_term_per_reconstruction(kind_index):
    cfg, gen, _, _ = build()
    off = apply_overrides(cfg, {"losses": {"perceptual": 0.0, "mouth": 0.0}})
    on = apply_overrides(cfg, {"losses": {"perceptual": 0.0, "mouth": 2.0}})
    scfg = dataclasses.replace(cfg.stages[kind_index], use_gan=False)
    batch = batch_for(S.build_stage(scfg, on, None).kind)
    t_off = S.build_stage(scfg, off, None).generator_terms(gen, None, batch)[0]
    t_on = S.build_stage(scfg, on, None).generator_terms(gen, None, batch)[0]
    assert not any(k.endswith("mouth") and not k.startswith("fea") for k in t_off)
    expected = {"rec_mouth"} | ({"cross_mouth"} if kind_index == 1 else set())
    assert {k for k in t_on if k.endswith("_mouth") and not k.startswith("fea")} == expected
    # the term is weight × the masked L1, and the whole-frame terms are unchanged by it
    assert torch.allclose(t_on["rec_l1"], t_off["rec_l1"])
    assert float(t_on["rec_mouth"]) > 0
