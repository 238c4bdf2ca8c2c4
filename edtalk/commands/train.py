"""`edtalk train`: train stages 0–2 of a variant into a run directory (resumable, torchrun-aware).

    edtalk train --preset smoke --variant full --out runs/full
    torchrun --nproc_per_node 2 -m edtalk train --preset study --variant no-eem --out runs/no-eem
"""
from __future__ import annotations


def register(subparsers) -> None:
    from edtalk.presets import PRESETS

    p = subparsers.add_parser("train", help="train EDTalk stages 0-2 (a variant) into a run directory",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="smoke", help=f"{' | '.join(PRESETS)} (default smoke; edtalk.presets)")
    p.add_argument("--variant", default="full", help="ablation variant (see `edtalk variants`; default full)")
    p.add_argument("--out", required=True, help="run directory (config, checkpoints, logs, samples)")
    p.add_argument("--data", default=None, help="synthetic world directory (default: generate one in memory), "
                   "or with --dataset the MEAD/HDTF root (raw square clips or `edtalk data crop`'s tree)")
    p.add_argument("--dataset", choices=("mead", "hdtf"), default=None,
                   help="train on real video under --data, clips of the official train list")
    p.add_argument("--lists", default=None, help="with --dataset: folder with train.json/test.json overriding "
                   "the bundled official lists")
    p.add_argument("--limit-clips", type=int, default=None, help="with --dataset: at most N clips per split (dry run)")
    p.add_argument("--cache", default=None, help="with --dataset: where prepared clips (frames at the model's size, "
                   "dlib landmarks, mel windows) are kept (default DATA/.edtalk-train-cache)")
    p.add_argument("--prepare-workers", type=int, default=1,
                   help="with --dataset: processes that decode and detect uncached clips (default 1)")
    p.add_argument("--max-steps", type=int, default=None, help="cap every stage at N steps (dry run; with "
                   "--stage audio --dataset, each audio predictor)")
    p.add_argument("--stage", default="all",
                   help="0, 1, 2, all (default) or audio (stage 3, audio-to-motion, after 0-2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: $EDTALK_DEVICE or auto)")
    p.add_argument("--no-eval", action="store_true", help="skip the held-out evaluation at the end")
    from edtalk.train.audio_stage import add_audio_arguments  # stage 3's options (issue 5)

    add_audio_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if str(args.stage) == "audio":  # stage 3 has its own loop (edtalk/train/audio_stage.py)
        if args.dataset is not None:
            return run_audio_on_real(args)
        from edtalk.train.audio_stage import run_from_args

        return run_from_args(args)
    from ablations.variants import resolve_config
    from edtalk.train.api import train_run

    cfg = resolve_config(args.preset, args.variant, args.seed, max_steps=args.max_steps)
    real = real_options(args)
    out = train_run(cfg, args.out, data_dir=args.data, stages=args.stage, resume=args.resume, device=args.device,
                    evaluate=not args.no_eval, real=real)
    print(f"run directory: {out}")
    return 0


def real_options(args) -> dict | None:
    """--dataset and its options as train_run's `real`; the options without --dataset are a one-line error."""
    from metrics.errors import InputError

    if args.dataset is None:
        given = [f"--{k.replace('_', '-')}" for k in ("lists", "limit_clips", "cache") if getattr(args, k) is not None]
        if given:
            raise InputError(f"{', '.join(given)} only apply to real data: add --dataset mead|hdtf")
        return None
    if args.prepare_workers < 1:
        raise InputError(f"--prepare-workers must be at least 1, not {args.prepare_workers}")
    return {"dataset": args.dataset, "lists": args.lists, "limit_clips": args.limit_clips, "cache": args.cache,
            "workers": args.prepare_workers}


def run_audio_on_real(args) -> int:
    """`edtalk train --stage audio --dataset mead|hdtf --data ROOT --out RUN`: EDTalk-A's audio-to-motion on the
    clips stages 0-2 of RUN trained on, with RUN's generator giving the targets (edtalk.train.audio_real)."""
    from pathlib import Path

    from edtalk.train.audio_real import train_audio_on_real
    from edtalk.train.audio_stage import config_from_args, print_results
    from metrics.errors import InputError

    real = real_options(args)
    if args.data is None:
        raise InputError(f"--dataset {args.dataset} needs --data ROOT, the {args.dataset.upper()} root")
    if args.targets == "gt":
        raise InputError("--targets gt needs a synthetic world's ground truth; on real video the targets are the "
                         "trained model's (--targets model or auto)")
    results = train_audio_on_real(args.out, args.data, args.dataset, lists=real["lists"],
                                  limit_clips=real["limit_clips"], cache=real["cache"], workers=real["workers"],
                                  preset=args.preset, seed=args.seed, cfg=config_from_args(args, "model"),
                                  max_steps=args.max_steps, device=args.device, resume=args.resume)
    print_results(results, Path(args.out))
    return 0
