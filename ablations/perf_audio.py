"""What the audio setting adds to one run of a synthetic sweep, measured: the audio stage (reading the world with the
run's model as targets, the mouth steps, its evaluation) and EDTalk-A scoring, beside EDTalk-V's per-clip scoring.

    python -m ablations.perf_audio --world WORLD --run RUN [--preset study] [--mouth-steps 20] [--threads 1]

RUN needs a model.pt (any number of training steps: the costs do not depend on them; `edtalk train --preset study
--max-steps 3 --no-eval` makes one). The audio stage is trained into a scratch copy of RUN (RUN is not changed) with
`--mouth-steps` steps; the per-step time projects the preset's full count. Scoring writes to the scratch folder
too; `--max-clips N` scores the first N test cases only (the per-clip time is printed, and the projection to the
protocol's cases).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path


def _score(protocol: str, run: Path, world, setting: str, max_clips: int | None) -> tuple[float, int]:
    """Seconds to score `setting` (per-clip metrics only) and the number of cases scored."""
    from benchmarks.protocols import api
    from edtalk.method import SETTING_RESULTS, score_run

    if max_clips:
        from benchmarks.protocols.registry import get_protocol

        limited = dataclasses.replace(get_protocol(protocol), max_clips=max_clips)
        original = api.get_protocol
        api.get_protocol = lambda name: limited if name == protocol else original(name)
    try:
        t0 = time.perf_counter()
        res = score_run(protocol, run / SETTING_RESULTS[setting], run, data=world, progress=False, setting=setting,
                        disentanglement=False)
        return time.perf_counter() - t0, len(res["per_sample"])
    finally:
        if max_clips:
            api.get_protocol = original


def main(argv=None) -> int:
    import torch

    from benchmarks.datasets.synthetic import SyntheticWorld
    from benchmarks.evaluators import load_evaluators
    from benchmarks.protocols.registry import get_protocol
    from benchmarks.protocols.synthetic import synthetic_cases
    from edtalk.presets import audio_stage_preset, get_preset
    from edtalk.train.audio_stage import load_trained_generator, train_audio_stage

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", required=True)
    p.add_argument("--run", required=True, help="a run directory with model.pt")
    p.add_argument("--preset", default="study")
    p.add_argument("--mouth-steps", type=int, default=20, help="mouth steps to time (the preset's count is projected)")
    p.add_argument("--max-clips", type=int, default=None, help="score only the first N test cases")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a sweep on 2 cores runs 2 runs x 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    preset = get_preset(args.preset)
    protocol = preset.protocol
    full = dataclasses.replace(audio_stage_preset(args.preset), targets="model")
    cfg = dataclasses.replace(full, mouth_iters=min(args.mouth_steps, full.mouth_iters))
    load_evaluators(args.world, progress=False)  # trained and cached before any timing
    n_cases = len(synthetic_cases(SyntheticWorld(args.world), get_protocol(protocol)))
    with tempfile.TemporaryDirectory(prefix="perf-audio-") as tmp:
        run = Path(tmp) / "run"
        run.mkdir()
        shutil.copy(Path(args.run) / "model.pt", run / "model.pt")
        shutil.copy(Path(args.run) / "config.json", run / "config.json")
        t0 = time.perf_counter()
        res = train_audio_stage(run, data_dir=args.world, preset=args.preset, seed=0, cfg=cfg,
                                model=load_trained_generator(run))
        stage_s = time.perf_counter() - t0
        t = res["timings"]
        per_step = t["mouth_s"] / cfg.mouth_iters
        fixed = stage_s - t["mouth_s"]
        out = {"preset": args.preset, "threads": args.threads, "mouth_steps_timed": cfg.mouth_iters,
               "audio_stage": {"wall_s": round(stage_s, 1), "read_s": round(t["read_s"], 1),
                               "mouth_s": round(t["mouth_s"], 1), "per_mouth_step_s": round(per_step, 2),
                               "eval_s": round(t.get("eval_s", 0.0), 1),
                               f"projected_{full.mouth_iters}_steps_s": round(fixed + per_step * full.mouth_iters)}}
        for setting in ("audio", "video"):
            seconds, n = _score(protocol, run, args.world, setting, args.max_clips)
            out[f"score_{setting}"] = {"wall_s": round(seconds, 1), "cases": n, "per_case_s": round(seconds / n, 2),
                                       f"projected_{n_cases}_cases_s": round(seconds / n * n_cases)}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
