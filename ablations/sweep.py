"""The ablation sweep: train and evaluate each variant × seed, resumably, locally or on Ray.

On the synthetic protocols a run is scored on the world directly; on the real ones (mead-edtalk,
hdtf-edtalk) it trains on the dataset's train list, generates the test list and scores the videos
(ablations.real_sweep, which also says what a run directory holds then).

Layout of a sweep directory:
    DIR/sweep.json                    the sweep's definition (protocol, preset, variants, seeds, data)
    DIR/runs/<variant>-s<seed>-<hash>/  one run directory per (variant, seed, config hash):
        train files (config.json, checkpoints/, model.pt, logs/, samples/ …, see edtalk.train),
        results.json (+ .rows.jsonl while evaluating), confusion.json, disentanglement.json: EDTalk-V,
        audio/ + results-audio.json, confusion-audio.json: EDTalk-A (the audio stage trained on the world with
            the run's model as targets, then scored with mouth from speech), when the sweep's settings have audio,
        status.json   {"state": "done"|"failed", "error": …} written last, atomically.
Which settings a synthetic run scores is the preset's sweep row ("settings") or `edtalk sweep --setting`; they are
part of the run's config hash, so a sweep resumed with other settings never mixes runs.
A re-run skips runs whose status is done, resumes the others from their checkpoints (training) and
row files (evaluation). Results are collected from the run directories, never from the launching
process, so a sweep killed at any point loses at most the step in flight.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from ablations.real_sweep import SETTINGS, RealOptions
from ablations.variants import PAPER_ABLATIONS  # noqa: F401  (the variant sets live in variants.py)
from metrics.errors import InputError, UserError
from metrics.utils import atomic_write_json

DEFAULT_SYNTHETIC_SETTINGS = ("video",)  # a preset row without "settings"
# The audio-stage parts whose targets come from heads that the stages a variant shares with full fix (mouth and
# pose heads, stages 0-1) and that render through no part stage 2 trains (the mouth's reconstruction decodes
# without expression): a variant sharing stages 0-1 can take full's audio stage when it trains only these.
AUDIO_PARTS_FIXED_BY_STAGE_1 = ("mouth", "pose")


def parse_settings(value) -> tuple[str, ...]:
    """`--setting`: audio, video, both, or a comma list; returned in the canonical order (audio first)."""
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(i).strip() for i in items if str(i).strip()]
    names = list(SETTINGS) if names == ["both"] else names
    bad = [n for n in names if n not in SETTINGS]
    if bad or not names:
        raise InputError(f"--setting must be audio, video, both or a comma list of them, not {value!r}")
    return tuple(s for s in SETTINGS if s in names)


def preset_settings(preset: str) -> tuple[str, ...]:
    """The settings a synthetic sweep of `preset` scores by default (its sweep row)."""
    from edtalk.presets import get_preset

    return parse_settings((get_preset(preset).sweep or {}).get("settings", DEFAULT_SYNTHETIC_SETTINGS))


@dataclass(frozen=True)
class RunSpec:
    variant: str
    seed: int
    preset: str
    protocol: str
    data: str
    root: str
    # Stages taken from `full`'s run with the same seed (Variant.shares_with_full), when the sweep trains it.
    shared: tuple[str, ...] = ()
    max_steps: int | None = None  # every stage cut to at most this many steps (dry runs)
    real: RealOptions | None = None  # a real protocol's data and scoring options; None on the synthetic world
    # What a synthetic run scores: "video" (EDTalk-V, results.json), "audio" (EDTalk-A, results-audio.json).
    settings: tuple[str, ...] = DEFAULT_SYNTHETIC_SETTINGS

    def train_config(self):
        from ablations.variants import resolve_config

        return resolve_config(self.preset, self.variant, self.seed, max_steps=self.max_steps)

    def audio_config(self):
        """A synthetic run's audio-stage config (the preset's, targets from the run's own model, each part capped
        by max_steps as on real runs), or None when it does not score the audio setting."""
        if self.real is not None or "audio" not in self.settings:
            return None
        from edtalk.presets import audio_stage_preset

        return dataclasses.replace(audio_stage_preset(self.preset), targets="model").capped(self.max_steps)

    @property
    def shares_audio(self) -> bool:
        """Whether this run takes full's audio stage (see AUDIO_PARTS_FIXED_BY_STAGE_1 and
        Variant.shares_audio_with_full); tests/ablations/test_sweep_audio.py checks the computation is full's."""
        from ablations.variants import get_variant

        audio = self.audio_config()
        return bool(audio is not None and self.shared and get_variant(self.variant).shares_audio_with_full
                    and set(audio.parts) <= set(AUDIO_PARTS_FIXED_BY_STAGE_1))

    @property
    def config_hash(self) -> str:
        what = {"train": self.train_config().to_dict(), "protocol": self.protocol}
        if self.real is not None:
            from ablations.real_sweep import audio_config

            what["real"] = self.real.hashed()
            audio = audio_config(self)
            if audio is not None:
                what["audio"] = audio.to_dict()
        elif self.settings != DEFAULT_SYNTHETIC_SETTINGS:  # video-only runs keep the hashes they always had
            what["settings"] = list(self.settings)
            audio = self.audio_config()
            if audio is not None:
                what["audio"] = audio.to_dict()
        if self.shared:
            what["shared_with_full"] = {"stages": list(self.shared), "full": self.parent.config_hash}
            if self.shares_audio:
                what["shared_with_full"]["audio"] = True
        blob = json.dumps(what, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:8]

    @property
    def parent(self) -> RunSpec | None:
        """The `full` run this one takes its shared stages from."""
        if not self.shared:
            return None
        return dataclasses.replace(self, variant="full", shared=())

    @property
    def parent_checkpoint(self) -> Path | None:
        """full's end-of-stage checkpoint this run starts from (after its last shared stage)."""
        return self.parent.run_dir / "checkpoints" / f"{self.shared[-1]}.pt" if self.shared else None

    def parent_ready(self) -> bool:
        """Whether full's run has left what this run takes from it (its checkpoint, and its audio stage)."""
        if not self.shared:
            return True
        audio_done = not self.shares_audio or (self.parent.run_dir / "audio" / "results.json").is_file()
        return self.parent_checkpoint.exists() and audio_done

    @property
    def key(self) -> str:
        return f"{self.variant}-s{self.seed}-{self.config_hash}"

    @property
    def run_dir(self) -> Path:
        return Path(self.root) / "runs" / self.key


