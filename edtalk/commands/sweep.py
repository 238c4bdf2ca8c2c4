"""`edtalk sweep`: train and evaluate ablation variants × seeds, resumably (locally or on Ray)."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("sweep", help="train + evaluate variants x seeds into one sweep directory")
    p.add_argument("--protocol", default="synthetic-smoke")
    p.add_argument("--variants", default="paper",
                   help="comma-separated variant names, 'paper' (the paper's ablations) or 'all'")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--preset", default="smoke", help="training preset: smoke | standard | paper")
    p.add_argument("--data", required=True, help="synthetic world directory")
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
    p.set_defaults(func=run)


def run(args) -> int:
    from ablations.sweep import PAPER_ABLATIONS, run_sweep
    from ablations.variants import list_variants

    variants = {"paper": ",".join(PAPER_ABLATIONS), "all": ",".join(v.name for v in list_variants())}.get(
        args.variants, args.variants)
    summary = run_sweep(args.protocol, variants, args.seeds, args.out, args.data, args.preset, jobs=args.jobs,
                        keep_going=args.keep_going, ray_address=args.ray_address, share_stages=args.share_stages)
    print(f"sweep: {len(summary['runs'])} runs done, {len(summary['failed'])} failed")
    for f in summary["failed"]:
        print(f"  failed {f.get('key')}: {f.get('error')}")
    print(args.out)
    return 1 if summary["failed"] else 0
