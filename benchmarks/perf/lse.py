"""LSE throughput: our batched evaluation vs a faithful per-batch loop like syncnet_python's.

    python -m benchmarks.perf.lse --weights syncnet_v2.model [--clips 3 --frames 100]

Without --weights, a seeded stand-in with the exact architecture is used (timings do not depend on
weight values). Both paths see the same clips; their LSE values are printed side by side.
"""
from __future__ import annotations

import argparse
import json
import resource
import time

import numpy as np
import torch


@torch.no_grad()
def reference_loop(model, frames: np.ndarray, audio: np.ndarray, vshift: int = 15, batch_size: int = 20) -> dict:
    """syncnet_python's SyncNetInstance.evaluate structure: batches of 20 windows, one distance call per frame."""
    from metrics.sync import mfcc_features

    im = torch.from_numpy(frames.astype(float)).float().permute(3, 0, 1, 2)[None]  # (1, 3, T, H, W)
    cct = torch.from_numpy(mfcc_features(audio)[None, None].astype(float)).float()
    last = min(len(frames), len(audio) // 640) - 5
    im_feat, cc_feat = [], []
    for i in range(0, last, batch_size):
        im_in = torch.cat([im[:, :, v:v + 5] for v in range(i, min(last, i + batch_size))], 0)
        im_feat.append(model.forward_lip(im_in))
        cc_in = torch.cat([cct[:, :, :, v * 4:v * 4 + 20] for v in range(i, min(last, i + batch_size))], 0)
        cc_feat.append(model.forward_aud(cc_in))
    f1, f2 = torch.cat(im_feat), torch.cat(cc_feat)
    win = 2 * vshift + 1
    f2p = torch.nn.functional.pad(f2, (0, 0, vshift, vshift))
    dists = [torch.nn.functional.pairwise_distance(f1[[i]].repeat(win, 1), f2p[i:i + win]) for i in range(len(f1))]
    mdist = torch.stack(dists, 1).mean(1)
    minval, minidx = torch.min(mdist, 0)
    return {"lse_d": float(minval), "lse_c": float(torch.median(mdist) - minval), "offset": int(vshift - minidx)}


def main(argv=None) -> int:
    from metrics.sync import SyncNet, load_syncnet, lse_from_distances, sync_distances

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights")
    ap.add_argument("--clips", type=int, default=3)
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args(argv)
    if a.weights:
        model = load_syncnet(a.weights)
    else:
        torch.manual_seed(0)
        model = SyncNet().eval()
    rng = np.random.default_rng(0)
    clips = [((rng.random((a.frames, 224, 224, 3)) * 255).astype(np.uint8),
              (rng.normal(0, 3000, a.frames * 640)).astype(np.int16)) for _ in range(a.clips)]
    timings = {}
    for name, fn in (("reference-loop", lambda f, au: reference_loop(model, f, au)),
                     ("ours", lambda f, au: lse_from_distances(sync_distances(model, f, au, batch_size=a.batch)))):
        t = time.perf_counter()
        results = [fn(f, au) for f, au in clips]
        dt = time.perf_counter() - t
        timings[name] = dt
        print(json.dumps({"mode": name, "clips": a.clips, "frames_per_clip": a.frames, "seconds": round(dt, 2),
                          "clips_per_s": round(a.clips / dt, 3), "results": results,
                          "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
    print(json.dumps({"speedup": round(timings["reference-loop"] / timings["ours"], 2)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
