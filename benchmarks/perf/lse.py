"""LSE speed and memory: ours vs syncnet_python's own `SyncNetInstance.evaluate`, side by side.

    python -m benchmarks.perf.lse --clips 100 --seconds 1 --reference-dir /tmp/scratch-lse/syncnet_python \\
        [--lengths 2 10 30] [--threads 2] [--work DIR] [--weights syncnet_v2.model]

`--reference-dir` is a checkout of joonson/syncnet_python (never part of this project); its evaluate runs
unchanged in its own process, with only `.cuda()` made a no-op so it runs on CPU. Without it only our side
runs. Both sides get the same files: `--clips` clips of `--seconds` s, 224x224 (the size of syncnet_python's
face-track crops), 25 fps, H.264 + AAC, written once into `--work`; and the same weights (a seeded stand-in
of the exact architecture unless `--weights`: timings do not depend on weight values).

* throughput: all clips, end to end from the video file (the reference extracts JPEGs and a wav with
  ffmpeg and reads them back; ours decodes in a read-ahead thread and batches windows across clips);
  frames/s and clips/min, and how far our LSE values are from the reference's on the same files.
* memory: one clip of each `--lengths` second count per side, each in a fresh process after a warm-up
  clip; peak RSS (VmHWM after the warm-up) beside the decoded clip's own bytes.
* parity: ours on the very frames and wav the reference decoded (its JPEGs) must give its numbers.

Timings include everything from the file to the score; on a loaded machine compare the two sides' ratio.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SIZE, FPS, RATE = 224, 25, 16000


def make_clip(path: Path, seconds: float, seed: int) -> Path:
    """A 224x224 clip of smooth moving blobs (so H.264 stays fast) with speech-band noise, written once."""
    if path.is_file():
        return path
    import cv2

    from benchmarks.media import write_video

    rng = np.random.default_rng(seed)
    n = int(round(seconds * FPS))
    coarse = rng.integers(0, 256, (n + 8, 14, 14, 3)).astype(np.float32)
    smooth = np.stack([coarse[i:i + 8].mean(0) for i in range(n)])  # a little temporal smoothing
    frames = np.stack([cv2.resize(f, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC) for f in smooth])
    audio = (rng.normal(0, 0.1, int(seconds * RATE)) * np.sin(np.linspace(0, 40 * seconds, int(seconds * RATE))))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_video(path, np.clip(frames, 0, 255).astype(np.uint8), fps=FPS, audio=audio.astype(np.float32),
                sample_rate=RATE)
    return path


# --- the two sides, each in its own process ----------------------------------------------------------------

def _peak_mb() -> float:
    from benchmarks.perf.crops import _peak_rss_mb

    return _peak_rss_mb()


def read_bgr(path) -> np.ndarray:
    """The clip as uint8 BGR (syncnet_python reads frames with OpenCV), decoded in chunks into one array
    allocated once from the frame count, so decoding holds the clip once, not twice."""
    from benchmarks.media import iter_video, probe_video

    out = np.empty((probe_video(path)["n_frames"], SIZE, SIZE, 3), np.uint8)
    filled = 0
    for chunk in iter_video(path, chunk=32):
        out[filled:filled + len(chunk)] = chunk[..., ::-1]
        filled += len(chunk)
    return out[:filled]


def _ours(files: list[str], model, batch: int):
    """A generator of our scores, decoding (video, audio, BGR) in the read-ahead thread of sync_distances_many."""
    from benchmarks.media import read_audio
    from metrics.sync import lse_from_distances, sync_distances_many

    def decoded():
        for f in files:
            yield read_bgr(f), read_audio(f, RATE)

    for dists in sync_distances_many(model, decoded(), batch_size=batch, prefetch=2):
        r = lse_from_distances(dists)
        yield {"lse_d": r["lse_d"], "lse_c": r["lse_c"], "offset": r["offset"], "windows": len(dists)}


def _reference_instance(weights: str, reference_dir: str):
    """syncnet_python's SyncNetInstance with the weights loaded by its own loadParameters, on CPU."""
    import torch

    sys.path.insert(0, reference_dir)
    torch.nn.Module.cuda = lambda self, *a, **k: self  # the only change: the reference hard-codes .cuda()
    torch.Tensor.cuda = lambda self, *a, **k: self
    from SyncNetInstance import SyncNetInstance

    instance = SyncNetInstance()
    instance.loadParameters(weights)
    return instance


