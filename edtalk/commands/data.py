"""`edtalk data synth`: write the synthetic talking-head world; `edtalk data lists`: the official MEAD/HDTF splits."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("data", help="datasets: generate the synthetic world, show the official splits")
    ds = p.add_subparsers(dest="data_command", required=True)
    s = ds.add_parser("synth", help="generate the synthetic talking-head world (resumable)")
    s.add_argument("--preset", default="smoke", help="smoke (seconds) | standard (minutes)")
    s.add_argument("--size", type=int, default=None, help="64, 128 or 256 (default: the preset's)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.set_defaults(func=run_synth)
    lst = ds.add_parser("lists", help="the official MEAD/HDTF train/test lists: counts per speaker, or the names")
    lst.add_argument("--lists", metavar="DIR", help="folder with train.json/test.json overriding the bundled lists")
    lst.add_argument("--split", choices=("train", "test"), default="test")
    lst.add_argument("--dataset", choices=("mead", "hdtf"), default="mead")
    lst.add_argument("--names", action="store_true", help="print every clip name, one per line")
    lst.set_defaults(func=run_lists)


def run_synth(args) -> int:
    from benchmarks.synthetic.writer import synthesize_world

    print(synthesize_world(args.out, args.preset, args.seed, args.size))
    return 0


def run_lists(args) -> int:
    from collections import Counter

    from benchmarks.datasets.real import MEAD_NAME, official_list

    names = [n for n in official_list(args.split, args.lists) if bool(MEAD_NAME.match(n)) == (args.dataset == "mead")]
    if args.names:
        print("\n".join(names))
        return 0
    per = Counter(n.split("#")[0] for n in names)
    source = args.lists or "bundled official lists"
    print(f"{args.dataset} {args.split}: {len(names)} clips from {len(per)} "
          f"{'speakers' if args.dataset == 'mead' else 'videos'} ({source})")
    for key, count in sorted(per.items())[:20]:
        print(f"  {key}: {count}")
    if len(per) > 20:
        print(f"  ... and {len(per) - 20} more")
    return 0
