"""`train_run`: the one call the CLI, nox and the ablation sweep use to train a config.

They resolve a variant into its TrainConfig first (`ablations.variants.resolve_config`) and hand the
typed config down; nothing below asks which variant it is.
"""
from __future__ import annotations

from pathlib import Path

from edtalk.train.config import STAGE_NAMES, TrainConfig
from metrics.errors import InputError


def parse_stages(stages) -> set[str] | None:
    """"all" → None; 0/1/2, "0", names, or a list of those → stage names."""
    if stages is None or stages == "all":
        return None
    items = stages if isinstance(stages, (list, tuple, set)) else [stages]
    out = set()
    for s in items:
        s = str(s)
        if s.isdigit() and int(s) < len(STAGE_NAMES):
            out.add(STAGE_NAMES[int(s)])
        elif s in STAGE_NAMES:
            out.add(s)
        else:
            raise InputError(f"--stage must be 0, 1, 2 or all (or {', '.join(STAGE_NAMES)}), not {s!r}")
    return out


def load_pools(cfg: TrainConfig, data_dir, real: dict | None = None):
    """(train pool, held-out test pool or None) from a world directory or generated in memory, or, with
    `real` ({"dataset": "mead"|"hdtf", "lists", "limit_clips", "cache", "workers"}), from real video under `data_dir`
    (edtalk.train.real_data; its report is kept in real["report"])."""
    from edtalk.train.data import FramePool

    if real is not None:
        from edtalk.train.real_data import load_real_pools

        if data_dir is None:
            raise InputError(f"--dataset {real['dataset']} needs --data ROOT, the {real['dataset'].upper()} root")
        train, test, real["report"] = load_real_pools(data_dir, real["dataset"], cfg.model.size, real.get("lists"),
                                                      real.get("limit_clips"), real.get("cache"),
                                                      workers=real.get("workers", 1))
        return train, test
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise InputError(f"--data {data_dir}: no such directory; generate one with `edtalk data synth --out DIR`")
        train = FramePool.from_world(data_dir, "train")
        try:
            test = FramePool.from_world(data_dir, "test")
        except InputError:
            test = None
        return train, test
    try:
        full = FramePool.generate(cfg.data_identities, cfg.data_clips_per_identity, cfg.data_frames,
                                  cfg.model.size, seed=cfg.seed)
    except ImportError as exc:
        raise InputError(f"no --data given and the in-memory synthetic world is unavailable ({exc}); "
                         "generate one with `edtalk data synth --out DIR` and pass --data DIR") from exc
    return full.split("train"), full.split("test")


def train_run(cfg: TrainConfig, out_dir, data_dir=None, stages="all", *, resume: bool = False, device=None,
              progress: bool = True, evaluate: bool = True, build=None, pools=None, adopt=None,
              real: dict | None = None) -> Path:
    """Train `cfg` (a variant resolved by `ablations.variants.resolve_config`) into `out_dir` (created);
    returns the run directory.

    Re-calling with `resume=True` continues from `checkpoints/last.pt`; finished stages are skipped.
    With no `data_dir` a small synthetic world is generated in memory (at `cfg.model.size`).
    `build(cfg, size) -> (generator, discriminator, model_config)` and `pools=(train, test)` replace the
    model factory and the data (tests and sweeps use them to run tiny stand-ins).
    `real={"dataset": "mead"|"hdtf", "lists": DIR, "limit_clips": N, "cache": DIR}` trains on real video
    under `data_dir` (edtalk.train.real_data); what it used and left out goes to RUN/data.json and logs/data.log.
    `adopt=(checkpoint, stages)` starts a fresh run from another run's end-of-stage checkpoint in place
    of training `stages` (see `Trainer.adopt_stages`; the sweep uses it for `Variant.shares_with_full`).
    """
    from edtalk.train.engine import Trainer

    only = parse_stages(stages)
    if cfg.joint_training and only is not None:
        raise InputError("the joint-training variant has a single stage; use --stage all")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pool, test_pool = pools if pools is not None else load_pools(cfg, data_dir, real)
    if real is not None and "report" in real:
        from edtalk.train.real_data import check_same_data

        check_same_data(out, real["report"])  # before data.json is rewritten: a resume must see the same clips
        _log_real_data(out, real["report"])
    trainer = Trainer(cfg, out, pool, device=device, progress=progress, build=build)
    trainer.prepare_run_dir(resume=resume or (only is not None and (out / "checkpoints" / "last.pt").exists()),
                            adopt=(Path(adopt[0]), tuple(adopt[1])) if adopt else None)
    trainer.fit(only)
    if evaluate and trainer.dist.main and not (set(trainer.plan_names()) - set(trainer.state["completed"])):
        from edtalk.train.evaluate import evaluate_run

        if test_pool is not None:
            evaluate_run(trainer.model, pool, test_pool, out, device=trainer.device, max_clips=cfg.held_out_clips)
    return out


def _log_real_data(out: Path, report: dict) -> None:
    """Every clip left out is counted in the run's log (logs/data.log, appended per start) and data.json."""
    import os
    import time as _time

    from edtalk.train.real_data import report_lines

    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 writes the one log
        return
    from metrics.utils import atomic_write_json

    atomic_write_json(out / "data.json", report)
    lines = report_lines(report)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    with open(out / "logs" / "data.log", "a") as f:
        f.write(f"# {_time.strftime('%Y-%m-%d %H:%M:%S')}\n" + "\n".join(lines) + "\n")
    for line in lines[:12]:
        print(line)
