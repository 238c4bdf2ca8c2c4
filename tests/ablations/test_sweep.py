"""The sweep driver: skips finished runs, resumes killed ones, isolates failures (training and
evaluation are replaced by fast fakes that write what the real ones write)."""
import json
import os

import numpy as np
import pytest

from ablations import sweep as sw
from metrics.errors import UserError


@pytest.fixture
def fake_world(tmp_path, monkeypatch):
    calls = {"train": [], "evaluate": [], "adopt": {}}
    boom = {"variant": None, "interrupt": None}

    def train_run(cfg, run_dir, data_dir=None, resume=False, progress=True, adopt=None, real=None):
        variant, seed = cfg.variant, cfg.seed
        calls["train"].append((variant, seed, resume))
        calls["adopt"][(variant, seed)] = adopt
        if boom["interrupt"] == variant:
            (run_dir / "checkpoints").mkdir(exist_ok=True)
            (run_dir / "checkpoints" / "last.pt").write_bytes(b"x")
            raise KeyboardInterrupt  # a kill: nothing may be marked done
        if boom["variant"] == variant:
            raise RuntimeError("loss is nan at step 3")
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        for stage in ("autoencoder", "mouth_pose", "expression", "last"):
            (run_dir / "checkpoints" / f"{stage}.pt").write_bytes(b"ckpt")
        (run_dir / "model.pt").write_bytes(b"model")
        (run_dir / "eval.json").write_text("{}")  # the real train_run's held-out check, written last

    def score_run(protocol, out, run_dir, data=None, progress=True, setting="video"):
        from benchmarks.protocols.engine import Case, evaluate

        calls["evaluate"].append(str(run_dir))
        variant = json.loads((run_dir / "status.json").read_text())["v"] if (run_dir / "status.json").exists() else None
        cases = [Case(f"c{i}") for i in range(4)]
        bias = sum(map(ord, run_dir.name)) % 7
        evaluate(protocol, lambda c: np.zeros((2, 8, 8, 3), np.uint8), cases,
                 lambda c, f: {m: float(bias + int(c.name[1:])) for m in ("psnr", "ssim", "m_lmd", "f_lmd",
                                                                         "pose_err", "acc_emo", "sync_conf")},
                 out, method_info={"variant": run_dir.name.split("-s")[0], "run_dir": str(run_dir)}, progress=False)
        return variant

    monkeypatch.setattr("edtalk.train.api.train_run", train_run)
    monkeypatch.setattr("edtalk.method.score_run", score_run)
    monkeypatch.setattr("benchmarks.evaluators.load_evaluators",
                        lambda data, progress=False: type("E", (), {"validation": {"ok": 1}, "meta": {}})())
    data = tmp_path / "world"
    data.mkdir()
    (data / "world.json").write_text("{}")  # what makes it a synthetic world (a real protocol refuses it)
    return calls, boom, data


def test_rerun_skips_finished_runs_and_collects_from_run_dirs(tmp_path, fake_world):
    calls, _, data = fake_world
    out = tmp_path / "sweep"
    s1 = sw.run_sweep("synthetic-smoke", "full,no-eem", 2, out, data, jobs=1, progress=False)
    assert len(s1["runs"]) == 4 and not s1["failed"]
    assert len(calls["train"]) == 4
    before = {p: p.read_bytes() for p in out.glob("runs/*/results.json")}
    s2 = sw.run_sweep("synthetic-smoke", "full,no-eem", 2, out, data, jobs=1, progress=False)
    assert len(calls["train"]) == 4 and len(s2["runs"]) == 4  # nothing redone
    assert before == {p: p.read_bytes() for p in out.glob("runs/*/results.json")}
    assert json.loads((out / "evaluators.json").read_text())["validation"] == {"ok": 1}


def test_failing_run_is_isolated_and_fail_fast_stops(tmp_path, fake_world):
    calls, boom, data = fake_world
    boom["variant"] = "no-eem"
    s = sw.run_sweep("synthetic-smoke", "no-eem,full", 1, tmp_path / "a", data, jobs=1, progress=False)
    assert [r["key"].split("-s")[0] for r in s["runs"]] == ["full"]
    assert "loss is nan" in s["failed"][0]["error"]
    with pytest.raises(UserError, match="no-eem"):
        sw.run_sweep("synthetic-smoke", "no-eem,full", 1, tmp_path / "b", data, jobs=1, keep_going=False,
                     progress=False)


