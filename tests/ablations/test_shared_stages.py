"""Variants that share stages with `full` (Variant.shares_with_full): the claim is checked against the
computation, and a sweep starts them from full's checkpoint (the real model, tiny size)."""
from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "edtalk"))
from train_fakes import tiny_pool  # noqa: E402

from ablations.variants import (
    VARIANTS,  # noqa: E402
    resolve_config,  # noqa: E402
)
from edtalk.train import stages as S  # noqa: E402
from edtalk.train.api import train_run  # noqa: E402
from edtalk.train.config import STAGE_NAMES  # noqa: E402
from edtalk.train.data import PairDataset  # noqa: E402
from edtalk.train.engine import build_models  # noqa: E402
from metrics.errors import CheckpointMismatchError  # noqa: E402

SIZE = 16
SHARING = [v for v in VARIANTS.values() if v.shares_with_full]


def _model(variant):
    # LIA's random flow init, so every motion coefficient reaches the output (see test_train_switches)
    cfg = resolve_config("smoke", variant, seed=0, overrides={"flow_init": "release", "losses": {"perceptual": 0.0}})
    torch.manual_seed(0)
    return (cfg, *build_models(cfg, SIZE)[:1])


def test_sharing_variants_are_declared_as_expected():
    assert {v.name: v.shares_with_full for v in SHARING} == {
        "no-eem": ("autoencoder", "mouth_pose"), "no-expression-bank": ("autoencoder", "mouth_pose"),
        "no-cross-reconstruction": ("autoencoder",), "no-feature-loss": ("autoencoder",)}
    for v in SHARING:  # always a prefix of the staged plan
        assert v.shares_with_full == STAGE_NAMES[:len(v.shares_with_full)]


@pytest.mark.parametrize("variant", [v.name for v in SHARING])
def test_shared_stages_compute_exactly_what_full_computes(variant):
    """With full's weights copied in, every shared stage gives the same losses and the same gradients
    on every tensor it trains: the variant's switches do not act there."""
    cfg_f, full = _model("full")
    cfg_v, var = _model(variant)
    theirs = full.state_dict()
    var.load_state_dict({k: theirs[k] if k in theirs and theirs[k].shape == v.shape else v
                         for k, v in var.state_dict().items()})
    for name in VARIANTS[variant].shares_with_full:
        idx = STAGE_NAMES.index(name)
        sf = S.build_stage(dataclasses.replace(cfg_f.stages[idx], use_gan=False), cfg_f, None)
        sv = S.build_stage(dataclasses.replace(cfg_v.stages[idx], use_gan=False), cfg_v, None)
        ds = PairDataset(tiny_pool(size=SIZE), sf.kind, 4, seed=1)
        batch = default_collate([ds[i] for i in range(2)])
        grads = []
        for stage, model in ((sf, full), (sv, var)):
            S.set_trainable(model, stage.trainable)
            model.zero_grad()
            torch.manual_seed(5)  # the generator's noise inputs: the same draw for both
            terms = stage.generator_terms(model, None, batch)[0]
            sum(terms.values()).backward()
            named = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            grads.append(({k: float(v.detach()) for k, v in terms.items()}, named))
        (tf, gf), (tv, gv) = grads
        assert tf.keys() == tv.keys(), name
        assert all(abs(tf[k] - tv[k]) <= 1e-5 * max(1, abs(tf[k])) for k in tf), (name, tf, tv)
        assert gf.keys() == gv.keys(), name
        for k in gf:
            # up to float rounding (e.g. QR over a wider matrix gives the same first columns to ~1e-7)
            diff, scale = float((gf[k] - gv[k]).abs().max()), float(gf[k].abs().max())
            assert diff <= 1e-4 * scale + 1e-7, (name, k, diff, scale)