def _reference(files: list[str], instance, tmp: str):
    """A generator of syncnet_python's own evaluate on each file (its stdout silenced)."""
    for f in files:
        opt = argparse.Namespace(tmp_dir=tmp, reference=Path(f).stem, batch_size=20, vshift=15)
        with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
            offset, conf, dists = instance.evaluate(opt, videofile=f)
        mean = dists.mean(0)  # (windows, 2v+1): the reference's own distance rows
        yield {"lse_d": float(mean.min()), "lse_c": float(conf), "offset": int(offset), "windows": len(dists)}


def worker(a) -> None:
    import torch

    torch.set_num_threads(a.threads)
    files = Path(a.files).read_text().split()
    warmup = [files.pop(0)] if a.warmup else []

    if a.side == "ours":
        from metrics.sync import load_syncnet

        model = load_syncnet(a.weights)
        run = lambda paths: _ours(paths, model, a.batch)  # noqa: E731
    else:
        instance = _reference_instance(a.weights, a.reference_dir)
        run = lambda paths: _reference(paths, instance, a.tmp)  # noqa: E731

    list(run(warmup))
    from benchmarks.perf.crops import _current_rss_mb, _reset_peak

    settled = _current_rss_mb()
    _reset_peak()
    start = time.perf_counter()
    results = list(run(files))
    seconds = time.perf_counter() - start
    frames = sum(r["windows"] + 5 for r in results)
    out = {"side": a.side, "clips": len(results), "frames": frames, "seconds": round(seconds, 2),
           "frames_per_s": round(frames / seconds, 2), "clips_per_min": round(60 * len(results) / seconds, 2),
           "rss_after_warmup_mb": round(settled, 1), "peak_rss_mb": round(_peak_mb(), 1), "results": results}
    Path(a.out).write_text(json.dumps(out))


def run_side(side: str, files: list[Path], a, work: Path, warmup: Path | None = None) -> dict:
    listing = work / f"{side}-files.txt"
    listing.write_text("\n".join(str(f) for f in ([warmup] if warmup else []) + files))
    out = work / f"{side}-result.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.perf.lse", "--worker", side, "--files", str(listing),
           "--weights", str(a.weights), "--threads", str(a.threads), "--batch", str(a.batch), "--out", str(out),
           "--tmp", str(work / "reference-tmp")]
    if a.reference_dir:
        cmd += ["--reference-dir", str(Path(a.reference_dir).resolve())]
    if warmup:
        cmd.append("--warmup")
    subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL if side == "reference" else None)
    return json.loads(out.read_text())


# --- the parent: clips, runs, and the table ----------------------------------------------------------------

def parity_on_reference_inputs(a, work: Path, files: list[Path]) -> float:
    """Largest relative LSE-D difference between ours and the reference on the JPEGs and wav it decoded."""
    import glob

    import cv2
    from scipy.io import wavfile

    from metrics.functional.sync import lse

    worst = 0.0
    for f, ref in files:
        tmp = work / "reference-tmp" / f.stem
        frames = np.stack([cv2.imread(p) for p in sorted(glob.glob(str(tmp / "*.jpg")))])
        _, audio = wavfile.read(tmp / "audio.wav")
        r = lse(frames, audio, weights=a.weights)
        if r["offset"] != ref["offset"]:
            return float("inf")
        worst = max(worst, abs(r["lse_d"] - ref["lse_d"]) / ref["lse_d"])
    return worst


