"""Training speed per stage: iterations/s of each stage of a preset, and the projected wall time.

    python -m edtalk.perf.train --preset smoke --iters 10
    python -m edtalk.perf.train --preset standard --iters 5 --device cuda

Runs the real `Trainer` on an in-memory synthetic world at the preset's frame size (no data on disk
needed), `--iters` timed steps per stage after `--warmup` untimed ones, with the preset's batch
sizes, losses and GAN settings. Prints one JSON line per stage (it/s, s/it, peak RSS) and a summary
with the projected wall time of the preset's full iteration counts. Single process: multi-GPU speed
is this figure times the data-parallel efficiency of your cluster.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import sys
import tempfile


def measure(preset: str, variant: str, iters: int, warmup: int, device: str | None, threads: int | None) -> list[dict]:
    import torch

    from ablations.variants import resolve_config
    from edtalk.train.data import FramePool
    from edtalk.train.engine import Trainer, stage_plan

    if threads:
        torch.set_num_threads(threads)
    cfg = resolve_config(preset, variant)
    size = cfg.model.size
    pool = FramePool.generate(4, 2, 8, size, seed=0, test_identities=0)
    rows = []

    def stage_seconds(scfg, n: int) -> float:
        """Seconds the trainer's own clock gives `n` steps of this stage (excludes checkpoint writes)."""
        one = dataclasses.replace(cfg, stages=[dataclasses.replace(scfg, iterations=n)], joint_training=False,
                                  log_every=10 ** 9,
                                  checkpoint_every=10 ** 9, sample_every=10 ** 9)
        with tempfile.TemporaryDirectory() as tmp:
            tr = Trainer(one, f"{tmp}/run", pool, device=device, progress=False)
            tr.prepare_run_dir(False)
            tr.fit()
            return float(tr.state["stage_time"][scfg.name]["seconds"])

    for full in stage_plan(cfg):  # the joint-training variant is one `joint` stage
        # Warm-up steps (allocator, oneDNN/cuDNN kernel choice) are timed separately and subtracted.
        dt = stage_seconds(full, warmup + iters) - stage_seconds(full, warmup)
        rows.append({"preset": preset, "stage": full.name, "batch_size": full.batch_size, "use_gan": full.use_gan,
                     "timed_iterations": iters, "seconds_per_iteration": dt / iters,
                     "iterations_per_second": iters / dt,
                     "preset_iterations": full.iterations, "projected_stage_seconds": full.iterations * dt / iters,
                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--variant", default="full")
    ap.add_argument("--iters", type=int, default=10, help="timed iterations per stage")
    ap.add_argument("--warmup", type=int, default=2, help="untimed iterations per stage first")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    rows = measure(a.preset, a.variant, a.iters, a.warmup, a.device, a.threads)
    total = sum(r["projected_stage_seconds"] for r in rows)
    print(json.dumps({"summary": {"preset": a.preset, "variant": a.variant,
                                  "projected_training_seconds": total,
                                  "per_stage_iterations_per_second": {r["stage"]: r["iterations_per_second"]
                                                                      for r in rows}}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