def test_killed_sweep_resumes_the_interrupted_run_only(tmp_path, fake_world):
    calls, boom, data = fake_world
    out = tmp_path / "sweep"
    boom["interrupt"] = "no-eem"
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep("synthetic-smoke", "full,no-eem", 1, out, data, jobs=1, progress=False)
    boom["interrupt"] = None
    s = sw.run_sweep("synthetic-smoke", "full,no-eem", 1, out, data, jobs=1, progress=False)
    assert len(s["runs"]) == 2
    trained = [(v, r) for v, _, r in calls["train"]]
    assert trained == [("full", False), ("no-eem", False), ("no-eem", True)]  # resumed from its checkpoint


def test_changed_sweep_definition_is_refused(tmp_path, fake_world):
    _, _, data = fake_world
    out = tmp_path / "sweep"
    sw.run_sweep("synthetic-smoke", "full", 1, out, data, jobs=1, progress=False)
    with pytest.raises(UserError, match="another protocol"):
        sw.run_sweep("synthetic-study", "full", 1, out, data, jobs=1, progress=False)


def test_run_key_depends_on_variant_seed_and_config():
    a = sw.RunSpec("full", 0, "smoke", "synthetic-smoke", "/d", "/o")
    assert a.key.startswith("full-s0-") and a.key != sw.RunSpec("full", 1, "smoke", "synthetic-smoke", "/d", "/o").key
    assert a.config_hash != sw.RunSpec("no-eem", 0, "smoke", "synthetic-smoke", "/d", "/o").config_hash


def test_runs_of_an_older_config_are_set_aside_not_reported(tmp_path, fake_world, monkeypatch):
    calls, _, data = fake_world
    out = tmp_path / "sweep"
    sw.run_sweep("synthetic-smoke", "full", 1, out, data, jobs=1, progress=False)
    old_key = sw.RunSpec("full", 0, "smoke", "synthetic-smoke", str(data.resolve()), str(out)).key
    # An upgrade changes the smoke preset: the same (variant, seed) now resolves to another hash.
    monkeypatch.setattr(sw.RunSpec, "config_hash", property(lambda self: "0badc0de"))
    s = sw.run_sweep("synthetic-smoke", "full", 1, out, data, jobs=1, progress=False)
    assert [r["key"] for r in s["runs"]] == ["full-s0-0badc0de"] and len(calls["train"]) == 2
    assert (out / "superseded" / old_key / "results.json").is_file()  # kept, not deleted
    from reports.collect import collect_results

    assert [r["path"].parent.name for r in collect_results(out)] == ["full-s0-0badc0de"]


def _specs(root, variants):
    return [sw.RunSpec(v, 0, "smoke", "synthetic-smoke", str(root), str(root)) for v in variants]


def test_local_parallel_runs_in_separate_processes_with_a_share_of_the_cores(tmp_path):
    from sweep_workers import record

    names = ["full", "no-orthogonality", "no-banks"]
    sw._local_parallel(_specs(tmp_path, names), jobs=2, cores=2, keep_going=True, progress=False, worker=record)
    runs = {v: json.loads((tmp_path / f"{v}.json").read_text()) for v in names}
    assert all(r["threads"] == 1 for r in runs.values())  # never more threads than cores
    assert runs["full"]["pid"] != runs["no-orthogonality"]["pid"]
    assert os.getpid() not in {r["pid"] for r in runs.values()}
    # four cores, two runs: each gets two
    sw._local_parallel(_specs(tmp_path / "x", ["full", "no-banks"]), jobs=2, cores=4, keep_going=True, progress=False,
                       worker=record)
    assert [json.loads((tmp_path / "x" / f"{v}.json").read_text())["threads"] for v in ["full", "no-banks"]] == [2, 2]


def test_local_parallel_fail_fast_raises_and_keep_going_finishes(tmp_path):
    from sweep_workers import record

    with pytest.raises(UserError, match="no-eem"):
        sw._local_parallel(_specs(tmp_path / "ff", ["no-eem", "full"]), jobs=2, cores=2, keep_going=False,
                           progress=False, worker=record)
    sw._local_parallel(_specs(tmp_path / "kg", ["no-eem", "full", "no-banks"]), jobs=2, cores=2, keep_going=True,
                       progress=False, worker=record)
    assert {p.stem for p in (tmp_path / "kg").glob("*.json")} == {"no-eem", "full", "no-banks"}


def test_default_jobs_is_one_per_core_on_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert sw.default_jobs(2) == 2 and sw.default_jobs(1) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert sw.default_jobs(16) == 1


