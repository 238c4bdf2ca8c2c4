"""Speed of `edtalk generate` at 256 px: clips per minute on a MEAD-layout mini dataset of real-face clips.

    python -m edtalk.perf.generate --clips 2 --frames 25 --setting audio --threads 2

Builds the clips (benchmarks.datasets.mini_mead) and seeded stand-ins of the release's checkpoints in a
temporary folder, then times `edtalk.generate.generate_test_set` end to end (reading the GT clip, Audio2Lip,
encoding, decoding, H.264 + AAC writing), after one warm-up clip that is not counted. Prints one JSON line with
clips/minute, frames/second, peak RSS, torch threads and the machine's load average before and after: on a
CPU shared with other jobs the load says how much of it the run had.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", type=int, default=2, help="timed clips (one more is generated first, untimed)")
    ap.add_argument("--frames", type=int, default=25, help="frames per clip (25 = 1 s)")
    ap.add_argument("--setting", default="audio", choices=("audio", "video"))
    ap.add_argument("--threads", type=int, default=2, help="torch threads")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import torch

    from benchmarks.datasets.mini_mead import SPEAKER_PHOTOS, build_mini_mead
    from benchmarks.datasets.real import official_test_names
    from edtalk.generate import generate_test_set
    from edtalk.standin import write_official_standins

    torch.set_num_threads(args.threads)
    speakers = tuple(SPEAKER_PHOTOS)
    names = [n for n in official_test_names("mead") if n.split("#")[0] in speakers][:args.clips + 1]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = build_mini_mead(tmp / "MEAD", names, n_frames=args.frames, lists_dir=tmp / "lists")
        write_official_standins(0, tmp / "ckpt")
        common = dict(setting=args.setting, checkpoint_dir=tmp / "ckpt", lists=data["lists"], batch=args.batch,
                      device=args.device, progress=False)
        generate_test_set("mead-edtalk", data["root"], tmp / "gen", max_clips=1, **common)  # warm-up
        load_before = os.getloadavg()
        start = time.perf_counter()
        summary = generate_test_set("mead-edtalk", data["root"], tmp / "gen", **common)
        seconds = time.perf_counter() - start
        load_after = os.getloadavg()
    timed = summary["generated"]
    print(json.dumps({
        "setting": args.setting, "size": 256, "clips": timed, "frames_per_clip": args.frames,
        "seconds": round(seconds, 2), "clips_per_minute": round(60 * timed / seconds, 3),
        "frames_per_second": round(timed * args.frames / seconds, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "load_average_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
