"""`edtalk variants`: list the ablation variants, their configuration overrides and the paper's numbers."""
from __future__ import annotations

import json


def register(subparsers) -> None:
    p = subparsers.add_parser("variants", help="list ablation variants (name, overrides, paper numbers)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args) -> int:
    from ablations.variants import list_variants

    rows = list_variants()
    if args.json:
        print(json.dumps([{"name": v.name, "description": v.description, "overrides": v.overrides,
                           "paper": v.paper} for v in rows], indent=2))
        return 0
    width = max(len(v.name) for v in rows)
    for v in rows:
        paper = ", ".join(f"{k}={x}" for k, x in v.paper.items() if x is not None) or "not reported"
        print(f"{v.name:<{width}}  {v.description}")
        print(f"{'':<{width}}  overrides: {json.dumps(v.overrides) if v.overrides else '(none)'}; paper: {paper}")
    return 0
