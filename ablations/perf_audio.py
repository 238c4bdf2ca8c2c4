"""What the audio setting adds to one run of a synthetic sweep, measured: the audio stage (reading the world with the
run's model as targets, the mouth steps, its evaluation) and EDTalk-A scoring, beside EDTalk-V's per-clip scoring.

    python -m ablations.perf_audio --world WORLD --run RUN [--preset study] [--mouth-steps 20] [--threads 1]

RUN needs a model.pt (any number of training steps: the costs do not depend on them; `edtalk train --preset study
--max-steps 3 --no-eval` makes one). The audio stage is trained into a scratch copy of RUN (RUN is not changed) with
`--mouth-steps` steps; the per-step time projects the preset's full count. Scoring writes to the scratch folder too,
`--repeats` passes per setting interleaved; `--max-clips N` scores the first N test cases only (the per-clip time is
printed, and the projection to the protocol's cases). Each phase reports wall seconds and this process's CPU
seconds: on a shared host a process can wait or be paused, and with one thread its CPU seconds are what a quiet
core's wall time would be.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path


class _Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def _score(protocol: str, run: Path, world, setting: str, max_clips: int | None, out: Path) -> tuple[_Clock, int]:
    """Wall/CPU seconds to score `setting` (per-clip metrics only) into `out` and the number of cases scored."""
    from benchmarks.protocols import api
    from edtalk.method import score_run

    if max_clips:
        from benchmarks.protocols.registry import get_protocol

        limited = dataclasses.replace(get_protocol(protocol), max_clips=max_clips)
        original = api.get_protocol
        api.get_protocol = lambda name: limited if name == protocol else original(name)
    try:
        with _Clock() as clock:
            res = score_run(protocol, out, run, data=world, progress=False, setting=setting, disentanglement=False)
        return clock, len(res["per_sample"])
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
    from edtalk.train.audio_data import records_from_world
    from edtalk.train.audio_stage import load_trained_generator, train_audio_stage

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", required=True)
    p.add_argument("--run", required=True, help="a run directory with model.pt")
    p.add_argument("--preset", default="study")
    p.add_argument("--mouth-steps", type=int, default=20, help="mouth steps to time (the preset's count is projected)")
    p.add_argument("--max-clips", type=int, default=None, help="score only the first N test cases")
    p.add_argument("--threads", type=int, default=1, help="torch threads (a sweep on 2 cores runs 2 runs x 1)")
    p.add_argument("--repeats", type=int, default=2, help="scoring passes per setting, interleaved (the best counts)")
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
        model = load_trained_generator(run)
        with _Clock() as read:  # what train_audio_stage reads first: every clip, targets from the run's model
            records = records_from_world(SyntheticWorld(args.world), cfg, model=model)
        with _Clock() as train:
            train_audio_stage(run, data_dir=args.world, preset=args.preset, seed=0, cfg=cfg, model=model,
                              records=records)
        per_step = train.cpu / cfg.mouth_iters  # (the stage's evaluation, a few seconds, is counted in)
        out = {"preset": args.preset, "threads": args.threads, "mouth_steps_timed": cfg.mouth_iters,
               "audio_stage": {"read_wall_s": round(read.wall, 1), "read_cpu_s": round(read.cpu, 1),
                               "clips_read": len(records), "train_wall_s": round(train.wall, 1),
                               "train_cpu_s": round(train.cpu, 1), "cpu_s_per_mouth_step": round(per_step, 2),
                               f"projected_cpu_s_{full.mouth_iters}_steps": round(
                                   read.cpu + per_step * full.mouth_iters)}}
        # interleaved (video, audio, video, audio, ...), each pass into a fresh file; the best pass per setting
        for k in range(args.repeats):
            for setting in ("video", "audio"):
                clock, n = _score(protocol, run, args.world, setting, args.max_clips, run / f"{setting}{k}.json")
                got = {"wall_s": round(clock.wall, 1), "cpu_s": round(clock.cpu, 1), "cases": n,
                       "cpu_s_per_case": round(clock.cpu / n, 2),
                       f"projected_cpu_s_{n_cases}_cases": round(clock.cpu / n * n_cases)}
                best = out.setdefault(f"score_{setting}", got)
                out[f"score_{setting}"] = got if got["cpu_s"] < best["cpu_s"] else best
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