def _status(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "status.json").read_text())
    except (OSError, ValueError):
        return {}


def run_one(spec: RunSpec, threads: int | None = None, progress: bool = False) -> dict:
    """Train (or resume) and evaluate one run; writes status.json last. Returns the status."""
    import torch

    from edtalk.train.api import train_run

    if threads:
        torch.set_num_threads(threads)
    run_dir = spec.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        # eval.json (the held-out check) is written after model.pt: a run killed between the two resumes
        # its training call, which skips the finished stages and writes it.
        if not ((run_dir / "model.pt").exists() and (run_dir / "eval.json").exists()):
            resume = (run_dir / "checkpoints" / "last.pt").exists()
            kw = {}
            if spec.shared and not resume:
                parent, ckpt = spec.parent, spec.parent_checkpoint
                if not ckpt.exists():
                    raise UserError(f"{spec.key} starts from {parent.key}'s {spec.shared[-1]} checkpoint, which "
                                    f"is missing ({_status(parent.run_dir).get('error', 'not trained yet')}); "
                                    "re-run the sweep once full has trained")
                kw["adopt"] = (ckpt, spec.shared)
            train_run(spec.train_config(), run_dir, data_dir=spec.data, resume=resume, progress=progress,
                      real=spec.real.train_options() if spec.real else None, **kw)
        if spec.real is None:
            from edtalk.method import SETTING_RESULTS, score_run

            for setting in spec.settings:
                if setting == "audio":
                    train_audio(spec, progress)
                score_run(spec.protocol, run_dir / SETTING_RESULTS[setting], run_dir, data=spec.data,
                          progress=progress, setting=setting)
        else:
            from ablations.real_sweep import generate_and_score

            generate_and_score(spec, progress=progress)
        status = {"state": "done", "seconds": round(time.time() - t0, 1), "key": spec.key}
    except Exception as exc:  # noqa: BLE001 — one failing run must not stop or corrupt the others
        status = {"state": "failed", "error": f"{type(exc).__name__}: {exc}", "key": spec.key,
                  "traceback": traceback.format_exc(limit=8)}
    atomic_write_json(run_dir / "status.json", status)
    return status


