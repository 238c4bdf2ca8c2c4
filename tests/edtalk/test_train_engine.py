"""Engine mechanics with a toy model that follows the EDTalk interface: run directory, resume equals
uninterrupted, atomic checkpoints under a hard kill, NaN stop, two-process gloo DDP."""
from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from train_fakes import fake_build, tiny_pool

from ablations.variants import resolve_config
from edtalk.train.config import apply_overrides
from edtalk.train.engine import Trainer, TrainingDiverged, param_checksum
from metrics.errors import CheckpointMismatchError, UserError
from metrics.utils import safe_torch_load

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def tiny_cfg(iters=4, variant="full", batch=2, **extra):
    cfg = resolve_config("smoke", variant, seed=3)
    return apply_overrides(cfg, {
        "stages": [dict(name=s.name, iterations=iters, batch_size=batch, trainable=s.trainable,
                        lr_schedule=s.lr_schedule) for s in cfg.stages],
        "checkpoint_every": 2, "log_every": 1, "sample_every": 2, "losses": {"perceptual": 0.0}, **extra})


def test_run_directory_contents(tmp_path):
    tr = Trainer(tiny_cfg(), tmp_path / "r", tiny_pool(), progress=False, build=fake_build)
    tr.prepare_run_dir(resume=False)
    out = tr.fit()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["seed"] == 3 and cfg["variant"] == "full"
    assert cfg["perceptual_net"] == "none"  # switched off for speed here; see test_train_parts
    prov = json.loads((out / "provenance.json").read_text())
    assert "git_hash" in prov and prov["versions"]["torch"]
    for stage in ("autoencoder", "mouth_pose", "expression"):
        assert (out / "checkpoints" / f"{stage}.pt").is_file()
        rows = list(csv.DictReader(open(out / "logs" / f"{stage}.csv")))
        assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
        assert (out / "samples" / f"{stage}_000004.png").is_file()
    mp = list(csv.DictReader(open(out / "logs" / "mouth_pose.csv")))[0]
    assert {"cross_l1", "fea_mouth", "fea_pose", "gan_g", "d_loss"} <= set(mp)
    assert any((out / "tb").iterdir())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["mouth_pose"]["iterations"] == 4
    assert (out / "model.pt").is_file()
    # A second start into the same directory without --resume is refused.
    with pytest.raises(UserError, match="--resume"):
        Trainer(tiny_cfg(), out, tiny_pool(), progress=False, build=fake_build).prepare_run_dir(resume=False)


def test_resume_after_kill_equals_uninterrupted(tmp_path):
    full = Trainer(tiny_cfg(), tmp_path / "a", tiny_pool(), progress=False, build=fake_build)
    full.prepare_run_dir(resume=False)
    full.fit()
    # Killed in stage 1 at global step 7: its last checkpoint is stage-1 step 2 (global 6).
    killed = Trainer(tiny_cfg(), tmp_path / "b", tiny_pool(), progress=False, build=fake_build, stop_after=7)
    killed.prepare_run_dir(resume=False)
    with pytest.raises(KeyboardInterrupt):
        killed.fit()
    resumed = Trainer(tiny_cfg(), tmp_path / "b", tiny_pool(), progress=False, build=fake_build)
    resumed.prepare_run_dir(resume=True)
    assert resumed.state["global_step"] == 6
    resumed.fit()
    assert param_checksum(resumed.model) == param_checksum(full.model)
    assert param_checksum(resumed.disc) == param_checksum(full.disc)
    for stage in ("autoencoder", "mouth_pose", "expression"):
        log = f"{stage}.csv"
        assert (tmp_path / "a" / "logs" / log).read_text() == (tmp_path / "b" / "logs" / log).read_text()


def test_resume_with_other_config_is_refused(tmp_path):
    tr = Trainer(tiny_cfg(), tmp_path / "r", tiny_pool(), progress=False, build=fake_build, stop_after=3)
    tr.prepare_run_dir(resume=False)
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    other = Trainer(tiny_cfg(variant="no-feature-loss"), tmp_path / "r", tiny_pool(), progress=False, build=fake_build)
    with pytest.raises(CheckpointMismatchError, match="different"):
        other.prepare_run_dir(resume=True)


def test_corrupt_checkpoint_is_a_user_error(tmp_path):
    out = tmp_path / "r"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    tr = Trainer(tiny_cfg(), out, tiny_pool(), progress=False, build=fake_build)
    with pytest.raises(CheckpointMismatchError, match="last.pt"):
        tr.prepare_run_dir(resume=True)


