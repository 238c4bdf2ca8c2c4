"""Faults during evaluation and sweeps: hard kills (SIGKILL, in a subprocess, mid-row and mid-results
write), a failing run beside good ones, a killed sweep, a full disk, and long clips. Every case must end
in identical aggregates after a re-run, no lost or duplicated per-sample rows, an intact previous
results.json and no temp files — or one line saying what happened.

Already covered elsewhere (not repeated here): KeyboardInterrupt + a torn rows line and a disk-full
results write in tests/benchmarks/test_protocols.py; a failing run and fail-fast in
tests/ablations/test_sweep.py; training NaN, kill during checkpoint write and resume in
tests/edtalk/test_train_engine.py.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmarks.protocols import engine
from benchmarks.protocols.engine import Case, evaluate
from metrics.errors import UserError
from metrics.utils import DiskFullError, atomic_torch_save, atomic_write_json

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "ablations"))
from test_sweep import fake_world  # noqa: E402,F401  (fixture reused: fast fakes of train/evaluate)

CASES = [Case(f"c{i}", {"i": i}) for i in range(6)]
METRICS = ["psnr", "ssim"]
INFO = {"kind": "test"}


def method(case):
    return np.full((3, 8, 8, 3), 10 * case.info["i"], np.uint8)


def scorer(case, frames):
    return {"psnr": float(frames.mean()) + 0.25 * case.info["i"] ** 2, "ssim": 1.0 / (1 + case.info["i"]),
            "extra_value": case.info["i"]}


def run(out, **kw):
    return evaluate("synthetic-smoke", kw.pop("method", method), CASES, kw.pop("scorer", scorer), out,
                    metrics=METRICS, method_info=INFO, progress=False, **kw)


def rows_of(out: Path) -> list[dict]:
    lines = out.with_name(out.name + ".rows.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines[1:]]


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def _child(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


_CHILD_HEAD = f"""
    import json, os, signal, sys
    sys.path.insert(0, {str(Path(__file__).parent)!r})
    import numpy as np
    from benchmarks.protocols import engine
    from test_faults import run
    from pathlib import Path
