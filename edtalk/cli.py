"""The `edtalk` command. Each subcommand lives in `edtalk/commands/<name>.py` and exposes
`register(subparsers)`; the heavy imports stay inside the command functions so `edtalk --help`
is fast. nox sessions call the same subcommands.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from metrics.errors import UserError

# Order is the order shown in --help.
COMMANDS: list[str] = [
    "data",
    "animate",
    "train",
    "variants",
    "evaluators",
    "generate",
    "evaluate",
    "sweep",
    "report",
    "weights",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edtalk", description="EDTalk-Bench: model, metrics, ablations, reports")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"edtalk.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except UserError as exc:
        print(f"edtalk {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"edtalk {args.command}: interrupted; finished results are kept, re-run to resume",
              file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
