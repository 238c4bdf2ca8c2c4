"""Training speed: iterations/s of each stage of a preset and the projected wall time; on real video also
the data path alone, so you see whether decoding or compute bounds training.

    python -m edtalk.perf.train --preset smoke --iters 10
    python -m edtalk.perf.train --preset paper --iters 2 --device cuda
    python -m edtalk.perf.train --data MEAD --dataset mead --lists LISTS --limit-clips 8 --preset paper \\
        --iters 1 --warmup 1 --workers 2 --project-gpu-tflops 156 --gpu-utilisation 0.35
    python -m edtalk.perf.train --mini-mead --preset paper --iters 1 --warmup 1 --project-gpu-tflops 156

`--mini-mead` builds the real-face MEAD-layout mini dataset the tests use (benchmarks.datasets.mini_mead:
4 training clips of 2 speakers, 1 test clip, 256 px, `--mini-frames` frames each) in a temporary folder and
measures on it. Without --data the real `Trainer` runs on an in-memory synthetic world at the preset's frame size. With
`--data ROOT --dataset mead|hdtf` (real clips, as `edtalk train --dataset` reads them) it measures, in order:
1. preparation: frames/s decoded, dlib-landmarked and resized into a fresh cache (what `edtalk train
   --dataset` does once per clip; `python -m benchmarks.perf.crops` measures the face crops of `edtalk data
   crop`, the step before it on raw MEAD);
2. the data path alone: samples/s of a DataLoader over the cache per stage (its pair kind and batch size),
   with `--workers` worker processes;
3. the full training step per stage (data, forward, backward, optimiser), samples/s and s/it.
Each stage's line says which bounds it: the data path is `data_headroom` times faster than the step.

`--project-gpu-tflops X` projects one run of the preset's iteration counts on a GPU of X dense TFLOP/s:
FLOPs per step = the step's CPU seconds (this process, all threads: a shared machine slows its wall clock, not
its CPU time) x this CPU's fp32 matmul GFLOP per CPU second (an upper bound: the step runs below the matmul
peak, so the projection leans long), divided by X x `--gpu-utilisation`.
A projection, not a measurement: it ignores data-path stalls, kernel launch overheads and mixed precision.

One process; multi-GPU speed is this figure times the data-parallel efficiency of your cluster. This is the
only training benchmark: `benchmarks/` cannot import the model, so there is no `benchmarks.perf.train`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time


def _stage_seconds(cfg, scfg, n: int, pool, device) -> tuple[float, float]:
    """(seconds the trainer's own clock gives `n` steps of this stage (data included; no checkpoint writes),
    CPU seconds this process spent building the trainer and taking them)."""
    from edtalk.train.engine import Trainer

    one = dataclasses.replace(cfg, stages=[dataclasses.replace(scfg, iterations=n)], joint_training=False,
                              log_every=10 ** 9, checkpoint_every=10 ** 9, sample_every=10 ** 9)
    cpu = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(one, f"{tmp}/run", pool, device=device, progress=False)
        tr.prepare_run_dir(False)
        tr.fit()
        return float(tr.state["stage_time"][scfg.name]["seconds"]), time.process_time() - cpu


def measure(preset: str, variant: str, iters: int, warmup: int, device: str | None, threads: int | None,
            pool=None, workers: int = 0, batch_size: int | None = None, stages=None) -> list[dict]:
    """One row per stage: the full step's speed (`pool`: real clips; default an in-memory synthetic world).
    `batch_size` measures every stage at that batch instead of the preset's (the paper preset's batch 12 at
    256 px needs ~14 GB on CPU); the projection then takes the step as linear in the batch. `stages`: only these.
    CPU seconds per step (this process, all threads) are recorded beside the wall clock: on a shared machine
    they are what the step costs, whatever share of the cores it got."""
    import torch

    from ablations.variants import resolve_config
    from edtalk.train.data import FramePool
    from edtalk.train.engine import stage_plan

    if threads:
        torch.set_num_threads(threads)
    cfg = dataclasses.replace(resolve_config(preset, variant), num_workers=workers)
    pool = pool if pool is not None else FramePool.generate(4, 2, 8, cfg.model.size, seed=0, test_identities=0)
    rows = []
    for preset_stage in stage_plan(cfg):  # the joint-training variant is one `joint` stage
        if stages and preset_stage.name not in stages:
            continue
        full = dataclasses.replace(preset_stage, batch_size=batch_size) if batch_size else preset_stage
        scale = preset_stage.batch_size / full.batch_size  # seconds per preset step = measured x scale
        # Warm-up steps (allocator, oneDNN/cuDNN kernel choice) are timed separately and subtracted.
        (wall_a, cpu_a), (wall_b, cpu_b) = (_stage_seconds(cfg, full, n, pool, device)
                                            for n in (warmup + iters, warmup))
        dt, cpu = wall_a - wall_b, cpu_a - cpu_b
        rows.append({"preset": preset, "stage": full.name, "batch_size": preset_stage.batch_size,
                     "measured_batch_size": full.batch_size, "use_gan": full.use_gan, "timed_iterations": iters,
                     "measured_seconds_per_iteration": dt / iters, "seconds_per_iteration": scale * dt / iters,
                     "cpu_seconds_per_iteration": scale * cpu / iters,
                     "iterations_per_second": iters / dt / scale, "samples_per_second": iters * full.batch_size / dt,
                     "preset_iterations": full.iterations,
                     "projected_stage_seconds": full.iterations * scale * dt / iters,
                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def prepare_real(data, dataset: str, size: int, lists, limit_clips, cache=None):
    """(train pool, preparation row): the clips prepared into `cache` (default a fresh temporary one, so every
    clip is decoded: the row's frames/s is decode + dlib landmarks + resize, one process)."""
    from edtalk.train.real_data import load_real_pools

    cache = cache or tempfile.mkdtemp(prefix="edtalk-perf-cache-")
    train, _, report = load_real_pools(data, dataset, size, lists, limit_clips, cache)
    tr = report["train"]
    decoded = tr["decoded"] + (report.get("test") or {}).get("decoded", 0)
    seconds = tr["decode_seconds"] + (report.get("test") or {}).get("decode_seconds", 0.0)
    row = {"phase": "prepare", "size": size, "clips": tr["used"], "frames_decoded": decoded,
           "seconds": round(seconds, 3), "frames_per_second": decoded / seconds if seconds else None,
           "cache": str(cache)}
    print(json.dumps(row), flush=True)
    return train, row


def data_path(pool, cfg, batches: int, workers: int) -> list[dict]:
    """Samples/s of a DataLoader over the cache per stage: pairs drawn, mouth-swapped, converted; no model."""
    from torch.utils.data import DataLoader

    from edtalk.train.data import PairDataset
    from edtalk.train.engine import stage_plan
    from edtalk.train.stages import STAGE_CLASSES

    rows = []
    for scfg in stage_plan(cfg):
        ds = PairDataset(pool, STAGE_CLASSES[scfg.name].kind, (batches + 1) * scfg.batch_size, seed=0)
        it = iter(DataLoader(ds, batch_size=scfg.batch_size, num_workers=workers))
        next(it)  # worker start-up is paid once per run, not per batch
        t0 = time.perf_counter()
        for _ in range(batches):
            next(it)
        dt = time.perf_counter() - t0
        rows.append({"phase": "data_path", "stage": scfg.name, "workers": workers, "batch_size": scfg.batch_size,
                     "samples_per_second": batches * scfg.batch_size / dt})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def matmul_gflops(threads: int | None, n: int = 2048, reps: int = 5) -> dict:
    """This CPU's fp32 matmul rate at the benchmark's thread count: GFLOP per wall second (best of `reps`
    n x n products) and per CPU second of this process (all of them)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    walls, cpu = [], time.process_time()
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        walls.append(time.perf_counter() - t0)
    flops = 2 * n ** 3
    return {"per_wall_second": flops / min(walls) / 1e9,
            "per_cpu_second": flops * reps / (time.process_time() - cpu) / 1e9}


def project_gpu(rows: list[dict], cpu_gflops: float, gpu_tflops: float, utilisation: float) -> dict:
    """One run of the preset's iteration counts on a GPU, from the CPU step cost (module docstring): the step's
    CPU seconds x GFLOP per CPU second of matmul (a shared machine slows the wall clock, not the CPU time)."""
    stages = {}
    for r in rows:
        flops = r["cpu_seconds_per_iteration"] * cpu_gflops * 1e9
        step = flops / (gpu_tflops * 1e12 * utilisation)
        stages[r["stage"]] = {"flops_per_step_upper_bound": flops, "gpu_seconds_per_step": step,
                              "gpu_samples_per_second_needed": r["batch_size"] / step,
                              "gpu_stage_hours": r["preset_iterations"] * step / 3600}
    return {"projection": True, "cpu_matmul_gflops_per_cpu_second": cpu_gflops, "gpu_dense_tflops": gpu_tflops,
            "gpu_utilisation": utilisation, "stages": stages,
            "gpu_run_hours": sum(s["gpu_stage_hours"] for s in stages.values()),
            "assumptions": "FLOPs/step = CPU s/step x fp32 matmul GFLOP per CPU s (upper bound); GPU time = FLOPs / "
                           "(TFLOP/s x utilisation); no data stalls; stages 0-2 only (not the audio stage)"}


def build_mini(n_frames: int) -> tuple[str, str, str]:
    """(root, "mead", lists) of the mini MEAD in a fresh temporary folder."""
    from benchmarks.datasets.mini_mead import build_mini_mead, write_lists

    train = ("M003#neutral#level_1#001", "M003#angry#level_3#001", "M030#neutral#level_1#001",
             "M030#happy#level_2#002")
    test = ("W009#sad#level_2#003",)
    tmp = tempfile.mkdtemp(prefix="edtalk-perf-mini-")
    built = build_mini_mead(f"{tmp}/MEAD", train + test, n_frames=n_frames, size=256, lists_dir=f"{tmp}/lists")
    write_lists(f"{tmp}/lists", test, train)  # its speakers are official test speakers: lists of its own
    return str(built["root"]), "mead", f"{tmp}/lists"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--variant", default="full")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per stage")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations per stage first")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--data", default=None, help="real clips: the MEAD/HDTF root (with --dataset)")
    ap.add_argument("--dataset", choices=("mead", "hdtf"), default=None)
    ap.add_argument("--lists", default=None, help="folder with train.json/test.json overriding the official lists")
    ap.add_argument("--limit-clips", type=int, default=None, help="at most N clips per split")
    ap.add_argument("--mini-mead", action="store_true", help="measure on the mini MEAD built in a temporary folder")
    ap.add_argument("--mini-frames", type=int, default=25, help="frames per mini MEAD clip (default 25)")
    ap.add_argument("--cache", default=None, help="prepare into this cache (default: a fresh temporary one)")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes (data path and step)")
    ap.add_argument("--batch-size", type=int, default=None, help="measure the step at this batch and scale "
                    "linearly to the preset's (memory: the paper preset's batch 12 needs ~14 GB on CPU)")
    ap.add_argument("--stages", default=None, help="comma-separated stage names to time (default: all)")
    ap.add_argument("--data-batches", type=int, default=20, help="batches timed per stage for the data path")
    ap.add_argument("--project-gpu-tflops", type=float, default=None, metavar="X",
                    help="project one run on a GPU of X dense TFLOP/s (e.g. 156: an A100's TF32 tensor-core rate)")
    ap.add_argument("--gpu-utilisation", type=float, default=0.35,
                    help="fraction of X a training step reaches (default 0.35)")
    a = ap.parse_args(argv)
    from metrics.errors import InputError, UserError

    try:
        return _run(a)
    except (InputError, UserError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(a) -> int:
    from ablations.variants import resolve_config
    from metrics.errors import InputError

    if a.mini_mead:
        a.data, a.dataset, a.lists = build_mini(a.mini_frames)
    if (a.data is None) != (a.dataset is None):
        raise InputError("--data ROOT and --dataset mead|hdtf go together (real clips); give both or neither")
    pool, extra = None, {}
    cfg = resolve_config(a.preset, a.variant)
    # The matmul rate is measured before and after the steps and averaged: on a shared machine the load moves
    # both, and FLOPs = step time x rate holds when both see the same load.
    rate_before = matmul_gflops(a.threads) if a.project_gpu_tflops else None
    if rate_before:
        print(json.dumps({"phase": "matmul_fp32", "gflops": rate_before}), flush=True)
    if a.data is not None:
        pool, extra["prepare"] = prepare_real(a.data, a.dataset, cfg.model.size, a.lists, a.limit_clips, a.cache)
        extra["data_path"] = data_path(pool, cfg, a.data_batches, a.workers)
    rows = measure(a.preset, a.variant, a.iters, a.warmup, a.device, a.threads, pool=pool, workers=a.workers,
                   batch_size=a.batch_size, stages=a.stages.split(",") if a.stages else None)
    for r in rows:
        fed = next((d["samples_per_second"] for d in extra.get("data_path", []) if d["stage"] == r["stage"]), None)
        if fed is not None:
            r["data_headroom"] = fed / r["samples_per_second"]
    summary = {"preset": a.preset, "variant": a.variant, "data": a.data or "in-memory synthetic",
               "load_average": os.getloadavg(), "projected_training_seconds": sum(r["projected_stage_seconds"]
                                                                                  for r in rows),
               "per_stage_iterations_per_second": {r["stage"]: r["iterations_per_second"] for r in rows},
               **({"per_stage_data_headroom": {r["stage"]: r["data_headroom"] for r in rows if "data_headroom" in r}}
                  if pool is not None else {}), **extra}
    if a.project_gpu_tflops:
        rates = (rate_before, matmul_gflops(a.threads))
        per_cpu = sum(r["per_cpu_second"] for r in rates) / 2
        summary["gpu_projection"] = {**project_gpu(rows, per_cpu, a.project_gpu_tflops, a.gpu_utilisation),
                                     "cpu_matmul_before_after": rates}
    print(json.dumps({"summary": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
