"""The tool commands: benchmark, chaos run, backtest (the only CLI group importing pm_engine.tools)."""

from __future__ import annotations

import argparse
import os
import sys

from pm_engine.cli.common import holidays_arg


def cmd_bench(args: argparse.Namespace) -> int:
    from pm_engine.tools.bench import run_bench, run_ha_bench

    if args.ha:
        run_ha_bench(quick=args.quick, json_path=args.json)
        return 0
    run_bench(quick=args.quick, json_path=args.json, url=os.environ.get("DATABASE_URL"))
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pm_engine.tools.chaos import BROKER, SHORT, SHORT_BROKER, ChaosSettings, run_chaos

    if args.failover or args.asynchronous:
        from pm_engine.tools.failover import FailoverSettings, run_failover

        if args.signals is not None and args.signals < 10:
            print("pm-engine chaos: error: --signals must be >= 10 with --failover", file=sys.stderr)
            return 2
        chosen_failover = {k: v for k, v in (("signals", args.signals), ("seed", args.seed),
                                             ("stall_s", args.stall_replication)) if v is not None}
        if args.short:
            chosen_failover.setdefault("signals", 80)
        return run_failover(replace(FailoverSettings(synchronous=not args.asynchronous), **chosen_failover))

    if args.broker == "sim":
        settings = SHORT_BROKER if args.short else BROKER
    else:
        settings = SHORT if args.short else ChaosSettings()
    chosen = {k: v for k, v in (("signals", args.signals), ("instances", args.instances), ("kills", args.kills),
                                ("db_restarts", args.db_restarts), ("fuzz", args.fuzz), ("seed", args.seed),
                                ("broker_faults", args.broker_faults))
              if v is not None}
    for name, value in chosen.items():
        if value < (1 if name in ("signals", "instances") else 0):
            print(f"pm-engine chaos: error: --{name.replace('_', '-')} must be >= "
                  f"{1 if name in ('signals', 'instances') else 0}", file=sys.stderr)
            return 2
    return run_chaos(replace(settings, **chosen))


def cmd_backtest(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pm_engine.core.backtest import plot_equity, run_backtest, write_trades_csv
    from pm_engine.core.replay.controls import BreakerSettings, Controls
    from pm_engine.core.engine import TradingEngine
    from pm_engine.core.instruments import load_instruments

    path = Path(args.csv)
    if not path.is_file():
        print(f"pm-engine backtest: error: {path} not found", file=sys.stderr)
        return 2
    from pm_engine.core.contracts import ContractCalendar
    from pm_engine.core.holidays import load_holidays

    controls = Controls(BreakerSettings.from_file(Path(args.breakers))) if args.breakers else None
    instruments = load_instruments(args.instruments)
    engine = TradingEngine(instruments=instruments, max_signal_age=None, controls=controls,
                           contracts=ContractCalendar(instruments, load_holidays(args.holidays)))
    report = run_backtest(path, engine)
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_json(), indent=2) + "\n")
        print(f"statistics, every signal's outcome and the open positions written to {args.json}")
    if args.trades:
        write_trades_csv(report.trades, Path(args.trades))
        print(f"{len(report.trades)} trades written to {args.trades}")
    if args.plot:
        plot_equity(report.curve, Path(args.plot), "pm-engine backtest equity curve")
        print(f"equity curve written to {args.plot}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands to the top-level parser."""
    p = sub.add_parser("bench", help="latency and throughput of the persistence path, as ratios to SELECT 1")
    p.add_argument("--quick", action="store_true", help="every part at a smaller size (under 2 minutes)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--ha", action="store_true",
                   help="instead: a signal on a single node against one on a primary with a synchronous standby "
                        "(a pg_auto_failover formation on loopback), as ratios")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("chaos", help="kill engines and the database under a signal stream, fuzz the webhook, "
                                     "and check nothing was lost or duplicated")
    p.add_argument("--short", action="store_true", help="the short run of `make test` (400 signals, 2 engines)")
    p.add_argument("--signals", type=int, help="signals in the stream (default 5000)")
    p.add_argument("--instances", type=int, help="engine processes (default 3)")
    p.add_argument("--kills", type=int, help="SIGKILLs of engine processes (default 10)")
    p.add_argument("--db-restarts", type=int, help="immediate PostgreSQL restarts (default 2)")
    p.add_argument("--fuzz", type=int, help="hostile webhooks (default 10000; 0 skips)")
    p.add_argument("--seed", type=int, help="random seed of the stream and the chaos (default 23)")
    p.add_argument("--broker", choices=("paper", "sim"), default="paper",
                   help="sim: orders go over HTTP to the broker simulator, with broker faults; the book must still "
                        "equal the reference, every order be one order at the broker, its net positions the book's "
                        "(default 2000 signals, 10 kills, 2 database restarts, 20 broker faults)")
    p.add_argument("--broker-faults", type=int, help="with --broker sim: broker faults played (default 20)")
    p.add_argument("--failover", action="store_true",
                   help="instead: a pg_auto_failover formation on loopback, two engines on it, and the primary "
                        "killed mid-stream (make ha; --signals default 300)")
    p.add_argument("--async", dest="asynchronous", action="store_true",
                   help="with --failover: asynchronous replication, to see what it loses")
    p.add_argument("--stall-replication", type=float, metavar="SECONDS",
                   help="with --failover: stop the primary's WAL sender this long before the primary dies")
    p.set_defaults(func=cmd_chaos)

    p = sub.add_parser("backtest", help="replay a CSV of signals through the engine, in memory")
    p.add_argument("csv", help="CSV whose header is the payload fields (type,instrument,position,price,...)")
    p.add_argument("--plot", metavar="PNG", help="write the equity curve to this PNG file")
    p.add_argument("--json", metavar="FILE", help="write the statistics, every signal's outcome and the open positions")
    p.add_argument("--trades", metavar="CSV", help="write the trade list")
    p.add_argument("--instruments", metavar="FILE", help="instrument configuration JSON (defaults built in)")
    holidays_arg(p)
    p.add_argument("--breakers", metavar="FILE",
                   help="apply these breakers, as live trading does (JSON: daily_loss_pct, max_entries_per_day, "
                        "cooling_off_losses, cooling_off_hours)")
    p.set_defaults(func=cmd_backtest)
