"""EDTalk inference side by side with the release's own demo loop: same seeded weights, inputs and threads.

    python -m edtalk.perf.release_side_by_side --release-dir ~/src/EDTalk --frames 8 --repeats 2

`--release-dir` is a checkout of github.com/tanshuai0219/EDTalk (nothing of it is copied here). Its
`networks/generator.py` runs as its demos run it (demo_EDTalk_V.py: `Generator.test_EDTalk_V(source, lip, pose,
exp)` once per output frame under `torch.no_grad()`), with the two changes a CPU needs made at run time in the
worker process only: `.cuda()` returns the tensor/module where it is, and `torch.qr` is `torch.linalg.qr`.
Ours is `edtalk.animate.animate` (`exact=True`, what `edtalk animate` and `edtalk generate` run on CPU; add
`ours-batched` to `--modes` for `exact=False`) on the same `EDTalk.pt` stand-in (`edtalk.standin`).

Scenarios: `one-clip` (one driving clip gives mouth, pose and expression, as EDTalk-V reconstruction; the
release still encodes it three times per frame, plus the source) and `three-clips` (three different clips).
Every (repeat, scenario, mode) runs in its own process, interleaved release / ours / release / ours so a
changing machine load hits both alike, and reports peak RSS of that process alone. Per frame the FLOPs are
counted with `torch.utils.flop_counter` (steady state: ours encodes the source once, on the first frame), and
the FLOP floor is frames/s at the measured fp32 matmul peak of this machine. Prints one JSON line per run and
a summary per scenario: best-of-repeats fps, speed-up, the floor's speed-up, fraction of the floor reached,
peak RSS and the max abs difference of our frames from the release's. Exits 1 if that difference exceeds
`--tolerance` (1e-4).

Measured 2026-12-01 23:00 UTC on a quiet 2-core host (load 1.2-1.9, nothing else running; 8 frames, 2 repeats, 2
threads; fp32 matmul peak 407 GFLOP/s): one clip 1.985 vs 0.333 frames/s (5.95x; per repeat 6.00x / 5.95x; FLOP
ratio 3.21x: 61.3 vs 196.6 GFLOP per frame), three clips 1.187 vs 0.333 (3.57x; 3.57x / 3.29x; FLOP ratio 1.59x:
123.7 GFLOP); max abs diff 0.0 in both; peak RSS 1.49 / 1.47 GB vs the release's 1.46 / 1.45 GB. Ours reaches
30% / 36% of the FLOP floor, the release 16%: the depthwise FIR (edtalk.model.ops) does the blur's work in fewer
cycles per FLOP. Earlier figures (2.42x / 1.70x) timed the one-time bit check of a new batch shape, which the
warm-up now pays.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENARIOS = ("one-clip", "three-clips")
MODES = ("release", "ours", "ours-batched")
SIZE = 256  # the paper preset: the official checkpoints' resolution


def _drivers(inputs: dict, scenario: str):
    clips = inputs["clips"]
    return (clips[0], clips[0], clips[0]) if scenario == "one-clip" else (clips[0], clips[1], clips[2])


def _patch_release_for_cpu(torch) -> None:
    """The release's code as its demo runs it on a GPU, made to run on this CPU (no other change)."""
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.qr = lambda a, some=True: torch.linalg.qr(a, "reduced" if some else "complete")


def _first(drivers, n: int) -> tuple:
    """The first n frames of each driver; a clip given for several factors stays one tensor (one clip)."""
    heads = {id(d): d[:n] for d in drivers}
    return tuple(heads[id(d)] for d in drivers)


def _release_runner(release_dir: Path, ckpt: Path, torch):
    """A per-frame function running the release's `test_EDTalk_V` loop, and its model."""
    _patch_release_for_cpu(torch)
    sys.path.insert(0, str(release_dir))
    from networks.generator import Generator  # the release's own module, from --release-dir

    gen = Generator(SIZE, 512, 20, 6, 10, 1)
    gen.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["gen"])
    gen.eval().requires_grad_(False)

    def run(source, lip, pose, exp):
        # demo_EDTalk_V.Demo.run: the clips as (1, T, 3, H, W), one call per frame, frames stacked
        lip, pose, exp = lip[None], pose[None], exp[None]
        out = [gen.test_EDTalk_V(source, lip[:, i], pose[:, i], exp[:, i], None) for i in range(lip.shape[1])]
        return torch.cat(out)

    return run, gen