"""


# --------------------------------------------------------------------------------------------------
# 3. Evaluation killed mid-run
def test_sigkill_while_appending_a_row_then_rerun_matches(tmp_path):
    reference = run(tmp_path / "ref" / "results.json")
    out = tmp_path / "killed" / "results.json"
    # The child dies by SIGKILL halfway through writing the 4th row: a torn last line, no cleanup at all.
    proc = _child(_CHILD_HEAD + f"""
    real_open = open
    def dying_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        if mode != "a":
            return f
        class Torn:
            def __enter__(self): return self
            def __exit__(self, *e): f.close()
            def write(self, s):
                if '"case": "c3"' in s:
                    f.write(s[: len(s) // 2]); f.flush(); os.fsync(f.fileno())
                    os.kill(os.getpid(), signal.SIGKILL)
                return f.write(s)
            def flush(self): f.flush()
            def fileno(self): return f.fileno()
        return Torn()
    engine.open = dying_open
    run(Path({str(out)!r}))
    """, tmp_path)
    assert proc.returncode == -9, proc.stderr
    text = out.with_name("results.json.rows.jsonl").read_text()
    assert not text.endswith("\n") and '"case": "c2"' in text  # three whole rows, one torn
    assert not out.exists()
    seen = []
    res = run(out, method=lambda c: (seen.append(c.name), method(c))[1])
    assert seen == ["c3", "c4", "c5"]  # the torn row's case is re-run, finished ones are not
    assert [r["case"] for r in res["per_sample"]] == [c.name for c in CASES]
    assert res["aggregates"] == reference["aggregates"] and res["per_sample"] == reference["per_sample"]
    assert [r["case"] for r in rows_of(out)] == [c.name for c in CASES]  # no duplicates on disk either


def test_sigkill_while_writing_results_leaves_no_partial_file(tmp_path):
    reference = run(tmp_path / "ref" / "results.json")
    out = tmp_path / "killed" / "results.json"
    # Killed after the temp results file is written but before the rename: results.json never half-exists.
    proc = _child(_CHILD_HEAD + f"""
    import metrics.utils
    real_fsync = os.fsync
    def dying_fsync(fd):
        real_fsync(fd)
        name = os.path.basename(os.readlink(f"/proc/self/fd/{{fd}}"))
        if name.startswith(".results.json.") and ".rows." not in name:
            os.kill(os.getpid(), signal.SIGKILL)
    metrics.utils.os.fsync = dying_fsync
    run(Path({str(out)!r}))
    """, tmp_path)
    assert proc.returncode == -9, proc.stderr
    assert not out.exists() and len(rows_of(out)) == len(CASES)
    stale = temp_files(out.parent)
    assert len(stale) == 1 and stale[0].startswith(".results.json.")  # SIGKILL runs no cleanup; harmless
    seen = []
    res = run(out, method=lambda c: (seen.append(c.name), method(c))[1])
    assert seen == [] and res["aggregates"] == reference["aggregates"]
    assert json.loads(out.read_text())["per_sample"] == reference["per_sample"]


def test_row_that_parses_but_is_not_a_row_is_rerun(tmp_path):
    out = tmp_path / "results.json"
    reference = run(out)
    rows = out.with_name("results.json.rows.jsonl")
    lines = rows.read_text().splitlines()
    rows.write_text("\n".join(lines[:3] + ['{"cas": "c2"}', "42"] + lines[4:]) + "\n")  # c2 damaged
    seen = []
    res = run(out, method=lambda c: (seen.append(c.name), method(c))[1])
    assert seen == ["c2"] and res["aggregates"] == reference["aggregates"]
    assert sorted(r["case"] for r in rows_of(out)) == sorted(c.name for c in CASES)


# --------------------------------------------------------------------------------------------------
# 4. Sweeps: one failing run does not corrupt the others; a killed sweep re-runs to the same numbers
def test_failing_and_killed_runs_in_a_sweep(tmp_path, fake_world, monkeypatch):  # noqa: F811
    from ablations import sweep as sw

    calls, boom, data = fake_world
    variants = "no-banks,full,no-eem"
    clean = sw.run_sweep("synthetic-smoke", variants, 1, tmp_path / "clean", data, jobs=1, progress=False)
    assert len(clean["runs"]) == 3 and not clean["failed"]

    real_evaluate = engine.evaluate
    scored = []

    def evaluate_dying(protocol, method, cases, scorer, out, **kw):
        run_name = Path(out).parent.name

        def counting(case, frames):
            if run_name.startswith("no-eem") and kill["after"] is not None and len(scored) >= kill["after"]:
                raise KeyboardInterrupt  # Ctrl-C / job pre-emption in the middle of scoring
            scored.append((run_name, case.name))
            return scorer(case, frames)

        return real_evaluate(protocol, method, cases, counting, out, **kw)

    monkeypatch.setattr(engine, "evaluate", evaluate_dying)

    def score_run(protocol, out, run_dir, data=None, progress=True, setting="video"):
        # test_sweep's fake, minus its read of status.json (which has no "v" once a run has failed)
        cases = [Case(f"c{i}") for i in range(4)]
        bias = sum(map(ord, run_dir.name)) % 7
        names = ("psnr", "ssim", "m_lmd", "f_lmd", "pose_err", "acc_emo", "sync_conf")
        engine.evaluate(protocol, lambda c: np.zeros((2, 8, 8, 3), np.uint8), cases,
                        lambda c, f: {m: float(bias + int(c.name[1:])) for m in names}, out,
                        method_info={"variant": run_dir.name.split("-s")[0], "run_dir": str(run_dir)},
                        progress=False)

    monkeypatch.setattr("edtalk.method.score_run", score_run)
    out = tmp_path / "sweep"
    boom["variant"] = "no-banks"  # training diverges
    kill = {"after": 6}  # 4 cases of full + 2 of no-eem, then the kill
    with pytest.raises(KeyboardInterrupt):
        sw.run_sweep("synthetic-smoke", variants, 1, out, data, jobs=1, progress=False)
    mid = sw.collect_sweep(out)
    assert [r["key"].split("-s")[0] for r in mid["runs"]] == ["full"]
    assert [f["key"].split("-s")[0] for f in mid["failed"]] == ["no-banks"]
    assert "loss is nan" in mid["failed"][0]["error"]
    full_dir = Path(mid["runs"][0]["run_dir"])
    clean_full = Path(tmp_path / "clean" / "runs" / full_dir.name / "results.json")
    assert json.loads((full_dir / "results.json").read_text())["aggregates"] == \
        json.loads(clean_full.read_text())["aggregates"]  # the failure beside it did not touch it

    boom["variant"], kill["after"] = None, None
    scored.clear()
    final = sw.run_sweep("synthetic-smoke", variants, 1, out, data, jobs=1, progress=False)
    assert len(final["runs"]) == 3 and not final["failed"]
    # Only the missing work ran: no-banks trained and scored from scratch, no-eem's last 2 cases.
    keys = {r["key"].split("-s")[0]: r["key"] for r in final["runs"]}
    assert sorted(scored) == sorted([(keys["no-banks"], f"c{i}") for i in range(4)]
                                    + [(keys["no-eem"], "c2"), (keys["no-eem"], "c3")])
    for r in final["runs"]:
        got = json.loads((Path(r["run_dir"]) / "results.json").read_text())
        want = json.loads((tmp_path / "clean" / "runs" / r["key"] / "results.json").read_text())
        assert got["aggregates"] == want["aggregates"], r["key"]
        names = [row["case"] for row in got["per_sample"]]
        assert names == ["c0", "c1", "c2", "c3"], (r["key"], names)
        on_disk = [row["case"] for row in rows_of(Path(r["run_dir"]) / "results.json")]
        assert sorted(on_disk) == names
    assert {r["key"] for r in final["runs"]} == {r["key"] for r in clean["runs"]}


# --------------------------------------------------------------------------------------------------
# 5. Disk full
class _FillsUp:
    """A file object that writes `budget` bytes, then fails as a full disk does (ENOSPC)."""

    def __init__(self, f, budget: int):
        self.f, self.budget = f, budget

    def write(self, data):
        if len(data) > self.budget:
            self.f.write(data[: self.budget])
            self.budget = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.budget -= len(data)
        return self.f.write(data)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


@pytest.fixture
def full_disk():
    """`with full_disk(budget):` each metrics.utils.atomic_write fails after `budget` bytes"""
    import contextlib

    import metrics.utils as mu

    real_fdopen = os.fdopen

    @contextlib.contextmanager
    def armed(budget: int = 100):
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(mu.os, "fdopen",
                       lambda fd, mode="r", *a, **k: _FillsUp(real_fdopen(fd, mode, *a, **k), budget))
            yield

    return armed


def test_disk_full_inside_atomic_write_keeps_previous_file(tmp_path, full_disk):
    path = tmp_path / "results.json"
    atomic_write_json(path, {"version": 1, "rows": list(range(100))})
    before = path.read_bytes()
    for write in (lambda: atomic_write_json(path, {"version": 2, "rows": list(range(1000))}),
                  lambda: atomic_torch_save({"w": np.zeros(10000)}, tmp_path / "model.pt")):
        with full_disk(100), pytest.raises(DiskFullError) as exc:
            write()
        msg = str(exc.value)
        assert "\n" not in msg and msg.startswith("disk full while writing ") and str(tmp_path) in msg, msg
        assert exc.value.errno == errno.ENOSPC and isinstance(exc.value, (UserError, OSError))
    assert path.read_bytes() == before and not (tmp_path / "model.pt").exists()
    assert temp_files(tmp_path) == []


def test_disk_full_during_evaluation_then_rerun(tmp_path, full_disk):
    out = tmp_path / "results.json"
    old = run(out, scorer=lambda c, f: {"psnr": 1.0, "ssim": 0.5})  # a previous evaluation's results
    before = out.read_bytes()
    out.with_name("results.json.rows.jsonl").unlink()  # a new evaluation into the same place
    reference = run(tmp_path / "ref" / "results.json")

    # (a) the disk fills up while the final results.json is written
    with full_disk(500), pytest.raises(UserError) as exc:
        run(out)
    msg = str(exc.value)
    assert "\n" not in msg and "disk full" in msg and str(out) in msg and "re-run" in msg, msg
    assert out.read_bytes() == before and json.loads(before)["aggregates"] == old["aggregates"]
    assert temp_files(tmp_path) == [] and len(rows_of(out)) == len(CASES)

    # (b) ... and, in a fresh evaluation, while a per-sample row is appended (half a line reaches the disk)
    out_b = tmp_path / "b" / "results.json"
    real_open = open
    state = {"appends": 0}

    def filling_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        if mode == "a":
            state["appends"] += 1
            if state["appends"] == 3:
                return _FillsUp(f, 20)
        return f

    with pytest.MonkeyPatch.context() as mp, \
            pytest.raises(UserError, match="disk full while writing .*rows.jsonl"):
        mp.setattr(engine, "open", filling_open, raising=False)
        run(out_b)
    assert [r["case"] for r in rows_of(out_b)] == ["c0", "c1"]  # the torn append was rolled back
    assert temp_files(out_b.parent) == []

    # Space freed: the same commands finish, with the numbers of an undisturbed run.
    for o in (out, out_b):
        seen: list[str] = []
        res = run(o, method=lambda c, seen=seen: (seen.append(c.name), method(c))[1])
        assert res["aggregates"] == reference["aggregates"] and res["per_sample"] == reference["per_sample"]
        assert seen == ([] if o == out else ["c2", "c3", "c4", "c5"])


def test_cli_prints_disk_full_as_one_line(tmp_path, monkeypatch, capsys):
    from edtalk.cli import main

    def evaluate_protocol(*a, **k):
        raise DiskFullError(errno.ENOSPC, f"disk full while writing {tmp_path}/results.json (No space "
                                          "left on device); the previous results.json is intact")

    monkeypatch.setattr("benchmarks.protocols.api.evaluate_protocol", evaluate_protocol)
    rc = main(["evaluate", "--protocol", "synthetic-smoke", "--run", str(tmp_path), "--data", str(tmp_path),
               "--out", str(tmp_path / "results.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "disk full while writing" in err, err


# --------------------------------------------------------------------------------------------------
# 6. Bounded memory on long clips: peak RSS of a subprocess, 300 vs 3000 frames
_SIZE = 64


def _write_clip(path: Path, n: int, shift: int) -> None:
    from benchmarks.media import VideoWriter

    yy, xx = np.mgrid[:_SIZE, :_SIZE]
    with VideoWriter(path, fps=25, crf=23) as w:
        for start in range(0, n, 100):  # generated and encoded in chunks: the test itself stays small
            t = np.arange(start, min(n, start + 100))[:, None, None]
            base = (xx[None] * 3 + yy[None] * 2 + t * 5 + shift) % 256
            w.write(np.stack([base, (base * 3) % 256, 255 - base], -1).astype(np.uint8))


_MEASURE = """
    import json, resource, sys
    from pathlib import Path
    import numpy as np
    from benchmarks.media import iter_video, read_video
    from benchmarks.protocols.engine import Case, evaluate, folder_method
    from benchmarks.protocols.synthetic import SyntheticScorer
    from metrics.image import PeakSignalNoiseRatio, StructuralSimilarity
    import metrics.utils, torch  # imported up front: imports are not what is measured

    mode, pred_dir, ref, out = sys.argv[1:5]
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "stream":
        psnr, ssim = PeakSignalNoiseRatio(), StructuralSimilarity()
        n = 0
        for a, b in zip(iter_video(Path(pred_dir) / "clip.mp4"), iter_video(ref)):
            psnr.update(a, b)
            ssim.update(a, b)
            n += len(a)
        value = {"psnr": psnr.compute(), "ssim": ssim.compute(), "n": n}
    else:
        class World:  # the scorer's view of a world: one test clip whose real frames are `ref`
            meta = {"size": 64}
            def clips(self, split=None):
                return [Case("clip")]
            def frames(self, clip):
                return read_video(ref).frames
            def ground_truth(self, clip):
                return {}
        scorer = SyntheticScorer(World(), None, ["psnr", "ssim"])
        res = evaluate("synthetic-smoke", folder_method(pred_dir), [Case("clip")], scorer, out,
                       metrics=["psnr", "ssim"], progress=False)
        value = {k: v["mean"] for k, v in res["aggregates"].items()} | {"n": res["per_sample"][0]["n_frames"]}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"base_mb": base / 1024, "peak_mb": peak / 1024, **value}))