def _compare(ours: dict, ref: dict) -> dict:
    d = [abs(x["lse_d"] - y["lse_d"]) / y["lse_d"] for x, y in zip(ours["results"], ref["results"], strict=True)]
    c = [abs(x["lse_c"] - y["lse_c"]) for x, y in zip(ours["results"], ref["results"], strict=True)]
    same = sum(x["offset"] == y["offset"] for x, y in zip(ours["results"], ref["results"], strict=True))
    return {"max_rel_lse_d": float(max(d)), "max_abs_lse_c": float(max(c)), "same_offset": f"{same}/{len(d)}"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=100, help="clips for the throughput run (0: memory only)")
    ap.add_argument("--seconds", type=float, default=1.0, help="length of each throughput clip")
    ap.add_argument("--lengths", type=float, nargs="*", default=[2, 10, 30], help="clip lengths for peak RSS")
    ap.add_argument("--reference-dir", help="a checkout of joonson/syncnet_python (not part of this project)")
    ap.add_argument("--weights", help="syncnet_v2.model (default: a seeded stand-in written into --work)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=20, help="our windows per network call (the reference: 20)")
    ap.add_argument("--work", default="/tmp/edtalk-bench-lse", help="clips, weights and the reference's temp files")
    for hidden in ("--worker", "--files", "--out", "--tmp"):
        ap.add_argument(hidden, help=argparse.SUPPRESS)
    ap.add_argument("--warmup", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    a.side = a.worker
    if a.worker:
        worker(a)
        return 0
    return _bench(a)


def _bench(a) -> int:
    import torch

    from metrics.errors import InputError
    from metrics.standin import syncnet_state_dict

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    if not a.weights:
        a.weights = work / "syncnet_v2.model"
        if not a.weights.is_file():
            torch.save(syncnet_state_dict(0), a.weights)
    sides = ["ours", "reference"] if a.reference_dir else ["ours"]
    if a.reference_dir and not (Path(a.reference_dir) / "SyncNetInstance.py").is_file():
        raise InputError(f"--reference-dir {a.reference_dir}: no SyncNetInstance.py; pass a checkout of "
                         "joonson/syncnet_python")
    if a.reference_dir and shutil.which("ffmpeg") is None:
        raise InputError("syncnet_python's evaluate calls the ffmpeg command, which is not on PATH; install it "
                         "(e.g. apt-get install ffmpeg) or run without --reference-dir")
    clips = [make_clip(work / f"clips-{a.seconds:g}s" / f"c{k:03d}.mp4", a.seconds, k) for k in range(a.clips)]
    warmup = make_clip(work / "warmup.mp4", 1.0, 999)
    print(f"{a.clips} clips of {a.seconds:g} s at {SIZE} px, {a.threads} threads, load {os.getloadavg()[0]:.1f}",
          flush=True)
    runs = {s: run_side(s, clips, a, work, warmup) for s in sides} if a.clips else {}
    for s, r in runs.items():
        print(f"  {s:9s} {r['frames_per_s']:7.2f} frames/s  {r['clips_per_min']:8.1f} clips/min  "
              f"({r['seconds']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB)", flush=True)
    if len(runs) == 2:
        print(f"  ours/reference: {runs['ours']['clips_per_min'] / runs['reference']['clips_per_min']:.2f}x; "
              f"values from the same files: {_compare(runs['ours'], runs['reference'])}", flush=True)
        worst = parity_on_reference_inputs(a, work, list(zip(clips[:3], runs["reference"]["results"][:3],
                                                             strict=True)))
        print(f"  parity on the reference's own decoded inputs (3 clips): max relative LSE-D difference "
              f"{worst:.2e}", flush=True)
    for seconds in a.lengths:
        clip = make_clip(work / f"long-{seconds:g}s.mp4", seconds, 1000 + int(seconds))
        decoded_mb = int(round(seconds * FPS)) * SIZE * SIZE * 3 / 2 ** 20
        line = [f"{seconds:4g} s clip (decoded {decoded_mb:5.0f} MB):"]
        for s in sides:
            r = run_side(s, [clip], a, work, warmup)
            line.append(f"{s} peak RSS {r['peak_rss_mb']:6.0f} MB (+{r['peak_rss_mb'] - r['rss_after_warmup_mb']:.0f}"
                        f" over warm), {r['frames_per_s']:.1f} frames/s")
        print("  " + ";  ".join(line), flush=True)
    print(f"  load after: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