def test_hard_kill_during_checkpoint_write_keeps_last_good(tmp_path):
    """A process killed (os._exit, no cleanup) in the middle of writing a checkpoint leaves the
    previous checkpoint intact and loadable."""
    tr = Trainer(tiny_cfg(), tmp_path / "r", tiny_pool(), progress=False, build=fake_build, stop_after=2)
    tr.prepare_run_dir(resume=False)
    with pytest.raises(KeyboardInterrupt):
        tr.fit()
    last = tmp_path / "r" / "checkpoints" / "last.pt"
    before = last.read_bytes()
    script = textwrap.dedent(f"""
        import os, sys, torch
        sys.path[:0] = [{str(ROOT)!r}, {str(HERE)!r}]
        from metrics.utils import atomic_torch_save
        real_save = torch.save
        def dying_save(obj, f):
            f.write(b"partial checkpoint bytes" * 1000)
            f.flush()
            os._exit(9)  # killed mid-write
        torch.save = dying_save
        atomic_torch_save({{"x": 1}}, {str(last)!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == 9
    assert last.read_bytes() == before
    resumed = Trainer(tiny_cfg(), tmp_path / "r", tiny_pool(), progress=False, build=fake_build)
    resumed.prepare_run_dir(resume=True)
    assert resumed.state["global_step"] == 2


def test_nan_loss_stops_with_step_terms_and_keeps_checkpoint(tmp_path, monkeypatch):
    tr = Trainer(tiny_cfg(), tmp_path / "r", tiny_pool(), progress=False, build=fake_build)
    tr.prepare_run_dir(resume=False)
    calls = {"n": 0}
    real_l1 = __import__("edtalk.train.losses", fromlist=["l1"]).l1

    def flaky_l1(pred, target):
        calls["n"] += 1
        out = real_l1(pred, target)
        return out * float("nan") if calls["n"] == 3 else out  # third step of stage 0

    monkeypatch.setattr("edtalk.train.losses.l1", flaky_l1)
    with pytest.raises(TrainingDiverged, match=r"autoencoder step 3: non-finite loss \(rec_l1=nan"):
        tr.fit()
    ck = torch.load(tmp_path / "r" / "checkpoints" / "last.pt", weights_only=True)
    assert ck["state"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in ck["model"].values() if v.is_floating_point())


def test_each_stage_trains_only_its_groups(tmp_path):
    tr = Trainer(tiny_cfg(iters=2), tmp_path / "r", tiny_pool(), progress=False, build=fake_build)
    tr.prepare_run_dir(resume=False)
    snap = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.run_stage(0, tr.plan[0])
    after0 = {k: v.clone() for k, v in tr.model.state_dict().items()}
    changed = {k for k in snap if not torch.equal(snap[k], after0[k])}
    assert "expression_bank" not in changed and not any(k.startswith(("expression_head", "eem")) for k in changed)
    assert "mouth_bank" in changed and any(k.startswith("decoder") for k in changed)
    tr.run_stage(1, tr.plan[1])
    before2 = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.run_stage(2, tr.plan[2])
    changed2 = {k for k in before2 if not torch.equal(before2[k], tr.model.state_dict()[k])}
    assert changed2 and all(k.startswith(("expression_head", "expression_bank", "eem")) for k in changed2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_gloo_ddp_equals_one_process_with_the_global_batch(tmp_path):
    """torchrun-style launch (RANK/WORLD_SIZE env) of two CPU processes on gloo, 2 samples each, beside one
    process with 4: the same logged losses (L_fea and the mouth-box L1, not means over samples, included) and
    the same weights after every stage."""
    script = textwrap.dedent(f"""
        import os, sys, json
        sys.path[:0] = [{str(ROOT)!r}, {str(HERE)!r}]
        import torch
        torch.set_num_threads(1)
        from test_train_engine import tiny_cfg
        from train_fakes import fake_build, tiny_pool
        from edtalk.train.engine import Trainer
        world = int(os.environ.get("WORLD_SIZE", "1"))
        tr = Trainer(tiny_cfg(iters=3, batch=4 // world), sys.argv[1], tiny_pool(), progress=False,
                     build=fake_build)
        assert tr.cfg.losses.mouth and tr.cfg.losses.feature and tr.cfg.feature_loss
        tr.prepare_run_dir(resume=False)
        tr.fit()
        if world > 1:
            torch.distributed.destroy_process_group()
    """)
    base = {**os.environ, "OMP_NUM_THREADS": "1", "EDTALK_DEVICE": "cpu"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        base.pop(key, None)
    port = _free_port()
    launches = [(tmp_path / "one", base)] + [
        (tmp_path / "ddp", {**base, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
                            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}) for rank in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", script, str(out)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for out, env in launches]
    outs = [p.communicate(timeout=240)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    summary = json.loads((tmp_path / "ddp" / "summary.json").read_text())
    sums = summary["rank_checksums"]
    assert len(sums) == 2 and sums[0] == sums[1]
    assert json.loads((tmp_path / "ddp" / "config.json").read_text())["world_size"] == 2
    assert summary["global_step"] == 9
    # It trained: the final weights differ from the (seeded, identical) initial ones.
    fresh = Trainer(tiny_cfg(iters=3), tmp_path / "fresh", tiny_pool(), progress=False, build=fake_build)
    assert summary["checksum"] != param_checksum(fresh.model)
    for stage in ("autoencoder", "mouth_pose", "expression"):
        one, two = (list(csv.DictReader(open(tmp_path / run / "logs" / f"{stage}.csv"))) for run in ("one", "ddp"))
        assert len(one) == len(two) == 3 and one[0].keys() == two[0].keys()
        assert "rec_mouth" in one[0] and (stage != "mouth_pose" or {"fea_mouth", "fea_pose"} <= set(one[0]))
        for row_one, row_two in zip(one, two, strict=True):
            for term, value in row_one.items():
                # The logs keep 6 significant digits: both sides rounded, so 2e-5 relative.
                assert float(row_two[term]) == pytest.approx(float(value), rel=2e-5, abs=1e-6), (stage, term)
        weights = [safe_torch_load(tmp_path / run / "checkpoints" / f"{stage}.pt")["model"]
                   for run in ("one", "ddp")]
        for key, value in weights[0].items():
            # Adam divides by the gradient's scale, so float-rounding differences of near-zero gradients reach
            # ~1e-5; a term weighted differently moves weights by up to the lr (1.6e-3).
            torch.testing.assert_close(weights[1][key], value, rtol=1e-4, atol=1e-5, msg=(stage, key))


def _terms(variant):
    from torch.utils.data import default_collate

    from edtalk.train import stages as S
    from edtalk.train.data import PairDataset

    cfg = tiny_cfg(variant=variant)
    model, disc, _ = fake_build(cfg, 32)
    plan = __import__("edtalk.train.engine", fromlist=["stage_plan"]).stage_plan(cfg)
    scfg = plan[1] if len(plan) > 1 else plan[0]
    stage = S.build_stage(scfg, cfg, None)
    batch = default_collate([PairDataset(tiny_pool(), stage.kind, 4, 0)[i] for i in range(2)])
    return stage.generator_terms(model, disc, batch)[0], plan


def test_cross_reconstruction_and_feature_switches_change_the_loss_terms():
    full, _ = _terms("full")
    assert {"rec_l1", "cross_l1", "fea_mouth", "fea_pose", "gan_g"} <= set(full)
    no_cross, _ = _terms("no-cross-reconstruction")
    assert not any(k.startswith("cross_") for k in no_cross) and "fea_mouth" in no_cross
    no_fea, _ = _terms("no-feature-loss")
    assert "cross_l1" in no_fea and not any(k.startswith("fea_") for k in no_fea)


def test_joint_training_is_one_stage_that_trains_everything(tmp_path):
    from edtalk.train.config import ALL_GROUPS

    _, plan = _terms("joint-training")
    assert [s.name for s in plan] == ["joint"] and set(plan[0].trainable) == set(ALL_GROUPS)
    assert plan[0].iterations == 12  # the three stages' iterations together
    tr = Trainer(apply_overrides(tiny_cfg(variant="joint-training"), {}), tmp_path / "j", tiny_pool(),
                 progress=False, build=fake_build)
    tr.prepare_run_dir(resume=False)
    before = {k: v.clone() for k, v in tr.model.state_dict().items()}
    tr.plan[0].iterations = 2
    tr.fit()
    changed = {k.split(".")[0] for k, v in tr.model.state_dict().items() if not torch.equal(before[k], v)}
    assert {"encoder", "trunk", "mouth_head", "pose_head", "expression_head", "mouth_bank", "pose_bank",
            "expression_bank", "eem", "decoder"} <= changed


def test_train_run_api_writes_eval(tmp_path):
    from edtalk.train.api import train_run

    tiny = {"stages": [dict(name=n, iterations=2, batch_size=2, trainable=t) for n, t in
                       (("autoencoder", ("encoder", "decoder")), ("mouth_pose", ("mouth_head", "pose_head")),
                        ("expression", ("expression_head", "eem")))],
            "losses": {"perceptual": 0.0}, "log_every": 1, "checkpoint_every": 10, "sample_every": 10}
    no_eem = resolve_config("smoke", "no-eem", 1, tiny)
    out = train_run(no_eem, tmp_path / "run", progress=False, build=fake_build,
                    pools=(tiny_pool(), tiny_pool(identities=2, seed=9, split="test")))
    ev = json.loads((out / "eval.json").read_text())
    # 24 frames less each identity's source frame (not a target: copying it would score 148 dB).
    assert ev["reconstruction"]["n_frames"] == 22 and "psnr_copy_source_db" in ev["reconstruction"]
    assert set(ev["cross_driving"]["mean"]) == {"jaw_vs_mouth_driver", "jaw_vs_pose_driver", "yaw_vs_pose_driver",
                                                "yaw_vs_mouth_driver"}
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["variant"] == "no-eem" and cfg["model"]["eem"] is False
    # Only stage 1 again on a finished run: nothing left to do, returns the same directory.
    assert train_run(no_eem, out, stages=1, progress=False, build=fake_build, pools=(tiny_pool(), None)) == out
