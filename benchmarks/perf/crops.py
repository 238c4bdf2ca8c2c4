"""Face crops: milliseconds per frame and peak memory for every registered style, on a real-face clip.

    python -m benchmarks.perf.crops [--frames 250 2500] [--size 256] [--styles eat-aligned ...]

Each (style, length) runs in its own process, and the peak RSS (VmHWM) is reset after the warm-up, so the
peak is that crop's alone. The input is streamed: a generator going back and forth through 25 pre-rendered
frames of a real-face talking clip (benchmarks.realfaces), so the input costs no memory that grows with
length; styles that read the clip twice get a re-readable source (a zero-argument callable). `crop()`
returns every crop, so the output grows with the clip by design; "working" is peak RSS minus the RSS after
a warm-up crop minus the returned crops' bytes: the memory the style itself needs, which should stay flat
in clip length. A style that refuses a stream is given the clip as one array instead ("input array"),
whose bytes then count in its working memory.
Timings are per frame over the whole clip, with models already loaded (the warm-up), on whatever CPU
cores are free; torch/OpenCV thread counts are left at their defaults.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import time

CYCLE = 25  # distinct frames rendered once and repeated


def _peak_rss_mb() -> float:
    """VmHWM: the peak resident set since the last reset (Linux), else ru_maxrss (peak of the process)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak() -> None:
    """Forget the peak so far (clip rendering, warm-up): writing 5 to clear_refs resets VmHWM (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2 ** 20


def _run(style: str, n_frames: int, size: int, queue) -> None:
    try:
        queue.put(_measure_here(style, n_frames, size))
    except Exception as exc:  # noqa: BLE001 - reported in the table, the other styles still run
        queue.put({"style": style, "frames": n_frames, "error": f"{type(exc).__name__}: {exc}"})


def _measure_here(style: str, n_frames: int, size: int) -> dict:
    import numpy as np

    from benchmarks.realfaces import talking_clip
    from metrics.crops import crop
    from metrics.errors import InputError

    base = talking_clip("grace_hopper", n_frames=CYCLE, size=size, seed=0).frames

    class Stream:
        """A sized, re-iterable stream (like a video reader that knows its frame count)."""

        def __len__(self):
            return n_frames

        def __iter__(self):
            # back and forth through the rendered frames: no jump a shot detector would take for a cut
            period = 2 * CYCLE - 2
            return (base[min(i % period, period - i % period)] for i in range(n_frames))

    crop(base[:2], style)  # warm-up: imports, model loads, lazy initialisation
    settled = _current_rss_mb()
    _reset_peak()
    stream = Stream()
    source = (lambda: iter(stream)) if style in TWO_PASS else stream
    start = time.perf_counter()
    fed = "stream"
    try:
        result = crop(source, style)
    except InputError:
        # a style that takes only arrays: the whole clip is materialised (and counted in its peak)
        fed = "array"
        clip = np.stack(list(stream))
        start = time.perf_counter()
        result = crop(clip, style)
    seconds = time.perf_counter() - start
    out_mb = (result.frames.nbytes + getattr(result.boxes, "nbytes", 0)) / 2 ** 20
    peak = _peak_rss_mb()
    return {"style": style, "frames": n_frames, "size": size, "kept": int(len(result.kept)),
            "ms_per_frame": round(1000 * seconds / n_frames, 2), "peak_rss_mb": round(peak, 1),
            "after_warmup_mb": round(settled, 1), "output_mb": round(out_mb, 1),
            "working_mb": round(peak - settled - out_mb, 1), "detector": result.detector, "input": fed}


TWO_PASS = {"mouth-sync"}


def measure(style: str, n_frames: int, size: int) -> dict:
    ctx = mp.get_context("spawn")  # a fresh interpreter per run: ru_maxrss is not shared with the parent
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(style, n_frames, size, queue))
    proc.start()
    try:
        return queue.get(timeout=3600)
    finally:
        proc.join()


def main(argv=None) -> int:
    from metrics.crops import styles

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[250, 2500])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--styles", nargs="+", default=None, help="default: every registered style")
    ap.add_argument("--json", action="store_true", help="print one JSON object per run instead of a table")
    a = ap.parse_args(argv)
    rows = []
    for style in a.styles or styles():
        for n in a.frames:
            row = measure(style, n, a.size)
            rows.append(row)
            if a.json:
                print(json.dumps(row), flush=True)
            elif "error" in row:
                print(f"{style:18s} {n:6d} frames  ERROR {row['error']}", flush=True)
            else:
                print(f"{style:18s} {n:6d} frames  {row['ms_per_frame']:8.2f} ms/frame  "
                      f"peak {row['peak_rss_mb']:7.1f} MB  output {row['output_mb']:7.1f} MB  "
                      f"working {row['working_mb']:6.1f} MB"
                      f"  ({row['detector']}, kept {row['kept']}, input {row['input']})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
