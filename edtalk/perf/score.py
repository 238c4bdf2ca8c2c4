"""Scoring one trained run: seconds per run before and after the fast path, side by side, same numbers.

    python -m edtalk.perf.score --world W --run R --threads 2                 # before, after (interleaved)
    python -m edtalk.perf.score --world W --run R --paths after --held-out    # also the training's held-out check

What a sweep pays per run after training: `edtalk.method.score_run` (the protocol's test clips through
the model, the evaluators, the disentanglement tuples) and, with `--held-out`, the end-of-training check
`edtalk.train.evaluate.evaluate_run` (eval.json). Each measurement runs in a fresh process (imports, the
world's decoded-frame cache and oneDNN's kernel choice are paid as in a real run), interleaved
before/after so a load change on a shared machine hits both. Paths:
- after: the code as it is (encodings reused by content: `EncodingMemo`; the FIR blur through the
  depthwise kernel where it gives the single-channel kernel's bits: `edtalk.model.ops._fir_exact`; scaled
  weights computed once: `edtalk.model.ops.reuse_weight_products`);
- before: the same code with these switched off (a memo that keeps nothing, the single-channel FIR conv
  everywhere, weight products recomputed per layer call), i.e. every driver and source encoded each time
  through the slow exact kernel.
Prints one JSON line per measurement (seconds per phase, load average), then a summary with the speed-up
and the largest difference between the paths' scores (results.json, disentanglement.json, eval.json),
which must be 0.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


class _NeverExact(dict):
    """A verdict table that never trusts the depthwise FIR kernel: the single-channel conv everywhere."""

    def get(self, key, default=None):
        return False

    def __setitem__(self, key, value):
        pass


def _use_plain_path() -> None:
    import edtalk.method
    import edtalk.train.evaluate as evaluate
    from edtalk.model import ops

    memo = evaluate.EncodingMemo

    def keeps_nothing(model, device, **_):
        return memo(model, device, max_coefficients=0, max_sources=0)

    evaluate.EncodingMemo = edtalk.method.EncodingMemo = keeps_nothing
    evaluate.reuse_weight_products = lambda cache=None: contextlib.nullcontext()
    ops._DEPTHWISE_IS_EXACT = _NeverExact()


def _phase_clock() -> dict:
    """Seconds spent generating frames (the model, for the clips and the disentanglement tuples), scoring clips
    (evaluators, metrics) and in the disentanglement procedure (its generation included); the rest of
    `score_run` is setup (imports, loading the world, evaluators and model, the readers' fit)."""
    import metrics.disentanglement as dis
    from benchmarks.protocols.synthetic import SyntheticScorer
    from edtalk.method import TrainedModelMethod

    # __call__ (a test clip) goes through generate, so wrapping generate counts every frame once.
    spent = {"generate": 0.0, "score_clips": 0.0, "disentanglement": 0.0}

    def timed(owner, name, phase):
        fn = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[phase] += time.perf_counter() - t
        setattr(owner, name, wrapper)

    timed(TrainedModelMethod, "generate", "generate")
    timed(SyntheticScorer, "__call__", "score_clips")
    timed(dis, "evaluate_disentanglement", "disentanglement")
    return spent


def worker(a) -> dict:
    t0 = time.perf_counter()
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    if a.path == "before":
        _use_plain_path()
    spent = _phase_clock()
    from edtalk.method import score_run

    out = Path(a.out)
    t1 = time.perf_counter()
    score_run(a.protocol, out / "results.json", a.run, data=a.world, progress=False)
    row = {"path": a.path, "threads": torch.get_num_threads(), "score_run_seconds": time.perf_counter() - t1,
           "import_seconds": t1 - t0, **{f"{k}_seconds": v for k, v in spent.items()}}
    if a.held_out:
        from edtalk.train.data import FramePool
        from edtalk.train.evaluate import evaluate_run
        from edtalk.trained import load_trained_model

        t2 = time.perf_counter()
        model, _ = load_trained_model(a.run)
        train, test = FramePool.from_world(a.world, "train"), FramePool.from_world(a.world, "test")
        evaluate_run(model, train, test, out)
        row["held_out_seconds"] = time.perf_counter() - t2
    row["load_average"] = os.getloadavg()[0]
    return row


def _numbers(obj, prefix=""):
    """Every number in a JSON tree, by path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{prefix}/{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{prefix}/{i}")
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield prefix, float(obj)


def max_difference(dir_a: Path, dir_b: Path) -> float:
    """Largest absolute difference between the numbers of the two paths' result files (inf if they differ
    in shape)."""
    worst = 0.0
    for name in ("results.json", "disentanglement.json", "confusion.json", "eval.json"):
        pa, pb = dir_a / name, dir_b / name
        if not (pa.exists() or pb.exists()):
            continue
        a, b = (json.loads(p.read_text()) for p in (pa, pb))
        if name == "results.json":  # provenance holds timestamps and paths
            a, b = ({k: r[k] for k in ("per_sample", "aggregates")} for r in (a, b))
        na, nb = dict(_numbers(a)), dict(_numbers(b))
        if na.keys() != nb.keys():
            return float("inf")
        for k in na:
            if na[k] != nb[k]:
                worst = max(worst, abs(na[k] - nb[k]) if na[k] == na[k] and nb[k] == nb[k] else float("inf"))
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True, help="synthetic world with trained evaluators")
    ap.add_argument("--run", required=True, help="run directory of `edtalk train` (model.pt)")
    ap.add_argument("--protocol", default="synthetic-smoke")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paths", default="before,after", help="before, after or both (comma-separated, in order)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--held-out", action="store_true", help="also time the training's held-out check")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--path", default="after", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(a)), flush=True)
        return 0
    paths = [p for p in a.paths.split(",") if p]
    if not paths or set(paths) - {"before", "after"}:
        ap.error(f"--paths takes before and/or after, not {a.paths!r}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="perf-score-") as tmp:
        for rep in range(a.repeats):
            for path in paths:
                out = Path(tmp) / f"{path}-{rep}"
                out.mkdir()
                cmd = [sys.executable, "-m", "edtalk.perf.score", "--worker", "--path", path, "--out", str(out),
                       "--world", a.world, "--run", a.run, "--protocol", a.protocol, "--threads", str(a.threads)]
                cmd += ["--held-out"] if a.held_out else []
                t = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    sys.stderr.write(done.stderr[-3000:])
                    return done.returncode
                row = json.loads(done.stdout.strip().splitlines()[-1])
                row["process_seconds"] = time.perf_counter() - t
                rows.append(row)
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}),
                      flush=True)
        summary = {"threads": a.threads, "protocol": a.protocol}
        for path in paths:
            mine = [r for r in rows if r["path"] == path]
            summary[f"{path}_score_run_seconds"] = round(sum(r["score_run_seconds"] for r in mine) / len(mine), 1)
            if a.held_out:
                summary[f"{path}_held_out_seconds"] = round(sum(r["held_out_seconds"] for r in mine) / len(mine), 1)
        if len(paths) == 2:
            summary["score_run_speedup"] = round(summary["before_score_run_seconds"]
                                                 / summary["after_score_run_seconds"], 2)
            if a.held_out:
                summary["held_out_speedup"] = round(summary["before_held_out_seconds"]
                                                    / summary["after_held_out_seconds"], 2)
            root = Path(tmp)
            summary["max_abs_score_difference"] = max(max_difference(root / f"before-{r}", root / f"after-{r}")
                                                      for r in range(a.repeats))
    print(json.dumps({"summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