def _ours_runner(ckpt: Path, exact: bool, batch: int):
    from edtalk import official
    from edtalk.animate import animate

    model = official.load_generator(ckpt).requires_grad_(False)

    def run(source, lip, pose, exp):
        return animate(model, source, mouth=lip, pose=pose, expression=exp, exact=exact, batch_size=batch)

    return run, model


def _gflop_per_frame(torch, run, source, drivers, first_frame_once: bool) -> float:
    """Steady-state GFLOP per output frame (FLOPs of 2 frames minus 1 frame when the first frame pays once)."""
    from torch.utils.flop_counter import FlopCounterMode

    def count(n):
        with torch.no_grad():
            run(source, *_first(drivers, n))  # a new batch shape's one-time check (fast_where_same_bits) not counted
            with FlopCounterMode(display=False) as counter:
                run(source, *_first(drivers, n))
        return counter.get_total_flops()

    one = count(1)
    return ((count(2) - one) if first_frame_once else one) / 1e9


def _worker(args) -> None:
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    inputs = torch.load(args.inputs, weights_only=True)
    source = inputs["source"]
    drivers = _drivers(inputs, args.scenario)
    if args.mode == "release":
        run, _ = _release_runner(Path(args.release_dir), Path(args.ckpt), torch)
    else:
        run, _ = _ours_runner(Path(args.ckpt), exact=args.mode == "ours", batch=args.batch)
    with torch.no_grad():
        # Warm-up at the shapes the timed call uses: allocator and kernels ready in every mode, and ours' one-time
        # check per batch shape (edtalk.model.ops.fast_where_same_bits) paid here, as a long generate pays it once.
        warm = 1 if args.mode == "release" else min(args.batch, drivers[0].shape[0])
        run(source, *_first(drivers, warm))
        start = time.perf_counter()
        out = run(source, *drivers)
        seconds = time.perf_counter() - start
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    gflop = _gflop_per_frame(torch, run, source, drivers, args.mode != "release") if args.count_flops else None
    if args.out:
        np.save(args.out, out.numpy())
    frames = drivers[0].shape[0]
    print(json.dumps({"scenario": args.scenario, "mode": args.mode, "frames": frames, "seconds": round(seconds, 3),
                      "fps": round(frames / seconds, 4), "peak_rss_mb": round(rss_mb, 1),
                      "gflop_per_frame": None if gflop is None else round(gflop, 2),
                      "threads": torch.get_num_threads(), "load_average_1min": round(os.getloadavg()[0], 2)}))


