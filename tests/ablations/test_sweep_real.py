"""`edtalk sweep --protocol mead-edtalk` (issue 18): each run trains on the MEAD train list, generates the test
list with its own model and scores it with the real metrics; `edtalk report SWEEP` lists every run.

The fast tests replace training, generation and scoring with fakes that write what the real ones write (the
plumbing: options reach each step, resume, labels, refusals); the slow one runs everything on the real-face
mini MEAD with stand-in evaluator weights.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from ablations import sweep as sw
from edtalk.cli import main
from metrics.errors import InputError

TRAIN = ("M003#neutral#level_1#001", "M003#angry#level_3#001", "M030#neutral#level_1#001", "M030#happy#level_2#002")
TEST = ("W009#sad#level_2#003",)
REAL_METRICS = ("psnr", "ssim", "m_lmd", "f_lmd", "fid", "fid_eat", "sync_conf", "lse_d", "acc_emo", "lpips", "csim",
                "pose_err")


@pytest.fixture
def fake_real(tmp_path, monkeypatch):
    """A MEAD-shaped root (no clips are read) and fakes of train_run, generate_test_set, evaluate_protocol."""
    calls = {"train": [], "audio": [], "generate": [], "evaluate": [], "prepare": 0}
    boom = {"evaluate": None}

    def train_run(cfg, run_dir, data_dir=None, resume=False, progress=True, adopt=None, real=None):
        calls["train"].append({"variant": cfg.variant, "steps": [s.iterations for s in cfg.stages], "real": real,
                               "adopt": adopt})
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        for stage in ("autoencoder", "mouth_pose", "expression", "last"):
            (run_dir / "checkpoints" / f"{stage}.pt").write_bytes(b"ckpt")
        (run_dir / "model.pt").write_bytes(b"model")
        (run_dir / "eval.json").write_text("{}")

    def train_audio_on_real(run_dir, root, dataset, *, lists=None, limit_clips=None, cache=None, preset="smoke",
                            seed=0, cfg=None, max_steps=None, resume=False):
        calls["audio"].append({"run": run_dir.name, "dataset": dataset, "max_steps": max_steps, "resume": resume,
                               "targets": cfg.targets})
        (run_dir / "audio").mkdir(exist_ok=True)
        (run_dir / "audio" / "results.json").write_text("{}")

    def generate_test_set(protocol, data, out, *, setting=None, run=None, lists=None, progress=True,
                          match_ground_truth_size=False):
        calls["generate"].append({"run": str(run), "setting": setting, "lists": lists,
                                  "match": match_ground_truth_size})
        out.mkdir(parents=True, exist_ok=True)
        method = {"name": f"{run.name}-{setting}", "setting": setting}
        (out / "generate.json").write_text(json.dumps({"method": method}))

    def evaluate_protocol(protocol, out, *, videos=None, data=None, lists=None, metrics=None, progress=True,
                          real_options=None):
        from benchmarks.protocols.engine import Case, evaluate

        calls["evaluate"].append({"videos": str(videos), "metrics": metrics, "options": real_options})
        if boom["evaluate"] is not None and boom["evaluate"] in str(videos):
            raise KeyboardInterrupt  # a kill while scoring
        bias = sum(map(ord, str(videos))) % 5
        names = metrics or [m for m in REAL_METRICS if m not in ("fid", "fid_eat")]  # the fake scores clip-level ones
        return evaluate(protocol, lambda c: np.zeros((2, 8, 8, 3), np.uint8), [Case(n) for n in TEST],
                        lambda c, f: {m: 1.0 + bias for m in names}, out, metrics=names,
                        method_info={"kind": "videos", "name": videos.name, "path": str(videos)}, progress=False)

    def prepare(proto, data, real, size, progress=True):
        calls["prepare"] += 1
        return {}

    monkeypatch.setattr("edtalk.train.api.train_run", train_run)
    monkeypatch.setattr("edtalk.generate.generate_test_set", generate_test_set)
    monkeypatch.setattr("edtalk.train.audio_real.train_audio_on_real", train_audio_on_real)
    monkeypatch.setattr("benchmarks.protocols.api.evaluate_protocol", evaluate_protocol)
    monkeypatch.setattr("ablations.real_sweep.prepare", prepare)
    data = tmp_path / "MEAD"
    (data / "M003").mkdir(parents=True)
    lists = tmp_path / "lists"
    lists.mkdir()
    return calls, boom, data, lists


CLIP_METRICS = "psnr,ssim,m_lmd,f_lmd,sync_conf,lse_d,acc_emo,lpips,csim,pose_err"


def _sweep(data, lists, out, *extra):
    return main(["sweep", "--protocol", "mead-edtalk", "--data", str(data), "--lists", str(lists), "--variants",
                 "full,no-eem", "--seeds", "1", "--max-steps", "2", "--preset", "smoke", "--jobs", "1",
                 "--unverified-weights", "--fid-resamples", "5", "--metrics", CLIP_METRICS, "--out", str(out), *extra])


def test_real_sweep_trains_generates_scores_and_reports_every_run(fake_real, tmp_path, capsys):
    calls, _, data, lists = fake_real
    out = tmp_path / "sweep"
    assert _sweep(data, lists, out) == 0
    # Each run trains on MEAD with the sweep's options; no-eem takes stages 0-1 from full's run.
    assert [c["variant"] for c in calls["train"]] == ["full", "no-eem"]
    assert all(c["steps"] == [2, 2, 2] for c in calls["train"])
    assert calls["train"][0]["real"] == {"dataset": "mead", "lists": str(lists.resolve()), "limit_clips": None,
                                         "cache": None}
    assert calls["train"][1]["adopt"][1] == ("autoencoder", "mouth_pose")
    # EDTalk-A by default, as the paper's ablations: each run trains its own audio stage on the same clips.
    assert [(a["run"].split("-s0")[0], a["max_steps"], a["targets"]) for a in calls["audio"]] == \
        [("full", 2, "model"), ("no-eem", 2, "model")]  # real video has no ground truth: the run's model gives them
    assert all(g["setting"] == "audio" and g["lists"] == str(lists.resolve()) and g["match"]
               for g in calls["generate"])
    assert calls["evaluate"][0]["metrics"] == CLIP_METRICS.split(",")
    assert calls["evaluate"][0]["options"] == {"verify_weights": False, "fid_resamples": 5,
                                               "gt_cache": out / "gt-cache"}
    assert calls["prepare"] == 1  # the training clips are prepared once, before the runs
    results = sorted(out.glob("runs/*/results.json"))
    methods = [json.loads(p.read_text())["method"] for p in results]
    assert [(m["variant"], m["seed"]) for m in methods] == [("full", 0), ("no-eem", 0)]
    assert all(m["generated"]["setting"] == "audio" and m["run_dir"] == str(p.parent) for m, p in
               zip(methods, results, strict=True))
    definition = json.loads((out / "sweep.json").read_text())
    assert definition["max_steps"] == 2 and definition["real"]["dataset"] == "mead"
    # A second sweep finds everything done: nothing trains, generates or scores again.
    n = {k: len(v) for k, v in calls.items() if isinstance(v, list)}
    assert _sweep(data, lists, out) == 0
    assert {k: len(v) for k, v in calls.items() if isinstance(v, list)} == n and calls["prepare"] == 1
    capsys.readouterr()
    assert main(["report", str(out), "--html", "--out", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "table1.html").read_text()
    assert 'data-method="full"' in html and 'data-method="no-eem"' in html
    for label in ("PSNR", "SSIM", "M-LMD", "F-LMD", "Sync_conf", "LSE-D", "Acc_emo", "LPIPS", "CSIM", "Pose err"):
        assert label in html


def test_a_sweep_killed_while_scoring_redoes_only_that_score(fake_real, tmp_path):
    calls, boom, data, lists = fake_real
    out = tmp_path / "sweep"
    boom["evaluate"] = "no-eem"
    assert _sweep(data, lists, out) != 0  # the CLI reports the interruption
    boom["evaluate"] = None
    trained = len(calls["train"])
    assert _sweep(data, lists, out) == 0
    assert len(calls["train"]) == trained  # no-eem's model.pt and held-out check exist: not trained again
    assert [e["videos"].split("/runs/")[1].split("-s0")[0] for e in calls["evaluate"]] == ["full", "no-eem", "no-eem"]
    assert len(list(out.glob("runs/*/results.json"))) == 2


def test_changed_real_options_make_new_runs_and_set_the_old_ones_aside(fake_real, tmp_path):
    calls, _, data, lists = fake_real
    out = tmp_path / "sweep"
    assert _sweep(data, lists, out) == 0
    old = sorted(p.name for p in (out / "runs").iterdir())
    assert _sweep(data, lists, out, "--limit-clips", "3") == 0
    assert calls["train"][-1]["real"]["limit_clips"] == 3
    assert sorted(p.name for p in (out / "superseded").iterdir()) == old
    assert not set(old) & {p.name for p in (out / "runs").iterdir()}


def test_a_real_protocol_refuses_a_synthetic_world_and_vice_versa(fake_real, tmp_path):
    calls, _, data, lists = fake_real
    world = tmp_path / "world"
    world.mkdir()
    (world / "world.json").write_text("{}")
    with pytest.raises(InputError, match="is a synthetic world, but --protocol mead-edtalk trains and scores real"):
        sw.run_sweep("mead-edtalk", "full", 1, tmp_path / "a", world, progress=False)
    with pytest.raises(InputError, match="is not a synthetic world .* for MEAD/HDTF use --protocol mead-edtalk"):
        sw.run_sweep("synthetic-smoke", "full", 1, tmp_path / "b", data, progress=False)
    with pytest.raises(InputError, match="--lists, --limit-clips only apply to the real protocols"):
        sw.run_sweep("synthetic-smoke", "full", 1, tmp_path / "c", world, progress=False,
                     real={"lists": str(lists), "limit_clips": 2})
    with pytest.raises(InputError, match="--dataset hdtf does not match --protocol mead-edtalk"):
        sw.run_sweep("mead-edtalk", "full", 1, tmp_path / "d", data, progress=False, real={"dataset": "hdtf"})
    with pytest.raises(InputError, match="has no metric 'lse_c'"):
        sw.run_sweep("mead-edtalk", "full", 1, tmp_path / "e", data, progress=False, real={"metrics": "psnr,lse_c"})
    with pytest.raises(InputError, match="--max-steps must be at least 1"):
        sw.run_sweep("mead-edtalk", "full", 1, tmp_path / "f", data, progress=False, max_steps=0)
    assert not calls["train"] and not (tmp_path / "a").exists()


def test_video_setting_skips_the_audio_stage_and_is_another_run(fake_real, tmp_path):
    calls, _, data, lists = fake_real
    out = tmp_path / "sweep"
    assert _sweep(data, lists, out, "--setting", "video") == 0
    assert not calls["audio"] and {g["setting"] for g in calls["generate"]} == {"video"}
    video_runs = {p.name for p in (out / "runs").iterdir()}
    assert _sweep(data, lists, out) == 0  # audio: other results, so other runs (the video ones are set aside)
    assert len(calls["audio"]) == 2 and {p.name for p in (out / "superseded").iterdir()} == video_runs


@pytest.mark.slow  # trains 2 variants x 3 stages, generates and scores with every evaluator: minutes on 2 cores
def test_tiny_mead_sweep_reaches_its_report_with_every_real_metric(tmp_path, monkeypatch, capsys):
    pytest.importorskip("dlib")
    from benchmarks.datasets.mini_mead import build_mini_mead, write_lists
    from metrics.standin import write_evaluator_standins

    # 256-px clips: SyncNet's face track (syncnet_python's 100-px minimum face) finds the face; the smoke model's
    # 64-px frames are written at the clip's size.
    built = build_mini_mead(tmp_path / "MEAD", TRAIN + TEST, n_frames=10, size=256, lists_dir=tmp_path / "lists")
    write_lists(tmp_path / "lists", TEST, TRAIN)  # the mini speakers are official test speakers: lists of our own
    write_evaluator_standins(tmp_path / "weights", seed=0)
    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path / "weights"))
    out = tmp_path / "sweep"
    assert main(["sweep", "--protocol", "mead-edtalk", "--data", str(built["root"]), "--lists", str(tmp_path / "lists"),
                 "--variants", "full,no-eem", "--seeds", "1", "--max-steps", "2", "--preset", "smoke",
                 "--unverified-weights", "--fid-resamples", "5", "--out", str(out)]) == 0
    for path in sorted(out.glob("runs/*/results.json")):
        res = json.loads(path.read_text())
        assert set(REAL_METRICS) <= set(res["aggregates"]), path
        missing = [m for m in REAL_METRICS if res["aggregates"][m]["mean"] is None and m not in ("fid", "fid_eat")]
        assert not missing, (path, missing)
        assert res["method"]["generated"]["setting"] == "audio"  # EDTalk-A: the paper's ablations are audio-driven
    capsys.readouterr()
    assert main(["report", str(out), "--html", "--out", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "table1.html").read_text()
    assert 'data-method="full"' in html and 'data-method="no-eem"' in html
    for label in ("PSNR", "SSIM", "M-LMD", "F-LMD", "FID", "FID (EAT)", "Sync_conf", "LSE-D", "Acc_emo", "LPIPS",
                  "CSIM", "Pose err"):
        assert label in html