"""


def _peak(mode: str, clips: Path, n: int, tmp_path: Path) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(_MEASURE), mode, str(clips / f"pred{n}"),
                           str(clips / f"ref{n}.mp4"), str(tmp_path / f"{mode}{n}.json")],
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def long_clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("long")
    for n in (300, 3000):
        (d / f"pred{n}").mkdir()
        _write_clip(d / f"pred{n}" / "clip.mp4", n, shift=0)
        _write_clip(d / f"ref{n}.mp4", n, shift=3)
    return d


def test_streaming_read_and_metric_memory_does_not_grow_with_length(long_clips, tmp_path):
    short, long = (_peak("stream", long_clips, n, tmp_path) for n in (300, 3000))
    assert (short["n"], long["n"]) == (300, 3000)
    assert np.isfinite(long["psnr"]) and 0 < long["ssim"] <= 1
    grow = long["peak_mb"] - short["peak_mb"]
    assert grow < 0.3 * short["peak_mb"] + 50, (short, long)


def test_evaluation_memory_is_bounded_by_the_clip_not_float64_copies(long_clips, tmp_path):
    # The engine's contract hands the scorer a whole uint8 clip (the method's video and the world's), so
    # memory grows with the clip's uint8 size; it must not grow with float64 copies of it (8x per copy).
    short, long = (_peak("engine", long_clips, n, tmp_path) for n in (300, 3000))
    assert (short["n"], long["n"]) == (300, 3000) and np.isfinite(long["psnr"])
    clip_mb = 2700 * _SIZE * _SIZE * 3 / 2 ** 20  # the extra frames, as uint8
    grow = long["peak_mb"] - short["peak_mb"]
    assert grow < 4 * clip_mb + 50, (short, long, clip_mb)
