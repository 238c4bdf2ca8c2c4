"""`edtalk train`: train stages 0–2 of a variant into a run directory (resumable, torchrun-aware).

    edtalk train --preset smoke --variant full --out runs/full
    torchrun --nproc_per_node 2 -m edtalk train --preset standard --variant no-eem --out runs/no-eem
"""
from __future__ import annotations


def register(subparsers) -> None:
    from edtalk.presets import PRESETS

    p = subparsers.add_parser("train", help="train EDTalk stages 0-2 (a variant) into a run directory",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="smoke", help=f"{' | '.join(PRESETS)} (default smoke; edtalk.presets)")
    p.add_argument("--variant", default="full", help="ablation variant (see `edtalk variants`; default full)")
    p.add_argument("--out", required=True, help="run directory (config, checkpoints, logs, samples)")
    p.add_argument("--data", default=None, help="synthetic world directory (default: generate one in memory)")
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
        from edtalk.train.audio_stage import run_from_args

        return run_from_args(args)
    from ablations.variants import resolve_config
    from edtalk.train.api import train_run

    cfg = resolve_config(args.preset, args.variant, args.seed)
    out = train_run(cfg, args.out, data_dir=args.data, stages=args.stage, resume=args.resume, device=args.device,
                    evaluate=not args.no_eval)
    print(f"run directory: {out}")
    return 0
