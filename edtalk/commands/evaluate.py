"""`edtalk evaluate`: score a trained run or a folder of generated videos under a named protocol."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score a run or generated videos under a protocol")
    p.add_argument("--protocol", required=True,
                   help="synthetic-smoke | synthetic-study | mead-edtalk | hdtf-edtalk")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory of `edtalk train` (its model.pt is evaluated)")
    src.add_argument("--videos", help="folder of generated videos, one <case>.mp4 per test clip")
    p.add_argument("--data", help="the synthetic world directory (synthetic protocols)")
    p.add_argument("--out", required=True, help="results.json to write (resumes from its .rows.jsonl)")
    p.add_argument("--metrics", help="comma-separated subset of the protocol's metrics")
    p.add_argument("--lists", metavar="DIR", help="folder with test.json in EDTalk's list format, overriding the "
                   "bundled official split (real-data protocols; e.g. to restrict a run to the cases you have)")
    p.add_argument("--eat-roundtrip", action="store_true", help="real data: write the aligned crops through "
                   "OpenCV's lossy mp4v before scoring, as EAT's shipped pipeline does (default: lossless crops)")
    p.add_argument("--unverified-weights", action="store_true", help="real data: accept evaluator weight files "
                   "whose hash differs from the manifest (seeded stand-ins); results record it")
    p.add_argument("--fid-resamples", type=int, default=20, metavar="N",
                   help="real data: clip resamples for the FID confidence interval (default 20)")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("--gt-cache", metavar="DIR", help="real data: keep the ground truth's crops and evaluator "
                       "outputs here for the next method's evaluation (default: gt-cache beside the --out folder)")
    cache.add_argument("--no-gt-cache", action="store_true", help="real data: recompute the ground-truth side")
    p.add_argument("--setting", choices=("video", "audio"), default=None,
                   help="with --run on a synthetic protocol: video (EDTalk-V, the default: mouth, pose and expression "
                        "from the clip's frames) or audio (EDTalk-A: mouth from the clip's speech through the run's "
                        "RUN/audio/audio2motion.pt, from `edtalk train --stage audio`; per-clip metrics only). "
                        "The sweep writes them to RUN/results.json and RUN/results-audio.json")
    p.add_argument("--device", default=None)
    p.add_argument("--no-disentanglement", action="store_true", help="skip the cross-driving leakage study")
    p.set_defaults(func=run)


def run(args) -> int:
    from benchmarks.protocols.api import evaluate_protocol
    from edtalk.method import score_run
    from metrics.errors import UserError

    options = {"data": args.data, "metrics": args.metrics.split(",") if args.metrics else None,
               "device": args.device, "disentanglement": not args.no_disentanglement, "lists": args.lists}
    real = {"eat_roundtrip": args.eat_roundtrip, "verify_weights": not args.unverified_weights,
            "fid_resamples": args.fid_resamples, "gt_cache": None if args.no_gt_cache else (args.gt_cache or "auto")}
    if args.run:
        res = score_run(args.protocol, args.out, args.run, setting=args.setting or "video", **options)
    else:
        if args.setting:
            raise UserError("--setting applies to --run (the run's model is driven in that setting); videos are "
                            "scored as they were generated (`edtalk generate --setting`)")
        res = evaluate_protocol(args.protocol, args.out, videos=args.videos, real_options=real, **options)
    reference = res.get("reference_aggregates", {})
    for name, a in res["aggregates"].items():
        ref = reference.get(name, {}).get("value")
        ref_text = f"  reference {ref:.4g}" if ref is not None else ""
        print(f"{name:>10}: {_fmt(a['mean'])}  [{_fmt(a['ci_low'])}, {_fmt(a['ci_high'])}]  n={a['n']}{ref_text}")
    print(args.out)
    return 0


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4g}"
