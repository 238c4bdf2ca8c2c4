"""End to end (slow): the smoke preset of `full` trains stages 0–2 on the in-memory synthetic world,
reconstructs held-out identities better than copying the source, and follows two drivers at once."""
from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_smoke_full_end_to_end(tmp_path):
    from ablations.variants import resolve_config
    from benchmarks.synthetic.writer import synthesize_world
    from edtalk.train.api import train_run

    # The smoke world on disk (what `nox -s reproduce` trains on): 20 identities, 50-frame clips. The
    # small in-memory default world (24-frame clips) is too little data: there the model stays 0.4 dB
    # below copying the source on held-out faces (24.19 vs 24.60 dB, measured).
    world = synthesize_world(tmp_path / "world", "smoke", seed=0)
    out = train_run(resolve_config("smoke", "full"), tmp_path / "run", data_dir=world, progress=False)
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["stages"]) == {"autoencoder", "mouth_pose", "expression"}
    ev = json.loads((out / "eval.json").read_text())
    rec = ev["reconstruction"]
    assert rec["psnr_model_db"] > rec["psnr_copy_source_db"] + 1.0, rec
    cross = ev["cross_driving"]["mean"]
    # The output's mouth follows the mouth driver more than the pose driver, and its yaw the pose driver.
    assert cross["jaw_vs_mouth_driver"] > cross["jaw_vs_pose_driver"] + 0.2, cross
    assert cross["yaw_vs_pose_driver"] > cross["yaw_vs_mouth_driver"] + 0.2, cross
