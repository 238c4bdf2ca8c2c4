"""FID feature throughput of the FID Inception and the memory of streaming FID.

    python -m benchmarks.perf.fid [--weights pt_inception-2015-12-05-6726825d.pth] [--batches 16 32]

Without --weights a seeded stand-in of the exact architecture is used (timings do not depend on the
weight values). Prints one JSON line per measurement: images/s per batch size (256x256 frames, resized
to 299 inside the network as in pytorch-fid), then the resident memory after 64 and after 256 images
have been streamed into `FrechetInceptionDistance` (batches are generated on the fly, so the only
thing that could grow is the metric: its state is two float64 running sums per side, constant in N).
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import torch


def rss_mb() -> float:
    """Current resident set size (Linux /proc), MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def state_mb(metric) -> float:
    return sum(t.numel() * t.element_size() for t in metric.metric_state.values()) / 2 ** 20


def batches(n: int, batch: int, size: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    for i in range(0, n, batch):
        yield torch.rand(min(batch, n - i), 3, size, size, generator=g)


def main(argv=None) -> int:
    from metrics.fid import FrechetInceptionDistance
    from metrics.functional.fid import inception_features
    from metrics.inception import FIDInceptionV3, load_fid_inception

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="FID Inception state dict (default: seeded stand-in)")
    ap.add_argument("--batches", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--images", type=int, default=64, help="images timed per batch size")
    ap.add_argument("--size", type=int, default=256, help="input frame size (resized to 299)")
    ap.add_argument("--growth", type=int, nargs="+", default=[64, 128, 192, 256], metavar="N",
                    help="image counts at which the streaming metric's memory is read")
    a = ap.parse_args(argv)

    if a.weights:
        model = load_fid_inception(a.weights, device="cpu")
    else:
        torch.manual_seed(0)
        model = FIDInceptionV3().eval()
        for mod in model.modules():  # He init so the stand-in's features (and FID) are O(1), not ~1e-7
            if isinstance(mod, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    print(json.dumps({"torch_threads": torch.get_num_threads(), "weights": a.weights or "seeded stand-in",
                      "input": f"{a.size}x{a.size} float, resized to 299",
                      "rss_mb_model_loaded": round(rss_mb(), 1)}))

    for bs in a.batches:
        inception_features(next(batches(bs, bs, a.size, 99)), model, batch_size=bs)  # warm-up
        t = time.perf_counter()
        for x in batches(a.images, bs, a.size, 0):
            inception_features(x, model, batch_size=bs)
        dt = time.perf_counter() - t
        print(json.dumps({"batch": bs, "images": a.images, "seconds": round(dt, 2),
                          "images_per_s": round(a.images / dt, 2), "peak_rss_mb": round(peak_rss_mb(), 1)}))

    marks = sorted(a.growth)
    n1, n2 = marks[0], marks[-1]
    bs = a.batches[-1]
    fid = FrechetInceptionDistance(inception=model, batch_size=bs)
    seen, readings = 0, {}
    t = time.perf_counter()
    for x in batches(n2, bs, a.size, 1):
        fid.update(x, real=seen % (2 * bs) == 0)  # alternate batches between the two sides
        seen += len(x)
        if seen in marks:
            readings[seen] = {"rss_mb": round(rss_mb(), 1), "state_mb": round(state_mb(fid), 1)}
    stream_s = time.perf_counter() - t
    t = time.perf_counter()
    value = fid.compute()
    compute_s = time.perf_counter() - t
    print(json.dumps({"streamed_images": n2, "batch": bs, "seconds": round(stream_s, 2),
                      **{f"after_{n}": readings.get(n) for n in marks},
                      "rss_growth_mb": round(readings[n2]["rss_mb"] - readings[n1]["rss_mb"], 1),
                      "features_buffer_would_be_mb": round(n2 * 2048 * 8 / 2 ** 20, 1),
                      "compute_seconds": round(compute_s, 2), "fid": round(value, 6),
                      "peak_rss_mb": round(peak_rss_mb(), 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
