"""Protocol registry and evaluation engine: suggestions, CIs, resume after a kill, disk-full safety."""
import errno
import json

import numpy as np
import pytest

from benchmarks.protocols import engine
from benchmarks.protocols.engine import Case, bootstrap_ci, evaluate
from benchmarks.protocols.registry import get_protocol, list_protocols
from metrics.errors import InputError, UserError

CASES = [Case(f"c{i}", {"i": i}) for i in range(6)]


def method(case):
    return np.full((3, 8, 8, 3), 10 * case.info["i"], np.uint8)


def scorer(case, frames):
    return {"psnr": float(frames.mean()), "ssim": 0.5}


def test_unknown_protocol_suggests_closest():
    with pytest.raises(InputError, match="did you mean 'synthetic-smoke'"):
        get_protocol("synthetic-smok")
    assert {p.name for p in list_protocols()} >= {"synthetic-smoke", "synthetic-study", "mead-edtalk", "hdtf-edtalk"}


def test_bootstrap_ci_brackets_mean_and_is_deterministic():
    x = np.random.default_rng(1).normal(5, 1, 50)
    lo, hi = bootstrap_ci(x, 500, 0)
    assert lo < x.mean() < hi and (lo, hi) == bootstrap_ci(x, 500, 0)


def test_kill_midway_then_resume_gives_identical_aggregates(tmp_path):
    full = evaluate("synthetic-smoke", method, CASES, scorer, tmp_path / "a.json", metrics=["psnr", "ssim"],
                    progress=False)
    calls = []

    def dying(case):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(case.name)
        return method(case)

    out = tmp_path / "b.json"
    with pytest.raises(KeyboardInterrupt):
        evaluate("synthetic-smoke", dying, CASES, scorer, out, metrics=["psnr", "ssim"], progress=False,
                 method_info={"kind": "test"})
    rows = out.with_name("b.json.rows.jsonl")
    with open(rows, "a") as f:  # a torn line, as a kill during a write leaves it
        f.write('{"case": "c3", "sco')
    seen = []
    res = evaluate("synthetic-smoke", lambda c: (seen.append(c.name), method(c))[1], CASES, scorer, out,
                   metrics=["psnr", "ssim"], progress=False, method_info={"kind": "test"})
    assert seen == ["c3", "c4", "c5"]
    assert [r["case"] for r in res["per_sample"]] == [c.name for c in CASES]
    assert res["aggregates"] == full["aggregates"]


def test_disk_full_leaves_previous_results_intact(tmp_path, monkeypatch):
    out = tmp_path / "r.json"
    evaluate("synthetic-smoke", method, CASES, scorer, out, metrics=["psnr"], progress=False)
    before = out.read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(engine, "atomic_write_json", full)
    with pytest.raises(UserError, match="disk full"):
        evaluate("synthetic-smoke", method, CASES, scorer, out, metrics=["psnr"], progress=False)
    assert out.read_bytes() == before and json.loads(before)["aggregates"]["psnr"]["n"] == 6


def test_missing_metric_fails_without_partial_table(tmp_path):
    out = tmp_path / "r.json"
    with pytest.raises(UserError, match="cannot score"):
        evaluate("synthetic-smoke", method, CASES, scorer, out, metrics=["psnr", "acc_emo"], progress=False)
    assert not out.exists()


def test_missing_video_in_folder_is_named(tmp_path):
    (tmp_path / "other.mp4").write_bytes(b"")  # a non-empty folder that lacks the case's video
    with pytest.raises(InputError, match="c0"):
        evaluate("synthetic-smoke", tmp_path, CASES, scorer, tmp_path / "r.json", metrics=["psnr"], progress=False)