def test_stage_sharing_variants_start_from_fulls_checkpoint_after_it(tmp_path, fake_world):
    calls, _, data = fake_world
    out = tmp_path / "sweep"
    s = sw.run_sweep("synthetic-smoke", "no-eem,no-orthogonality,full", 2, out, data, jobs=1, progress=False)
    assert len(s["runs"]) == 6 and not s["failed"]
    order = [v for v, _, _ in calls["train"]]
    assert order.index("full") < order.index("no-eem") and order[-2:] == ["no-eem", "no-eem"]
    keys = {(r["key"].rsplit("-s", 1)[0], int(r["key"].rsplit("-s", 1)[1].split("-")[0])): r["key"] for r in s["runs"]}
    for seed in (0, 1):
        ckpt, stages = calls["adopt"][("no-eem", seed)]
        assert stages == ("autoencoder", "mouth_pose")
        assert ckpt == out / "runs" / keys[("full", seed)] / "checkpoints" / "mouth_pose.pt"  # same seed's full
        assert calls["adopt"][("no-orthogonality", seed)] is None and calls["adopt"][("full", seed)] is None
    # the shared run's key differs from a standalone one's; without full (or with sharing off) none is shared
    standalone = sw.make_spec("no-eem", 0, "smoke", "synthetic-smoke", str(data), str(out), share=False)
    assert standalone.key != keys[("no-eem", 0)]
    calls["adopt"].clear()
    s2 = sw.run_sweep("synthetic-smoke", "no-eem", 1, tmp_path / "alone", data, jobs=1, progress=False)
    assert calls["adopt"] == {("no-eem", 0): None} and len(s2["runs"]) == 1
    calls["adopt"].clear()
    sw.run_sweep("synthetic-smoke", "full,no-eem", 1, tmp_path / "off", data, jobs=1, progress=False,
                 share_stages=False)
    assert calls["adopt"] == {("full", 0): None, ("no-eem", 0): None}


def test_a_shared_run_whose_parent_failed_fails_with_the_reason(tmp_path, fake_world):
    calls, boom, data = fake_world
    boom["variant"] = "full"
    s = sw.run_sweep("synthetic-smoke", "full,no-eem", 1, tmp_path / "s", data, jobs=1, progress=False)
    errors = {f["key"].split("-s")[0]: f["error"] for f in s["failed"]}
    assert "loss is nan" in errors["full"]
    assert "mouth_pose checkpoint" in errors["no-eem"] and "loss is nan" in errors["no-eem"]
    assert [v for v, _, _ in calls["train"]] == ["full"]  # no-eem did not train from scratch instead


def test_ray_runs_one_task_per_run_on_a_local_instance(tmp_path):
    ray = pytest.importorskip("ray")
    import sweep_workers
    from ray import cloudpickle  # Ray's own copy: what it pickles tasks with

    cloudpickle.register_pickle_by_value(sweep_workers)  # Ray's workers do not have tests/ on their path
    try:
        names = ["full", "no-orthogonality"]
        out = sw._ray_run("local", _specs(tmp_path, names), threads=1, fail_fast=False, worker=sweep_workers.record)
        assert sorted(st["key"] for st in out) == names
        runs = [json.loads((tmp_path / f"{v}.json").read_text()) for v in names]
        assert os.getpid() not in {r["pid"] for r in runs} and all(r["threads"] == 1 for r in runs)
        with pytest.raises(UserError, match="no-eem"):
            sw._ray_run("local", _specs(tmp_path / "ff", ["no-eem"]), threads=1, fail_fast=True,
                        worker=sweep_workers.record)
    finally:
        cloudpickle.unregister_pickle_by_value(sweep_workers)
        ray.shutdown()


def test_a_run_killed_between_model_and_held_out_check_finishes_the_check(tmp_path, fake_world):
    calls, _, data = fake_world
    out = tmp_path / "sweep"
    sw.run_sweep("synthetic-smoke", "full", 1, out, data, jobs=1, progress=False)
    run_dir = next((out / "runs").iterdir())
    (run_dir / "eval.json").unlink()  # killed after model.pt, before eval.json
    (run_dir / "status.json").unlink()
    calls["train"].clear()
    sw.run_sweep("synthetic-smoke", "full", 1, out, data, jobs=1, progress=False)
    assert calls["train"] == [("full", 0, True)] and (run_dir / "eval.json").exists()  # resumed, not restarted
