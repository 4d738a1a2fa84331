"""The `leanface` command. Thin: parse flags, call the library, print results.

Flags use the same words as the Python keyword arguments they feed. Expected mistakes
(LeanfaceError) print one line and exit 2; anything else is a bug and keeps its traceback.
Each subcommand is a pair `_add_<name>(sub)` / `_cmd_<name>(args) -> int`, listed in COMMANDS.
"""
from __future__ import annotations

import argparse
import sys

from .errors import LeanfaceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="leanface", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add, run in COMMANDS:
        add(sub).set_defaults(_run=run)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except LeanfaceError as exc:
        print(f"leanface {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"leanface {args.command}: interrupted", file=sys.stderr)
        return 130


COMMANDS: list = []


if __name__ == "__main__":
    sys.exit(main())
