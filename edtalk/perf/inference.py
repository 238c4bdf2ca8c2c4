"""Inference speed: our batched path vs the release's per-frame procedure, same model and weights.

    python -m edtalk.perf.inference --preset paper --frames 8
    python -m edtalk.perf.inference --preset smoke --frames 64

Scenarios: `one-driver` (one clip drives mouth, pose and expression: video-driven reconstruction)
and `three-drivers` (three different clips). Each mode runs in its own process so peak memory
(max RSS) is per mode. Modes: `release-per-frame` (the reference), `ours-exact` (default
`edtalk animate`: same bits as the reference) and `ours-batched` (`exact=False`). Prints one JSON
line per (scenario, mode) and a summary with speed-ups and max abs differences; exits non-zero if
`ours-exact` differs from the reference by more than 1e-4. `release-per-frame` is our model run as the
release's demo runs it; `python -m edtalk.perf.release_side_by_side` runs the release's own code.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def _worker(preset: str, frames: int, batch: int, mode: str, scenario: str, out_file: str) -> None:
    import numpy as np
    import torch

    from edtalk.animate import animate, animate_per_frame
    from edtalk.model import EDTalk
    from edtalk.presets import model_preset

    torch.manual_seed(0)
    model = EDTalk(model_preset(preset)).eval()
    size = model.cfg.size
    g = torch.Generator().manual_seed(1)
    src = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    clips = [torch.rand(frames, 3, size, size, generator=g) * 2 - 1 for _ in range(3)]
    kw = (dict(mouth=clips[0], pose=clips[0], expression=clips[0]) if scenario == "one-driver"
          else dict(mouth=clips[0], pose=clips[1], expression=clips[2]))
    with torch.no_grad():
        # warm-up on one frame so allocator and kernels are ready in both modes
        animate(model, src, **{k: v[:1] for k, v in kw.items()})
        t = time.perf_counter()
        if mode == "release-per-frame":
            out = animate_per_frame(model, src, **kw)
        else:
            out = animate(model, src, batch_size=batch, exact=(mode == "ours-exact"), **kw)
        dt = time.perf_counter() - t
    np.save(out_file, out.numpy())
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"preset": preset, "scenario": scenario, "mode": mode, "frames": frames, "seconds": dt,
                      "fps": frames / dt, "peak_rss_mb": round(rss_mb, 1), "threads": torch.get_num_threads()}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--scenarios", default="one-driver,three-drivers")
    ap.add_argument("--worker", nargs=3, metavar=("MODE", "SCENARIO", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        _worker(a.preset, a.frames, a.batch, *a.worker)
        return 0
    import tempfile

    import numpy as np

    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        for scenario in a.scenarios.split(","):
            res = {}
            for mode in ("release-per-frame", "ours-exact", "ours-batched"):
                out = f"{tmp}/{scenario}-{mode}.npy"
                proc = subprocess.run([sys.executable, "-m", "edtalk.perf.inference", "--preset", a.preset,
                                       "--frames", str(a.frames), "--batch", str(a.batch), "--worker", mode,
                                       scenario, out], capture_output=True, text=True, check=True)
                line = proc.stdout.strip().splitlines()[-1]
                print(line, flush=True)
                res[mode] = (json.loads(line), np.load(out))
            ref_fps, ref_out = res["release-per-frame"][0]["fps"], res["release-per-frame"][1]
            for mode in ("ours-exact", "ours-batched"):
                diff = float(np.abs(res[mode][1] - ref_out).max())
                summary.append({"preset": a.preset, "scenario": scenario, "mode": mode,
                                "speedup": res[mode][0]["fps"] / ref_fps, "max_abs_diff": diff,
                                "within_1e-4": diff <= 1e-4})
    for s in summary:
        print(json.dumps(s))
    return 0 if all(s["within_1e-4"] for s in summary if s["mode"] == "ours-exact") else 1


if __name__ == "__main__":
    sys.exit(main())
