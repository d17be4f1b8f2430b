"""pm-engine: portfolio manager for systematic futures traders (also run as `python -m pm_engine`)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from pm_engine.cli import book, notify, orders, serving, steering, tools
from pm_engine.cli.common import database_line
from pm_engine.core.errors import PmError

# each command group owns its subcommands and their handlers; the help lists them in this order
GROUPS = (serving, book, orders, steering, notify, tools)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: one subcommand per command, added by each group's ``register``."""
    parser = argparse.ArgumentParser(prog="pm-engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if hasattr(args, "db_config"):  # a command that reads a database says which, first
            try:
                print(database_line(args), file=sys.stderr, flush=True)
            except PmError:
                pass  # a bad configuration: the command itself says what is wrong
        return int(args.func(args))
    except PmError as exc:
        print(f"pm-engine {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