def matmul_peak_gflops(threads: int, n: int = 2048, seconds: float = 2.0) -> float:
    """Best fp32 matmul rate of this machine over a few seconds (the FLOP floor's denominator)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, stop = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < stop:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t) / 1e9)
    return best


def _write_inputs(path: Path, frames: int, seed: int) -> None:
    """A seeded source image and three driving clips, (T, 3, 256, 256) in [-1, 1]."""
    import torch

    g = torch.Generator().manual_seed(seed)
    source = torch.rand(1, 3, SIZE, SIZE, generator=g) * 2 - 1
    clips = [torch.rand(frames, 3, SIZE, SIZE, generator=g) * 2 - 1 for _ in range(3)]
    torch.save({"source": source, "clips": clips}, path)


def _run_worker(a, tmp: Path, scenario: str, mode: str, first: bool) -> tuple[dict, Path | None]:
    out = tmp / f"{scenario}-{mode}.npy" if first else None
    cmd = [sys.executable, "-m", "edtalk.perf.release_side_by_side", "--worker", "--scenario", scenario,
           "--mode", mode, "--inputs", str(tmp / "inputs.pt"), "--ckpt", str(tmp / "ckpt" / "EDTalk.pt"),
           "--threads", str(a.threads), "--batch", str(a.batch), "--release-dir", str(a.release_dir)]
    cmd += ["--out", str(out), "--count-flops"] if first else []
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{mode} ({scenario}) failed:\n{proc.stderr[-3000:]}")
    line = proc.stdout.strip().splitlines()[-1]
    print(line, flush=True)
    return json.loads(line), out


def _summary(scenario: str, runs: dict, outputs: dict, peak: float, modes) -> list[dict]:
    import numpy as np

    rel = runs["release"]
    rel_fps = max(r["fps"] for r in rel)
    rel_gflop = rel[0]["gflop_per_frame"]
    ref = np.load(outputs["release"])
    rows = []
    for mode in modes:
        fps = max(r["fps"] for r in runs[mode])
        gflop = runs[mode][0]["gflop_per_frame"]
        row = {"scenario": scenario, "mode": mode, "fps_best": round(fps, 4),
               "fps_each_repeat": [r["fps"] for r in runs[mode]], "gflop_per_frame": gflop,
               "floor_fps": round(peak / gflop, 4), "fraction_of_floor": round(fps * gflop / peak, 3),
               "peak_rss_mb": max(r["peak_rss_mb"] for r in runs[mode])}
        if mode != "release":
            row["speedup_vs_release"] = round(fps / rel_fps, 3)
            # per repeat, release and ours ran back to back: the ratio of each pair is the load-robust one
            row["speedup_per_repeat"] = [round(o["fps"] / r["fps"], 3) for o, r in zip(runs[mode], rel, strict=True)]
            row["floor_speedup_vs_release"] = round(rel_gflop / gflop, 3)
            row["max_abs_diff_vs_release"] = float(np.abs(np.load(outputs[mode]) - ref).max())
        rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--release-dir", type=Path, required=True,
                    help="a checkout of github.com/tanshuai0219/EDTalk (its networks/ folder is imported)")
    ap.add_argument("--frames", type=int, default=8, help="output frames per run (256 px)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved release/ours repeats; best fps is kept")
    ap.add_argument("--threads", type=int, default=2, help="torch threads in every run")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--modes", default="release,ours", help=f"from {', '.join(MODES)}; release is always run")
    ap.add_argument("--batch", type=int, default=8, help="batch of ours-batched")
    ap.add_argument("--seed", type=int, default=0, help="stand-in weights and inputs")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--scenario", "--mode", "--inputs", "--ckpt", "--out"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--count-flops", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        _worker(a)
        return 0
    from metrics.errors import InputError, suggest

    if not (a.release_dir / "networks" / "generator.py").is_file():
        raise InputError(f"{a.release_dir} is not a checkout of the EDTalk release (no networks/generator.py); "
                         "clone https://github.com/tanshuai0219/EDTalk and pass its folder as --release-dir")
    scenarios = a.scenarios.split(",")
    modes = ["release"] + [m for m in a.modes.split(",") if m != "release"]
    for name, known in [(s, SCENARIOS) for s in scenarios] + [(m, MODES) for m in modes]:
        if name not in known:
            raise InputError(f"unknown scenario or mode {name!r}{suggest(name, known)}; known: {', '.join(known)}")
    if a.frames < 2 or a.repeats < 1:
        raise InputError("--frames must be at least 2 (the steady-state FLOP count needs two) and --repeats >= 1")

    from edtalk.standin import write_official_standins

    summary = []
    with tempfile.TemporaryDirectory(prefix="edtalk-side-by-side-") as tmp:
        tmp = Path(tmp)
        write_official_standins(a.seed, tmp / "ckpt", files=("EDTalk.pt",))
        _write_inputs(tmp / "inputs.pt", a.frames, a.seed)
        peak = matmul_peak_gflops(a.threads)
        print(json.dumps({"fp32_matmul_peak_gflops": round(peak, 1), "threads": a.threads}), flush=True)
        runs = {s: {m: [] for m in modes} for s in scenarios}
        outputs: dict = {s: {} for s in scenarios}
        for rep in range(a.repeats):
            for s in scenarios:
                for m in modes:
                    res, out = _run_worker(a, tmp, s, m, first=rep == 0)
                    runs[s][m].append(res)
                    if out is not None:
                        outputs[s][m] = out
        for s in scenarios:
            summary += _summary(s, runs[s], outputs[s], peak, modes)
    for row in summary:
        print(json.dumps(row))
    exact = [r for r in summary if r["mode"] == "ours"]
    return 0 if all(r["max_abs_diff_vs_release"] <= a.tolerance for r in exact) else 1


if __name__ == "__main__":
    sys.exit(main())