def train_audio(spec: RunSpec, progress: bool = False) -> None:
    """EDTalk-A's audio stage of a synthetic run into RUN/audio/ (the preset's audio row, targets from the run's
    model), as `edtalk train --stage audio` trains it; skipped when RUN/audio/results.json (written last) is there,
    resumed when RUN/audio/config.json is. A run that shares it (`spec.shares_audio`) copies full's instead."""
    import shutil

    from edtalk.train.audio_stage import load_trained_generator, train_audio_stage

    audio = spec.run_dir / "audio"
    if (audio / "results.json").is_file():
        return
    if spec.shares_audio:
        theirs = spec.parent.run_dir / "audio"
        if not (theirs / "results.json").is_file():
            raise UserError(f"{spec.key} takes {spec.parent.key}'s audio stage, which is not finished "
                            f"({_status(spec.parent.run_dir).get('error', 'not trained yet')}); re-run the sweep "
                            "once full has trained")
        audio.mkdir(parents=True, exist_ok=True)
        atomic_write_json(audio / "shared.json", {"from": str(theirs.resolve()), "why": "the audio stage reads "
                          "only what the shared stages trained (ablations.sweep.AUDIO_PARTS_FIXED_BY_STAGE_1)"})
        for name in ("config.json", "audio2motion.pt", "results.json"):  # results.json last: the stage is done
            shutil.copyfile(theirs / name, audio / f".{name}.partial")
            os.replace(audio / f".{name}.partial", audio / name)
        return
    if progress:
        print(f"sweep: {spec.key}: training the audio stage (EDTalk-A)")
    train_audio_stage(spec.run_dir, data_dir=spec.data, preset=spec.preset, seed=spec.seed, cfg=spec.audio_config(),
                      model=load_trained_generator(spec.run_dir), resume=(audio / "config.json").is_file())


def _ray_run(address: str, specs: list[RunSpec], threads: int, fail_fast: bool, worker=None) -> list[dict]:
    """One Ray task per run (`num_cpus=threads`); "local" starts a Ray instance on this machine.
    Results still come from the run directories: the returned statuses only drive --fail-fast."""
    import ray

    ray.init(address=address if address != "local" else None, ignore_reinit_error=True,
             include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=threads)(worker or run_one)
    pending = {remote.remote(s, threads): s for s in specs}
    out = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        spec = pending.pop(done[0])
        st = ray.get(done[0])
        out.append(st)
        if fail_fast and st["state"] == "failed":
            for ref in pending:
                ray.cancel(ref)
            raise UserError(f"run {spec.key} failed: {st['error']} (see {spec.run_dir}/status.json)")
    return out


