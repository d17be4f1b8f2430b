"""The ``pm-engine`` command line (also ``python -m pm_engine``)."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from pm_engine.config import load_settings
from pm_engine.errors import PmError


def _db_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db-config", metavar="FILE",
                        help="database_config.json (section chosen by PM_ENV, default 'local'); "
                             "DATABASE_URL in the environment overrides it")


def cmd_db_deploy(args: argparse.Namespace) -> int:
    from pm_engine.deploy import deploy

    settings = load_settings(args.db_config)
    report = deploy(settings.database)
    print(f"db-deploy {settings.database.url()}: {report.summary()}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pm_engine.backtest import plot_equity, run_backtest
    from pm_engine.engine import LiveTradingEngine
    from pm_engine.instruments import load_instruments

    path = Path(args.csv)
    if not path.is_file():
        print(f"pm-engine backtest: error: {path} not found", file=sys.stderr)
        return 2
    engine = LiveTradingEngine(instruments=load_instruments(args.instruments), max_signal_age=None)
    report = run_backtest(path, engine)
    print(report.summary())
    if args.plot:
        plot_equity(report, Path(args.plot))
        print(f"equity curve written to {args.plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pm-engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db-deploy", help="apply pending migrations and changed functions (idempotent)")
    _db_config_arg(p)
    p.set_defaults(func=cmd_db_deploy)

    p = sub.add_parser("backtest", help="replay a CSV of signals through the engine, in memory")
    p.add_argument("csv", help="CSV whose header is the payload fields (type,instrument,position,price,...)")
    p.add_argument("--plot", metavar="PNG", help="write the equity curve to this PNG file")
    p.add_argument("--instruments", metavar="FILE", help="instrument configuration JSON (defaults built in)")
    p.set_defaults(func=cmd_backtest)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except PmError as exc:
        print(f"pm-engine {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
