"""The ``arena`` command line."""
from __future__ import annotations

import argparse
import sys

from . import demo
from .manager import RULES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="arena", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    d = commands.add_parser("demo", help="replay Go issue 20259 with real memory")
    d.add_argument("--rule", choices=[*RULES, "all"], default="all")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo.main(RULES if args.rule == "all" else (args.rule,))
    return 2


if __name__ == "__main__":
    sys.exit(main())