def run_sweep(protocol: str, variants, seeds: int, out, data, preset: str = "smoke", *, jobs: int | None = None,
              keep_going: bool = True, ray_address: str | None = None, progress: bool = True,
              share_stages: bool = True, max_steps: int | None = None, real: dict | None = None,
              settings=None) -> dict:
    """Train + evaluate every variant × seed into `out`; returns {"runs": [...], "failed": [...]}.

    With `share_stages` and `full` among the variants, a variant whose switches act only in later
    stages (`Variant.shares_with_full`) starts from full's checkpoint after those stages, same seed.
    `max_steps` cuts every stage (dry runs). `real`: a real protocol's options (`ablations.real_sweep.
    real_options`: dataset, lists, limit_clips, setting, metrics, verify_weights, fid_resamples, cache).
    `settings` (`parse_settings`: audio, video, both or a comma list; default the preset's row): what a synthetic
    run scores; a real protocol generates one setting (`real["setting"]` when given both ways)."""
    from ablations.real_sweep import check_data, prepare, real_options
    from ablations.variants import expand_variants, resolve_config, sweep_plan
    from benchmarks.protocols.registry import get_protocol

    proto = get_protocol(protocol)
    variants = expand_variants(variants)  # names, and the sets paper, extended, all
    if int(seeds) < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}")
    check_data(proto, data)
    size = resolve_config(preset, max_steps=max_steps).model.size  # also checks max_steps
    real, synthetic_settings = _route_settings(proto, preset, settings, real)
    if proto.data == "synthetic":
        flags = {"verify_weights": "unverified-weights"}
        given = [flags.get(k, k.replace("_", "-")) for k, v in (real or {}).items() if v is not None]
        if given:
            raise InputError(f"{', '.join('--' + k for k in given)} only apply to the real "
                             f"protocols (mead-edtalk, hdtf-edtalk), not {proto.name}")
        real_opts = None
    else:
        real_opts = real_options(proto, **(real or {}))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    definition = {"schema": "edtalk-bench/sweep@1", "protocol": proto.to_dict()["id"], "preset": preset,
                  "variants": variants, "seeds": int(seeds), "data": str(Path(data).resolve()),
                  "share_stages": bool(share_stages), "max_steps": max_steps,
                  "real": dataclasses.asdict(real_opts) if real_opts else None,
                  "settings": list(synthetic_settings) if real_opts is None else [real_opts.setting]}
    share = bool(share_stages) and "full" in variants
    old = out / "sweep.json"
    if old.exists():
        prev = json.loads(old.read_text())
        keys = ("protocol", "preset", "data")
        if {k: prev.get(k) for k in keys} != {k: definition[k] for k in keys}:
            raise UserError(f"{out} holds a sweep with another protocol/preset/data ({prev.get('protocol')}, "
                            f"{prev.get('preset')}, {prev.get('data')}); use a new --out")
        definition["variants"] = list(dict.fromkeys(prev.get("variants", []) + variants))
    atomic_write_json(old, definition)
    if proto.data == "synthetic":
        # The report shows what each evaluator is worth next to the scores it produced.
        from benchmarks.evaluators import load_evaluators
        from benchmarks.protocols.ground_truth import score_ground_truth
        from edtalk.presets import get_preset

        ev = load_evaluators(data, progress=False)
        atomic_write_json(out / "evaluators.json", {"validation": ev.validation, "meta": ev.meta})
        if (get_preset(preset).sweep or {}).get("ground_truth"):  # the ceiling row (reports.claims)
            score_ground_truth(proto.name, out / "ground-truth" / "results.json", data=data, progress=progress)
    extra = {"max_steps": max_steps, "real": real_opts}
    if real_opts is None:
        extra["settings"] = synthetic_settings
    specs = [make_spec(v, s, preset, proto.name, str(Path(data).resolve()), str(out), share, **extra)
             for v, s in sweep_plan(variants, seeds, preset)]
    _set_aside_superseded(out, preset, proto.name, str(Path(data).resolve()), share, **extra)
    todo = [s for s in specs if _status(s.run_dir).get("state") != "done"]
    if todo and real_opts is not None:
        prepare(proto, data, real_opts, size, progress)
    # Runs that take stages from full's run go after it (a second wave), unless it is done already.
    first = [s for s in todo if s.parent_ready()]
    waves = [w for w in (first, [s for s in todo if s not in first]) if w]
    for wave in waves:
        _run_wave(wave, len(specs), len(todo), jobs, keep_going, ray_address, progress)
    return collect_sweep(out)


def _route_settings(proto, preset: str, settings, real: dict | None) -> tuple[dict, tuple[str, ...]]:
    """(the real options with --setting in them, the settings a synthetic run scores)."""
    real = dict(real or {})
    if settings is not None and proto.data != "synthetic":
        chosen = parse_settings(settings)
        if len(chosen) != 1:
            raise InputError(f"--setting {settings}: a real protocol generates one setting per sweep (audio or "
                             "video); run a second sweep into another --out for the other")
        real["setting"] = chosen[0]
    return real, preset_settings(preset) if settings is None else parse_settings(settings)


def make_spec(variant: str, seed: int, preset: str, protocol: str, data: str, root: str, share: bool,
              **extra) -> RunSpec:
    """`extra`: RunSpec's max_steps, real and settings."""
    from ablations.variants import get_variant

    shared = get_variant(variant).shares_with_full if share and variant != "full" else ()
    return RunSpec(variant, seed, preset, protocol, data, root, tuple(shared), **extra)


