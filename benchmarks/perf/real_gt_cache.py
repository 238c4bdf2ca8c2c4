"""Real-data evaluation speed for a second method, with and without the ground-truth cache.

    python -m benchmarks.perf.real_gt_cache [--clips 4 --frames 25 --metrics psnr,ssim,...] [--work DIR]

On the MEAD-layout mini dataset (benchmarks.datasets.mini_mead: real-face clips, the real dlib models,
seeded stand-ins of every evaluator network written once into --work): method A (the clip's first frame
held, with the clip's speech) is evaluated first and fills the cache; then method B (the GT videos
themselves) is evaluated without any cache and with that one, interleaved `--repeats` times. Prints clips/minute
of each and the ratio of the total times.
Each evaluation starts from nothing but the cache (its own output folder); the networks load in each.
"""
from __future__ import annotations

import argparse
import os
import shutil
import time
from pathlib import Path

import numpy as np


def _methods(data: dict, work: Path) -> dict:
    from benchmarks.media import read_audio, read_video, write_video

    folders = {"copy": work / "videos-copy", "gt": work / "videos-gt"}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for case, video in data["videos"].items():
        if not (folders["gt"] / f"{case}.mp4").is_file():
            shutil.copy(video, folders["gt"] / f"{case}.mp4")
        if not (folders["copy"] / f"{case}.mp4").is_file():
            frames, audio = read_video(video).frames, read_audio(data["audio"][case])
            write_video(folders["copy"] / f"{case}.mp4", np.repeat(frames[:1], len(frames), 0), fps=25, audio=audio)
    return folders


def _timed(data: dict, videos: Path, out: Path, metrics, gt_cache) -> tuple[float, dict]:
    from benchmarks.protocols.api import evaluate_protocol

    shutil.rmtree(out.parent, ignore_errors=True)  # no rows to resume from: every clip is scored
    start = time.perf_counter()
    res = evaluate_protocol("mead-edtalk", out, videos=videos, data=data["root"], metrics=metrics,
                            lists=data["lists"], progress=False,
                            real_options={"verify_weights": False, "fid_resamples": 5, "gt_cache": gt_cache})
    return time.perf_counter() - start, res


def main(argv=None) -> int:
    from benchmarks.datasets.mini_mead import DEFAULT_CASES, build_mini_mead
    from benchmarks.protocols.registry import get_protocol
    from metrics.standin import write_evaluator_standins

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=len(DEFAULT_CASES), help=f"at most {len(DEFAULT_CASES)}")
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--metrics", help="comma-separated (default: every metric of mead-edtalk)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved pairs of method B without/with the cache")
    ap.add_argument("--work", default="/tmp/edtalk-bench-gt-cache")
    a = ap.parse_args(argv)
    work = Path(a.work)
    cases = DEFAULT_CASES[:a.clips]
    data = build_mini_mead(work / f"mead-{a.frames}f" / "root", cases, n_frames=a.frames)
    os.environ["EDTALK_WEIGHTS"] = str(write_evaluator_standins(work / "weights", seed=0)["syncnet-v2"].parent)
    metrics = a.metrics.split(",") if a.metrics else list(get_protocol("mead-edtalk").metric_names)
    videos = _methods(data, work)
    cache = work / "runs" / "gt-cache"
    shutil.rmtree(cache, ignore_errors=True)
    print(f"{len(cases)} clips x {a.frames} frames at 256 px, metrics {','.join(metrics)}, "
          f"load {os.getloadavg()[0]:.1f}", flush=True)
    # B without and with the cache interleaved (twice each by default), so a changing load hits both alike
    runs = [("A, filling the cache", "copy", cache)] + [
        run for _ in range(a.repeats) for run in (("B, no cache", "gt", None), ("B, cache", "gt", cache))]
    seconds: dict[str, list[float]] = {}
    for label, method, gt_cache in runs:
        dt, res = _timed(data, videos[method], work / "runs" / label.replace(",", "").replace(" ", "-") /
                         "results.json", metrics, gt_cache)
        seconds.setdefault(label, []).append(dt)
        print(f"  method {label:22s} {60 * len(cases) / dt:6.2f} clips/min ({dt:.1f} s; "
              f"cache {res['ground_truth_cache']}), load {os.getloadavg()[0]:.1f}", flush=True)
    ratio = sum(seconds["B, no cache"]) / sum(seconds["B, cache"])
    print(f"  second method with the cache: {ratio:.2f}x the clips/min without it", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
