"""The sweep on a real protocol (mead-edtalk, hdtf-edtalk): each run trains on the dataset's official train
list, generates the official test list with its own model and scores the videos with the real metrics.

Per run directory (besides the training files of `edtalk.train`):
    audio/                                            the audio stage on the same clips (--setting audio,
                                                      `edtalk train --stage audio --dataset`; resumable)
    generated-<setting>/<case>.mp4 + generate.json   `edtalk generate --run RUN --setting S` (resumable)
    results.json (+ .rows.jsonl, .features/)          `edtalk evaluate --videos generated-<setting>` (resumable)
and OUT/gt-cache/: the ground truth's crops and evaluator outputs, computed once for every run.
results.json's `method` is the videos folder's, plus the run's variant, seed and run directory, so a report
labels its row by variant (`edtalk report SWEEP` gives the Table-1 layout, one row per run).

Checked once in the launching process, before any run trains, each as one line: the data root is not a
synthetic world (and a synthetic protocol's is one), the test clips are there, every evaluator weight file
the metrics need is found; the training clips are prepared into the cache once (decoding and dlib), so
runs in parallel only read it.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from metrics.errors import InputError
from metrics.utils import atomic_write_json

SETTINGS = ("audio", "video")
# The paper's ablation table is audio-driven (EDTalk-A): each run also trains stage 3 on the real clips.
DEFAULT_SETTING = "audio"


@dataclass(frozen=True)
class RealOptions:
    """What a real-protocol run trains on and how it is generated and scored (all of it changes the numbers)."""

    dataset: str                       # mead | hdtf (the protocol's)
    lists: str | None = None           # a folder with train.json/test.json overriding the bundled lists
    limit_clips: int | None = None     # at most N training clips per split (dry runs); the test set is the list's
    setting: str = DEFAULT_SETTING     # audio (EDTalk-A) | video (EDTalk-V)
    metrics: tuple[str, ...] | None = None  # a subset of the protocol's metrics (default: all)
    verify_weights: bool = True        # False accepts evaluator files whose hash differs (seeded stand-ins)
    fid_resamples: int = 20
    cache: str | None = None           # prepared training clips (default DATA/.edtalk-train-cache); not hashed

    def hashed(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "cache"}

    def train_options(self) -> dict:
        """`edtalk.train.api.train_run`'s `real`."""
        return {"dataset": self.dataset, "lists": self.lists, "limit_clips": self.limit_clips, "cache": self.cache}


def real_options(proto, dataset: str | None = None, **given) -> RealOptions:
    """The options of a sweep of `proto` (a Protocol); `dataset`, when given, must be the protocol's."""
    if dataset is not None and dataset != proto.data:
        raise InputError(f"--dataset {dataset} does not match --protocol {proto.name} (which scores "
                         f"{proto.data.upper()}); drop --dataset, it is inferred from the protocol")
    setting = given.get("setting") or DEFAULT_SETTING
    if setting not in SETTINGS:
        raise InputError(f"--setting must be one of {', '.join(SETTINGS)}, not {setting!r}")
    if given.get("limit_clips") is not None and int(given["limit_clips"]) < 1:
        raise InputError(f"--limit-clips must be at least 1, not {given['limit_clips']}")
    metrics = given.get("metrics")
    if metrics:
        metrics = tuple(m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip())
        for m in metrics:
            proto.metric(m)  # an unknown metric is one line naming the protocol's
    lists = given.get("lists")
    if lists is not None and not Path(lists).is_dir():
        raise InputError(f"--lists {lists}: not a directory; pass a folder with train.json and test.json")
    verify = given.get("verify_weights")
    resamples = given.get("fid_resamples")
    if resamples is not None and int(resamples) < 2:
        raise InputError(f"--fid-resamples must be at least 2, not {resamples}")
    return RealOptions(proto.data, str(Path(lists).resolve()) if lists else None, given.get("limit_clips"), setting,
                       metrics or None, True if verify is None else bool(verify),
                       RealOptions.fid_resamples if resamples is None else int(resamples),
                       str(Path(given["cache"]).resolve()) if given.get("cache") else None)


