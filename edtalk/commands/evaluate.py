"""`edtalk evaluate`: score a trained run or a folder of generated videos under a named protocol."""
from __future__ import annotations


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="score a run or generated videos under a protocol")
    p.add_argument("--protocol", required=True, help="synthetic-smoke | synthetic-standard | mead-edtalk | hdtf-edtalk")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="run directory of `edtalk train` (its model.pt is evaluated)")
    src.add_argument("--videos", help="folder of generated videos, one <case>.mp4 per test clip")
    p.add_argument("--data", help="the synthetic world directory (synthetic protocols)")
    p.add_argument("--out", required=True, help="results.json to write (resumes from its .rows.jsonl)")
    p.add_argument("--metrics", help="comma-separated subset of the protocol's metrics")
    p.add_argument("--lists", metavar="DIR", help="folder with test.json in EDTalk's list format, overriding the "
                   "bundled official split (real-data protocols; e.g. to restrict a run to the cases you have)")
    p.add_argument("--device", default=None)
    p.add_argument("--no-disentanglement", action="store_true", help="skip the cross-driving leakage study")
    p.set_defaults(func=run)


def run(args) -> int:
    from benchmarks.protocols.api import evaluate_protocol
    from edtalk.method import score_run

    options = {"data": args.data, "metrics": args.metrics.split(",") if args.metrics else None,
               "device": args.device, "disentanglement": not args.no_disentanglement, "lists": args.lists}
    if args.run:
        res = score_run(args.protocol, args.out, args.run, **options)
    else:
        res = evaluate_protocol(args.protocol, args.out, videos=args.videos, **options)
    for name, a in res["aggregates"].items():
        print(f"{name:>10}: {a['mean']:.4g}  [{a['ci_low']:.4g}, {a['ci_high']:.4g}]  n={a['n']}")
    print(args.out)
    return 0
