"""Issue 17's CLI loop end to end on a MEAD-layout mini dataset of real-face clips, with seeded stand-ins of the
release's checkpoints and of every evaluator (and the real dlib models):

    edtalk data crop RAW --out MEAD -> edtalk generate (EDTalk-A; copy-source) -> edtalk evaluate -> edtalk report

Slow (the 256-px generator and every evaluator on CPU: minutes), so marked slow.
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from edtalk.cli import main

pytest.importorskip("dlib")

CASES = ("M003#angry#level_3#001", "W009#sad#level_2#003")


@pytest.mark.slow
def test_crop_generate_evaluate_report(tmp_path, official_standins, monkeypatch, capsys):
    from benchmarks.datasets.mini_mead import build_mini_mead
    from metrics.standin import write_evaluator_standins

    data = build_mini_mead(tmp_path / "raw", CASES, n_frames=10, lists_dir=tmp_path / "lists")
    write_evaluator_standins(tmp_path / "weights", seed=0)
    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path / "weights"))
    lists = ["--lists", str(data["lists"])]
    assert main(["data", "crop", str(tmp_path / "raw"), "--out", str(tmp_path / "MEAD"), "--detector", "dlib-hog",
                 "--no-progress"]) == 0
    common = ["--protocol", "mead-edtalk", "--data", str(tmp_path / "MEAD"), *lists]
    assert main(["generate", *common, "--checkpoint-dir", str(official_standins(1)), "--setting", "audio",
                 "--out", str(tmp_path / "gen" / "edtalk-a"), "--no-progress"]) == 0
    assert main(["generate", *common, "--baseline", "copy-source", "--out", str(tmp_path / "gen" / "copy-source"),
                 "--no-progress"]) == 0
    for method in ("edtalk-a", "copy-source"):
        assert main(["evaluate", *common, "--videos", str(tmp_path / "gen" / method), "--unverified-weights",
                     "--fid-resamples", "5", "--out", str(tmp_path / "res" / f"{method}.json")]) == 0
    copy = json.loads((tmp_path / "res" / "copy-source.json").read_text())
    assert {"psnr", "ssim", "m_lmd", "f_lmd", "fid", "fid_eat", "sync_conf", "acc_emo", "lpips", "csim",
            "pose_err"} <= set(copy["aggregates"])
    assert copy["reference_aggregates"]["psnr"]["value"] > 10  # the held first frame against the GT clip
    capsys.readouterr()
    assert main(["report", str(tmp_path / "res" / "edtalk-a.json"), str(tmp_path / "res" / "copy-source.json"),
                 "--html", "--pdf", "--out", str(tmp_path / "report")]) == 0
    html = (tmp_path / "report" / "table1.html").read_text()
    assert 'data-method="copy-source"' in html and 'data-method="edtalk-a"' in html and "paper" in html
    if shutil.which("pdftotext"):
        page1 = subprocess.run(["pdftotext", "-f", "1", "-l", "1", str(tmp_path / "report" / "table1.pdf"), "-"],
                               capture_output=True, text=True, check=True).stdout
        assert "PSNR" in page1 and "copy-source" in page1 and "21.628" in page1
