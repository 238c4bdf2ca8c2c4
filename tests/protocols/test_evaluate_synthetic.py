"""`edtalk evaluate` on the synthetic world end to end: a (tiny, untrained) run scored by the world's
evaluators, resumable, with confusion and disentanglement files, rendered by the report."""
import dataclasses
import json

import numpy as np
import pytest
import torch

from benchmarks.synthetic.writer import Preset, synthesize_world


@pytest.fixture(scope="module")
def world_and_run(tmp_path_factory):
    from benchmarks.evaluators import train_evaluators
    from edtalk.model import EDTalk
    from edtalk.presets import model_preset

    root = tmp_path_factory.mktemp("e2e")
    preset = Preset(identities=4, test_identities=2, emotions=("angry", "happy", "neutral", "sad"),
                    levels=(3,), clips_per_level=1, n_frames=12, size=64)
    world = synthesize_world(root / "world", preset, seed=5)
    train_evaluators(world, config="tiny", seed=0, device="cpu", progress=False, threads=1)
    torch.manual_seed(0)
    cfg = model_preset("smoke")
    run = root / "runs" / "full-s0"
    run.mkdir(parents=True)
    torch.save({"format": "edtalk-bench/model@1", "model_config": dataclasses.asdict(cfg),
                "model": EDTalk(cfg).state_dict(), "variant": "full"}, run / "model.pt")
    (run / "config.json").write_text(json.dumps({"seed": 0}))
    return world, run


def test_evaluate_run_writes_results_confusion_and_disentanglement(world_and_run, tmp_path):
    from edtalk.cli import main
    from edtalk.method import score_run

    world, run = world_and_run
    out = run / "results.json"
    assert main(["evaluate", "--protocol", "synthetic-smoke", "--run", str(run), "--data", str(world),
                 "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["aggregates"]) == {"psnr", "ssim", "m_lmd", "f_lmd", "pose_err", "acc_emo", "sync_conf"}
    assert res["method"]["variant"] == "full" and res["method"]["seed"] == 0
    assert len(res["per_sample"]) == 8 and res["provenance"]["evaluator_weights"]["evaluators"]["validation"]
    conf = json.loads((run / "confusion.json").read_text())
    assert sum(map(sum, conf["matrix"])) == 8
    dis = json.loads((run / "disentanglement.json").read_text())
    assert len(dis["leakage"]["matrix"]) == 3 and dis["bank_geometry"]["orthonormality_error"] < 1e-4
    # the protocol's cross-driving: its tuples, with the reference read from the world's render of the truth
    assert dis["n_tuples"] == 4 and dis["n_frames"] <= 25 and dis["reference"] == "reader"
    assert np.allclose(np.diagonal(np.array(dis["reader_floor"]["matrix"], dtype=float)), 1.0)
    # Re-evaluating reads the finished rows instead of recomputing: identical aggregates.
    again = score_run("synthetic-smoke", out, run, data=world, progress=False)
    assert again["aggregates"] == res["aggregates"]

    from reports import render_report

    paths = render_report(run.parent, html=True, pdf=False, out=tmp_path / "r.html")
    html = paths["html"].read_text()
    assert "synthetic-smoke" in html and "pose_err" in html


def test_evaluate_refuses_what_the_protocol_cannot_score(world_and_run, tmp_path, monkeypatch, capsys):
    from benchmarks.protocols.registry import PROTOCOLS
    from edtalk.cli import main

    world, run = world_and_run
    # Every built-in synthetic protocol is at 64 px, so a 128-px one is registered for the size check.
    wide = dataclasses.replace(PROTOCOLS["synthetic-study"], name="synthetic-study-128", size=128)
    monkeypatch.setitem(PROTOCOLS, wide.name, wide)
    assert main(["evaluate", "--protocol", wide.name, "--run", str(run), "--data", str(world),
                 "--out", str(tmp_path / "r.json")]) == 2  # 128-px protocol on a 64-px world
    assert "defined at 128 px" in capsys.readouterr().err
    assert main(["evaluate", "--protocol", "mead-edtalk", "--run", str(run), "--out", str(tmp_path / "r.json")]) == 2
    assert not (tmp_path / "r.json").exists()
