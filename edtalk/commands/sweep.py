"""`edtalk sweep`: train and evaluate ablation variants × seeds, resumably (locally or on Ray).

    edtalk sweep --preset smoke --data WORLD --out out/sweep-smoke
    edtalk sweep --protocol mead-edtalk --data MEAD --preset paper --variants paper --seeds 3 --out out/mead

What a preset sweeps by default (its protocol, variants and seeds) is its row of `edtalk.presets`,
the table `nox -s reproduce` follows too. On a real protocol each run trains on the dataset's official
train list, generates the test list (`edtalk generate --run`) and scores it (`edtalk evaluate --videos`);
`edtalk report OUT` then gives the Table-1 layout with one row per run (ablations.real_sweep).
"""
from __future__ import annotations


def register(subparsers) -> None:
    from edtalk.presets import PRESETS

    p = subparsers.add_parser("sweep", help="train + evaluate variants x seeds into one sweep directory")
    p.add_argument("--preset", default="smoke", help=f"{' | '.join(PRESETS)} (default smoke): training preset, "
                   "and the protocol, variants and seeds used when those are not given")
    p.add_argument("--protocol", default=None, help="default: the preset's (smoke: synthetic-smoke)")
    p.add_argument("--variants", default=None,
                   help="comma-separated variant names and sets: 'paper' (the paper's ablation table), 'extended' "
                        "(the switches it reports no number for) or 'all'; default: the preset's (smoke: "
                        "full,no-orthogonality,no-eem; study: paper with full x2)")
    p.add_argument("--seeds", type=int, default=None, help="default: the preset's (smoke 1, study 1 with full x2)")
    p.add_argument("--data", required=True, help="synthetic world directory, or the MEAD/HDTF root for a real "
                   "protocol (raw square clips or `edtalk data crop`'s tree)")
    p.add_argument("--out", required=True)
    p.add_argument("--jobs", type=int, default=None,
                   help="runs in parallel (default: one per core on CPU, one at a time on a GPU)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--keep-going", dest="keep_going", action="store_true", default=True)
    mode.add_argument("--fail-fast", dest="keep_going", action="store_false")
    p.add_argument("--ray-address", default=None, help="run one Ray task per run ('local' starts Ray here)")
    p.add_argument("--no-share-stages", dest="share_stages", action="store_false",
                   help="train every variant from scratch, even those whose switches act only after stages "
                        "they could take from full's run (no-eem, no-expression-bank: stages 0-1; "
                        "no-cross-reconstruction, no-feature-loss: stage 0)")
    p.add_argument("--max-steps", type=int, default=None, help="cap every training stage at N steps (dry run)")
    p.add_argument("--setting", default=None, metavar="audio|video|both",
                   help="what each run is scored in: audio (EDTalk-A, the paper's ablation setting: each run also "
                        "trains the audio stage; mouth from speech), video (EDTalk-V: mouth from the clip's frames), "
                        "or both (synthetic protocols: results-audio.json and results.json per run). Default: the "
                        "preset's row (study: both; smoke: video) on the synthetic world, audio on "
                        "mead-edtalk/hdtf-edtalk (one setting per sweep there). Part of each run's config hash")
    real = p.add_argument_group("real protocols (mead-edtalk, hdtf-edtalk)")
    real.add_argument("--dataset", choices=("mead", "hdtf"), default=None, help="default: the protocol's")
    real.add_argument("--lists", default=None, metavar="DIR", help="folder with train.json/test.json overriding the "
                      "bundled official lists (training and the test set)")
    real.add_argument("--limit-clips", type=int, default=None, help="at most N training clips per split (dry run)")
    real.add_argument("--cache", default=None, help="prepared training clips (default DATA/.edtalk-train-cache)")
    real.add_argument("--metrics", default=None, help="comma-separated subset of the protocol's metrics")
    real.add_argument("--unverified-weights", action="store_true", help="accept evaluator weight files whose hash "
                      "differs from the manifest (seeded stand-ins); results record it")
    real.add_argument("--fid-resamples", type=int, default=None, metavar="N",
                      help="clip resamples for the FID confidence interval (default 20)")
    p.set_defaults(func=run)


def run(args) -> int:
    from ablations.sweep import PAPER_ABLATIONS, run_sweep
    from ablations.variants import list_variants
    from edtalk.presets import get_preset
    from metrics.errors import UserError

    preset = get_preset(args.preset)
    plan = preset.sweep or {"variants": "paper", "seeds": 1}
    protocol = args.protocol or preset.protocol
    if protocol is None:
        raise UserError(f"preset {preset.name!r} has no protocol of its own; pass --protocol")
    wanted = args.variants or plan["variants"]
    variants = {"paper": ",".join(PAPER_ABLATIONS), "all": ",".join(v.name for v in list_variants())}.get(
        wanted, wanted)
    seeds = args.seeds if args.seeds is not None else int(plan["seeds"])
    real = {"dataset": args.dataset, "lists": args.lists, "limit_clips": args.limit_clips, "cache": args.cache,
            "metrics": args.metrics, "fid_resamples": args.fid_resamples,
            "verify_weights": False if args.unverified_weights else None}
    summary = run_sweep(protocol, variants, seeds, args.out, args.data, args.preset, jobs=args.jobs,
                        keep_going=args.keep_going, ray_address=args.ray_address, share_stages=args.share_stages,
                        max_steps=args.max_steps, real=real, settings=args.setting)
    print(f"sweep: {len(summary['runs'])} runs done, {len(summary['failed'])} failed")
    for f in summary["failed"]:
        print(f"  failed {f.get('key')}: {f.get('error')}")
    print(args.out)
    return 1 if summary["failed"] else 0