def test_a_variant_that_acts_in_stage_0_is_not_declared_sharing():
    # the check above must be able to fail: no-orthogonality changes stage 0's losses
    cfg_f, full = _model("full")
    cfg_v, var = _model("no-orthogonality")
    var.load_state_dict(full.state_dict())
    stage = S.build_stage(dataclasses.replace(cfg_f.stages[0], use_gan=False), cfg_f, None)
    ds = PairDataset(tiny_pool(size=SIZE), stage.kind, 4, seed=1)
    batch = default_collate([ds[i] for i in range(2)])
    torch.manual_seed(5)
    lf = float(sum(stage.generator_terms(full, None, batch)[0].values()).detach())
    torch.manual_seed(5)
    lv = float(sum(stage.generator_terms(var, None, batch)[0].values()).detach())
    assert abs(lf - lv) > 1e-6
    assert not VARIANTS["no-orthogonality"].shares_with_full


def _tiny(iters=2):
    cfg = resolve_config("smoke", "full", seed=3)
    return {"stages": [dict(name=s.name, iterations=iters, batch_size=2, trainable=s.trainable,
                            lr_schedule=s.lr_schedule, use_gan=s.use_gan) for s in cfg.stages],
            "checkpoint_every": 1, "log_every": 1, "sample_every": 100, "losses": {"perceptual": 0.0}}


def test_adopted_run_starts_from_the_parents_checkpoint_and_trains_only_the_rest(tmp_path):
    pools = (tiny_pool(size=SIZE), None)
    build = lambda cfg, size: build_models(cfg, SIZE)  # noqa: E731
    full = train_run(resolve_config("smoke", "full", 3, _tiny()), tmp_path / "full", progress=False, pools=pools,
                     build=build, evaluate=False)
    ckpt = full / "checkpoints" / "mouth_pose.pt"
    parent = torch.load(ckpt, weights_only=True)["model"]
    run = train_run(resolve_config("smoke", "no-eem", 3, _tiny()), tmp_path / "no-eem", progress=False, pools=pools,
                    build=build, evaluate=False, adopt=(ckpt, ("autoencoder", "mouth_pose")))
    shared = json.loads((run / "config.json").read_text())["shared_stages"]
    assert shared["stages"] == ["autoencoder", "mouth_pose"] and len(shared["sha256"]) == 64
    assert shared["tensors_own_init"] == []  # no-eem has no tensor full lacks
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stages"]["mouth_pose"]["shared_from"] == str(ckpt)
    assert summary["stages"]["expression"]["iterations"] == 2
    assert not (run / "logs" / "autoencoder.csv").exists()  # stages 0-1 did not run again
    # stage 2 trains only the expression head/bank (+EEM, absent here): the rest is full's, bit for bit
    final = torch.load(run / "model.pt", weights_only=True)["model"]
    for k, v in final.items():
        if not k.startswith(("exp_fc", "direction_exp")):
            assert torch.equal(v, parent[k]), k
    # a checkpoint that did not finish the stages it should stand in for is refused
    with pytest.raises(CheckpointMismatchError, match="completed stages"):
        train_run(resolve_config("smoke", "no-eem", 3, _tiny()), tmp_path / "bad", progress=False, pools=pools,
                  build=build, evaluate=False, adopt=(full / "checkpoints" / "autoencoder.pt",
                                                      ("autoencoder", "mouth_pose")))


def test_adopting_refuses_a_parent_without_the_shared_tensors(tmp_path):
    pools = (tiny_pool(size=SIZE), None)
    build = lambda cfg, size: build_models(cfg, SIZE)  # noqa: E731
    # a no-banks run's mouth/pose heads have other shapes than full's: it cannot stand in for full's stage 0
    nb_cfg = resolve_config("smoke", "no-banks", 3,
                            {**_tiny(), "stages": _tiny()["stages"][:1] + _tiny()["stages"][1:]})
    nb = train_run(nb_cfg, tmp_path / "nb", progress=False, pools=pools, build=build, evaluate=False)
    with pytest.raises(CheckpointMismatchError, match="lacks"):
        train_run(resolve_config("smoke", "no-cross-reconstruction", 3, _tiny()), tmp_path / "x", progress=False,
                  pools=pools, build=build, evaluate=False,
                  adopt=(nb / "checkpoints" / "autoencoder.pt", ("autoencoder",)))
