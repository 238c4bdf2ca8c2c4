"""`edtalk data synth`: write the synthetic talking-head world."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("data", help="datasets: generate the synthetic world")
    ds = p.add_subparsers(dest="data_command", required=True)
    s = ds.add_parser("synth", help="generate the synthetic talking-head world (resumable)")
    s.add_argument("--preset", default="smoke", help="smoke (seconds) | standard (minutes)")
    s.add_argument("--size", type=int, default=None, help="64, 128 or 256 (default: the preset's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.set_defaults(func=run_synth)


def run_synth(args) -> int:
    from benchmarks.synthetic.writer import synthesize_world

    print(synthesize_world(args.out, args.preset, args.seed, args.size))
    return 0
