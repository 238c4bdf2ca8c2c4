"""`edtalk generate` and `edtalk evaluate --protocol hdtf-edtalk` from the CLI on an HDTF-layout mini dataset.

HDTF as the readers take it: `ROOT/<video>.mp4` full length, test case `<video>#<k>` its seconds 5(k-1)..5k
with the video's own speech, or an already cut `ROOT/<video>#<k>.mp4`. One case of each kind (10 frames
each: segment 2 of a 5.4-s video, and a short cut file), real-face clips, the real dlib models and seeded
stand-ins of SyncNet and both Inceptions. HDTF's Table 1 has no Acc_emo: the protocol does not offer it.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("dlib")

from edtalk.cli import main  # noqa: E402

CASES = ("WDA_Alice_000#2", "WRA_Bob_001#1")
TABLE1_HDTF = ("psnr", "ssim", "m_lmd", "f_lmd", "fid", "fid_eat", "sync_conf", "lse_d")


@pytest.fixture(scope="module")
def hdtf(tmp_path_factory):
    from benchmarks.datasets.mini_mead import write_lists
    from benchmarks.media import write_video
    from benchmarks.realfaces import talking_clip

    base = tmp_path_factory.mktemp("hdtf")
    root = base / "HDTF"
    full = talking_clip("grace_hopper", n_frames=135, size=256, seed=1)  # 5.4 s: segment 2 is frames 125-134
    write_video(root / "WDA_Alice_000.mp4", full.frames, fps=25, audio=full.audio)
    cut = talking_clip("astronaut", n_frames=10, size=256, seed=2)
    write_video(root / "WRA_Bob_001#1.mp4", cut.frames, fps=25, audio=cut.audio)
    return {"root": root, "lists": write_lists(base / "lists", CASES), "base": base}


@pytest.fixture(scope="module")
def generated(hdtf):
    """`edtalk generate --protocol hdtf-edtalk` (the copy-source baseline: the clip's first frame held)."""
    gen = hdtf["base"] / "gen"
    assert main(["generate", *_common(hdtf), "--baseline", "copy-source", "--out", str(gen), "--no-progress"]) == 0
    assert sorted(p.name for p in gen.glob("*.mp4")) == [f"{c}.mp4" for c in CASES]
    return gen


def _common(hdtf) -> list[str]:
    return ["--protocol", "hdtf-edtalk", "--data", str(hdtf["root"]), "--lists", str(hdtf["lists"])]


def _evaluate(hdtf, generated, out, metrics) -> dict:
    assert main(["evaluate", *_common(hdtf), "--videos", str(generated), "--unverified-weights", "--fid-resamples",
                 "3", "--metrics", ",".join(metrics), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert list(res["aggregates"]) == list(metrics)
    # the cut segment and the cut file: 10 frames each, at the test list's order
    assert [(r["case"], r["n_frames"]) for r in res["per_sample"]] == [(c, 10) for c in CASES]
    for name in metrics:
        assert res["aggregates"][name]["mean"] is not None and np.isfinite(res["aggregates"][name]["mean"]), name
    # a held first frame against the moving GT segment: finite PSNR, imperfect SSIM, nonzero landmark error
    assert 10 < res["reference_aggregates"]["psnr"]["value"] < 60
    assert res["reference_aggregates"]["ssim"]["value"] < 0.999 and res["aggregates"]["m_lmd"]["mean"] > 0
    return res


def test_generate_and_evaluate_hdtf_from_the_cli(hdtf, generated, tmp_path, capsys):
    """The aligned-crop metrics (dlib only); Acc_emo is refused in one line."""
    _evaluate(hdtf, generated, tmp_path / "res" / "res.json", TABLE1_HDTF[:4])
    capsys.readouterr()
    assert main(["evaluate", *_common(hdtf), "--videos", str(generated), "--metrics", "acc_emo", "--out",
                 str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "acc_emo" in err and "\n" not in err


@pytest.mark.slow
def test_every_hdtf_table1_metric_from_the_cli(hdtf, generated, tmp_path, monkeypatch):
    """Every HDTF Table-1 metric: about 5 min on 2 loaded CPU cores (both Inceptions, SyncNet at 224 px)."""
    from metrics.standin import write_evaluator_standins

    write_evaluator_standins(tmp_path / "weights", seed=0, keys=("syncnet-v2", "inception-fid",
                                                                 "inception-v3-torchvision"))
    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path / "weights"))
    res = _evaluate(hdtf, generated, tmp_path / "res" / "copy-source.json", TABLE1_HDTF)
    assert {r["extra"]["crops"]["syncnet-track"]["audio"] for r in res["per_sample"]} == {"generated video's own"}
    assert res["metric_provenance"]["sync_conf"]["crop"] == "syncnet-track"
    for name in ("fid", "fid_eat"):
        assert res["aggregates"][name]["level"] == "set"


def test_hdtf_protocol_scores_every_table1_metric_but_acc_emo():
    from benchmarks.protocols.registry import get_protocol

    names = get_protocol("hdtf-edtalk").metric_names
    assert set(TABLE1_HDTF) <= set(names) and "acc_emo" not in names