def check_data(proto, data) -> None:
    """A real protocol refuses a synthetic world and a synthetic protocol anything else: one line each."""
    root = Path(data)
    if not root.is_dir():
        what = "synthetic world (`edtalk data synth --out DIR`)" if proto.data == "synthetic" else \
            f"{proto.data.upper()} root"
        raise InputError(f"--data {root}: not a directory; pass the {what}")
    is_world = (root / "world.json").is_file()
    if proto.data == "synthetic" and not is_world:
        raise InputError(f"--data {root} is not a synthetic world (no world.json), but --protocol {proto.name} "
                         "scores the synthetic world; for MEAD/HDTF use --protocol mead-edtalk|hdtf-edtalk")
    if proto.data != "synthetic" and is_world:
        raise InputError(f"--data {root} is a synthetic world, but --protocol {proto.name} trains and scores real "
                         f"{proto.data.upper()} video; pass the {proto.data.upper()} root, or a synthetic protocol "
                         "(synthetic-smoke, synthetic-study) for the world")


def prepare(proto, data, real: RealOptions, size: int, progress: bool = True) -> dict:
    """Before any run: the test clips and evaluator weights are there, and the training clips are prepared
    into the cache at the model's `size`. Returns the preparation report (edtalk.train.real_data)."""
    from benchmarks.protocols.real_data import real_cases
    from benchmarks.protocols.real_evaluators import RealEvaluators
    from edtalk.train.real_data import load_real_pools, report_lines

    real_cases(proto, data, real.lists)
    RealEvaluators(verify=real.verify_weights).require(real.metrics or proto.metric_names)
    if progress:
        print(f"sweep: preparing the {real.dataset.upper()} training clips at {size} px (decoded once, then cached)")
    _, _, report = load_real_pools(data, real.dataset, size, real.lists, real.limit_clips, real.cache)
    for line in report_lines(report)[:6]:
        print(f"sweep: {line}")
    return report


def audio_config(spec):
    """The audio stage's config of a run (the preset's, targets from the run's trained model: real video has no
    ground truth; the sweep's max_steps caps each part when it trains), or None with --setting video."""
    if spec.real.setting != "audio":
        return None
    from edtalk.presets import audio_stage_preset

    return dataclasses.replace(audio_stage_preset(spec.preset), targets="model")


def train_audio(spec) -> None:
    """EDTalk-A's audio stage on the run's training clips, targets from its generator; skipped when done."""
    from edtalk.train.audio_real import train_audio_on_real

    real: RealOptions = spec.real
    audio = spec.run_dir / "audio"
    if (audio / "results.json").is_file():  # written last by the stage
        return
    train_audio_on_real(spec.run_dir, spec.data, real.dataset, lists=real.lists, limit_clips=real.limit_clips,
                        cache=real.cache, preset=spec.preset, seed=spec.seed, cfg=audio_config(spec),
                        max_steps=spec.max_steps, resume=(audio / "config.json").is_file())


def generate_and_score(spec, progress: bool = False) -> dict:
    """(Audio stage,) generate the test set with the run's model, score it, label the results by the run."""
    from benchmarks.protocols.api import evaluate_protocol
    from edtalk.generate import generate_test_set

    real: RealOptions = spec.real
    run_dir = spec.run_dir
    if real.setting == "audio":
        train_audio(spec)
    videos = run_dir / f"generated-{real.setting}"
    # A model smaller than the data (smoke: 64 px) writes at the GT clip's size, where the crops find the face.
    generate_test_set(spec.protocol, spec.data, videos, setting=real.setting, run=run_dir, lists=real.lists,
                      progress=progress, match_ground_truth_size=True)
    out = run_dir / "results.json"
    results = evaluate_protocol(spec.protocol, out, videos=videos, data=spec.data, lists=real.lists,
                                metrics=list(real.metrics) if real.metrics else None, progress=progress,
                                real_options={"verify_weights": real.verify_weights,
                                              "fid_resamples": real.fid_resamples,
                                              # the GT's crops and evaluator outputs, shared by every run
                                              "gt_cache": Path(spec.root) / "gt-cache"})
    generated = json.loads((videos / "generate.json").read_text()).get("method", {})
    results["method"] = {**results["method"], "variant": spec.variant, "seed": spec.seed,
                         "run_dir": str(run_dir.resolve()), "generated": generated}
    atomic_write_json(out, results)
    return results