def _run_wave(todo: list[RunSpec], n_specs: int, n_todo: int, jobs, keep_going, ray_address, progress) -> None:
    cores = os.cpu_count() or 1
    jobs = max(1, min(jobs or default_jobs(cores), len(todo) or 1))
    threads = max(1, cores // jobs)
    if todo:
        print(f"sweep: {n_specs - n_todo} of {n_specs} runs already done; running {len(todo)} "
              f"({'ray ' + ray_address if ray_address else f'{jobs} at a time'}, {threads} thread(s) each)")
    if ray_address:
        _ray_run(ray_address, todo, threads, fail_fast=not keep_going)
    elif jobs == 1:
        from tqdm import tqdm

        for spec in tqdm(todo, desc="sweep", unit="run", disable=not progress):
            st = run_one(spec, threads, progress=progress)
            if st["state"] == "failed":
                print(f"sweep: run {spec.key} failed: {st['error']}")
                if not keep_going:
                    raise UserError(f"run {spec.key} failed: {st['error']} (see {spec.run_dir}/status.json)")
    else:
        _local_parallel(todo, jobs, cores, keep_going, progress)


def default_jobs(cores: int) -> int:
    """Runs in parallel when --jobs is not given: one per core on a CPU-only machine (small models
    scale badly across threads: two smoke runs at 1 thread each finish in 1114 s where one after the
    other at 2 threads take 2 × 768 s, measured on 2 cores); one at a time when a GPU is present
    (each run takes the whole device)."""
    import torch

    return 1 if torch.cuda.is_available() else max(1, cores)


def _local_parallel(todo: list[RunSpec], jobs: int, cores: int, keep_going: bool, progress: bool,
                    worker=None) -> None:
    """At most `jobs` runs at once in fresh (spawned) processes, each with an equal share of the cores
    (a run's thread count is fixed when it starts)."""
    import multiprocessing
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm import tqdm

    worker = worker or run_one  # `worker(spec, threads) -> status`; tests pass a module-level fake
    queue = list(todo)
    # spawn, not fork: the parent has already run torch (the evaluators), and OpenMP does not survive fork.
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool, \
            tqdm(total=len(todo), desc="sweep", unit="run", disable=not progress) as bar:
        running: dict = {}
        while queue or running:
            while queue and len(running) < jobs:
                spec = queue.pop(0)
                # an equal share of the cores among the runs that will be in flight, never more than the free ones
                share = cores // min(jobs, len(running) + 1 + len(queue))
                threads = max(1, min(share, cores - sum(t for _, t in running.values())))
                running[pool.submit(worker, spec, threads)] = (spec, threads)
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for f in done:
                spec, _ = running.pop(f)
                st = f.result()
                bar.update(1)
                if st["state"] == "failed":
                    print(f"sweep: run {spec.key} failed: {st['error']}")
                    if not keep_going:
                        for g in running:
                            g.cancel()
                        raise UserError(f"run {spec.key} failed: {st['error']} (see {spec.run_dir}/status.json)")


def _set_aside_superseded(out: Path, preset: str, protocol: str, data: str, share: bool = False, **extra) -> None:
    """Move runs whose config hash is not what this code resolves for their (variant, seed) to
    DIR/superseded/: after an upgrade that changed a preset, their results must not sit in the
    report beside the new runs' (they are kept, not deleted)."""
    import re
    import shutil

    from ablations.variants import get_variant

    for run_dir in sorted((out / "runs").glob("*")):
        m = re.fullmatch(r"(.+)-s(\d+)-([0-9a-f]{8})", run_dir.name)
        if not m or not run_dir.is_dir():
            continue
        try:
            current = make_spec(get_variant(m.group(1)).name, int(m.group(2)), preset, protocol, data, str(out),
                                share, **extra).key
        except InputError:  # a variant this code no longer knows
            current = None
        if current != run_dir.name:
            dest = out / "superseded" / run_dir.name
            dest.parent.mkdir(exist_ok=True)
            if dest.exists():
                shutil.rmtree(dest)
            run_dir.rename(dest)
            print(f"sweep: {run_dir.name} was trained with another config than this code's "
                  f"{m.group(1)}; moved to {dest} (not in the report)")


def collect_sweep(out) -> dict:
    """What the run directories say: finished runs with results, and failed ones with their error."""
    runs, failed = [], []
    for status_file in sorted(Path(out).glob("runs/*/status.json")):
        st = _status(status_file.parent)
        (runs if st.get("state") == "done" else failed).append({"run_dir": str(status_file.parent), **st})
    summary = {"runs": runs, "failed": failed}
    atomic_write_json(Path(out) / "sweep_status.json", summary)
    return summary
