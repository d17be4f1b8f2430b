"""pm-engine: portfolio manager for systematic futures traders (also run as `python -m pm_engine`)."""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from datetime import timedelta
from typing import Any, Callable, Optional, Sequence

from pm_engine.config import load_settings
from pm_engine.core.errors import DatabaseUnavailableError, PmError


def _db_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db-config", metavar="FILE",
                        help="database_config.json (section chosen by PM_ENV, default 'local'); "
                             "DATABASE_URL in the environment overrides it")


def cmd_db_deploy(args: argparse.Namespace) -> int:
    from pm_engine.store.deploy import deploy

    settings = load_settings(args.db_config)
    report = deploy(settings.database)
    print(f"db-deploy {settings.database.url()}: {report.summary()}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pm_engine.core.backtest import plot_equity, run_backtest, write_trades_csv
    from pm_engine.core.controls import BreakerSettings, Controls
    from pm_engine.core.engine import LiveTradingEngine
    from pm_engine.core.instruments import load_instruments

    path = Path(args.csv)
    if not path.is_file():
        print(f"pm-engine backtest: error: {path} not found", file=sys.stderr)
        return 2
    controls = Controls(BreakerSettings.from_file(Path(args.breakers))) if args.breakers else None
    engine = LiveTradingEngine(instruments=load_instruments(args.instruments), max_signal_age=None, controls=controls)
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


def _time_arg(value: str) -> Any:
    """``--from`` / ``--to`` / ``--as-of``: ISO 8601; a time without a zone is IST (as in alerts)."""
    from pm_engine.core.signals import SignalValidationError, parse_timestamp

    try:
        return parse_timestamp(value)
    except SignalValidationError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r} (e.g. 2025-11-28T14:05:00+05:30)")


def fault_hook(spec: Optional[str]) -> Callable[[str], None]:
    """The crash-test hook from ``PM_FAULT_CRASH=<point>:<probability>``: SIGKILL this process there.

    Used by the crash tests and ``make chaos`` to die in the worst window (``after_commit``: the
    signal is durable, its orders not yet sent). Unset in production: the hook does nothing.
    """
    if not spec:
        return lambda point: None
    point, _, probability = spec.partition(":")
    chance = float(probability or 1)

    def hook(name: str) -> None:
        if name == point and random.random() < chance:
            os.kill(os.getpid(), signal.SIGKILL)
    return hook


def _engine(settings: Any, instance_port: Optional[int] = None) -> Any:
    """Connect, register this instance, recover state, and send orders an interrupted instance left."""
    import socket

    from pm_engine import __version__
    from pm_engine.core.engine import LiveTradingEngine
    from pm_engine.store.manager import DatabaseStateManager

    db = DatabaseStateManager(settings.database)
    instance_id = f"{socket.gethostname()[:30]}-{os.getpid()}"
    age = timedelta(seconds=settings.max_signal_age_s) if settings.max_signal_age_s > 0 else None
    engine = LiveTradingEngine(db_manager=db, instance_id=instance_id, max_signal_age=age,
                               fault=fault_hook(os.environ.get("PM_FAULT_CRASH")), send_in_background=True)
    db.register_instance(instance_id, socket.gethostname()[:100], instance_port, __version__)
    engine.send_pending()
    return engine


def serve(settings: Any, host: str, port: int) -> int:
    """Deploy check, recover state, and serve the webhook until interrupted."""
    import uvicorn

    from pm_engine.web.app import create_app

    if not settings.webhook_secret:
        print("pm-engine live: error: no webhook secret (set PM_WEBHOOK_SECRET or webhook_secret in the config)",
              file=sys.stderr)
        return 2
    from pm_engine import __version__
    from pm_engine.ops.jobs import BackgroundJobs

    engine = _engine(settings, port)
    app = create_app(engine, settings.webhook_secret, settings.allowed_ips)
    jobs = BackgroundJobs(engine, version=__version__).start()
    print(f"pm-engine {engine.instance_id}: {len(engine.portfolio.positions)} open positions recovered, "
          f"closed equity {engine.portfolio.closed_equity}; serving http://{host}:{port}/webhook", flush=True)
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
    finally:
        jobs.stop()
        engine.flush_orders(5)
        engine.close()
        engine.db_manager.close()
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    return serve(load_settings(args.db_config), args.host, args.port)


def _open_store(args: argparse.Namespace) -> Any:
    """The database of ``--db-config`` / ``DATABASE_URL``, else of a running ``make run``; None (said why) if down."""
    from pm_engine.ops.embedded import embedded_settings
    from pm_engine.store.manager import DatabaseStateManager

    settings = embedded_settings() if not (args.db_config or os.environ.get("DATABASE_URL")) else None
    embedded = settings is not None
    settings = settings or load_settings(args.db_config)
    try:
        return DatabaseStateManager(settings.database, connect_attempts=1)
    except DatabaseUnavailableError as exc:
        hint = "is `make run` running?" if embedded else "is the database up? (DATABASE_URL / --db-config)"
        print(f"pm-engine {args.command}: {exc}\n{hint}", file=sys.stderr)
        return None


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from pm_engine.core.engine import LiveTradingEngine
    from pm_engine.core.portfolio import PortfolioStateManager

    db = _open_store(args)
    if db is None:
        return 1
    try:
        engine = LiveTradingEngine(db_manager=db)
        if args.as_of is not None:  # the book as it stood then, rendered by the same code as GET /status
            as_of = PortfolioStateManager(engine.config, engine.instruments)
            as_of.load(db.state_as_of(args.as_of))
            engine.portfolio = as_of
        body = engine.status()
        if args.as_of is not None:  # the keys of GET /status; signal counts and instances are not history
            body.update(outcomes=None, instance_id=None, as_of=args.as_of.isoformat(), version=engine.portfolio.version)
        else:
            body["signals"] = db.signal_outcomes()
    finally:
        db.close()
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    when = f" as of {body['as_of']} (portfolio version {body['version']})" if args.as_of is not None else ""
    print(f"closed equity {body['closed_equity']}  open equity {body['open_equity']}  "
          f"risk {body['total_risk_percent']}%  margin used {body['margin_used']}{when}")
    if "signals" in body:
        print(f"signals: {', '.join(f'{k} {v}' for k, v in body['signals'].items()) or 'none'}")
    if not body["positions"]:
        print("no open positions")
    for p in body["positions"]:
        print(f"  {p['position_id']:<22} {p['lots']:>4} lots  entry {p['entry_price']:>12}  "
              f"stop {p['current_stop']:>12}  unrealized {p['unrealized_pnl']:>12}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pm_engine.core.backtest import plot_equity, stats_table, write_trades_csv
    from pm_engine.core.statistics import Trade, as_json

    if args.start and args.end and args.start > args.end:
        print("pm-engine report: error: --from is after --to", file=sys.stderr)
        return 2
    db = _open_store(args)
    if db is None:
        return 1
    try:
        stats = db.trade_stats(args.start, args.end)
        trades = [Trade.from_row(row) for row in db.trades(args.start, args.end)] if args.trades else []
        curve = db.equity_curve(args.start, args.end) if args.plot else []
        periods = {p: db.pnl_by_period(p, args.start, args.end) for p in ("day", "week", "month")}
    finally:
        db.close()
    span = f"{args.start.isoformat() if args.start else 'start'} to {args.end.isoformat() if args.end else 'now'}"
    print(f"pm-engine report, {span}")
    print(stats_table(stats))
    for row in periods["month"]:
        print(f"  month {row['period_start']}: P&L {row['realized_pnl']:>14}  trades {row['trades']:>4}  "
              f"closing equity {row['closing_equity']:>14}")
    if args.json:
        Path(args.json).write_text(json.dumps(as_json({**stats, "pnl_by_period": periods}), indent=2) + "\n")
        print(f"statistics written to {args.json}")
    if args.trades:
        write_trades_csv(trades, Path(args.trades))
        print(f"{len(trades)} trades written to {args.trades}")
    if args.plot:
        plot_equity([(p["recorded_at"], p["closed_equity"], p["open_equity"]) for p in curve], Path(args.plot),
                    "pm-engine equity curve")
        print(f"equity curve ({len(curve)} points) written to {args.plot}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from pm_engine.tools.bench import run_bench

    run_bench(quick=args.quick, json_path=args.json, url=os.environ.get("DATABASE_URL"))
    return 0


def cmd_chaos(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pm_engine.tools.chaos import SHORT, ChaosSettings, run_chaos

    settings = SHORT if args.short else ChaosSettings()
    chosen = {k: v for k, v in (("signals", args.signals), ("instances", args.instances), ("kills", args.kills),
                                ("db_restarts", args.db_restarts), ("fuzz", args.fuzz), ("seed", args.seed))
              if v is not None}
    for name, value in chosen.items():
        if value < (1 if name in ("signals", "instances") else 0):
            print(f"pm-engine chaos: error: --{name.replace('_', '-')} must be >= "
                  f"{1 if name in ('signals', 'instances') else 0}", file=sys.stderr)
            return 2
    return run_chaos(replace(settings, **chosen))


def cmd_run(args: argparse.Namespace) -> int:
    from pm_engine.ops.embedded import run_embedded

    return run_embedded(args.host, args.port, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pm-engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db-deploy", help="apply pending migrations and changed functions (idempotent)")
    _db_config_arg(p)
    p.set_defaults(func=cmd_db_deploy)

    p = sub.add_parser("live", help="serve the webhook against the configured database")
    _db_config_arg(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("status", help="equity and open positions from the database")
    _db_config_arg(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON (the keys of GET /status)")
    p.add_argument("--as-of", type=_time_arg, metavar="TS",
                   help="the book as committed at or before this time (ISO 8601; no zone = IST)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("report", help="trade statistics, P&L by period, equity curve and trade list from history")
    _db_config_arg(p)
    p.add_argument("--from", dest="start", type=_time_arg, metavar="TS", help="first time included (ISO 8601)")
    p.add_argument("--to", dest="end", type=_time_arg, metavar="TS", help="last time included (ISO 8601)")
    p.add_argument("--json", metavar="FILE", help="write the statistics (and P&L by period) as JSON")
    p.add_argument("--plot", metavar="PNG", help="write the equity curve (closed, open, drawdown shaded)")
    p.add_argument("--trades", metavar="CSV", help="write the trade list")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("run", help="private PostgreSQL cluster under ./var, deploy, serve (make run)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("bench", help="latency and throughput of the persistence path, as ratios to SELECT 1")
    p.add_argument("--quick", action="store_true", help="every part at a smaller size (under 2 minutes)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
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
    p.set_defaults(func=cmd_chaos)

    p = sub.add_parser("backtest", help="replay a CSV of signals through the engine, in memory")
    p.add_argument("csv", help="CSV whose header is the payload fields (type,instrument,position,price,...)")
    p.add_argument("--plot", metavar="PNG", help="write the equity curve to this PNG file")
    p.add_argument("--json", metavar="FILE", help="write the statistics, every signal's outcome and the open positions")
    p.add_argument("--trades", metavar="CSV", help="write the trade list")
    p.add_argument("--instruments", metavar="FILE", help="instrument configuration JSON (defaults built in)")
    p.add_argument("--breakers", metavar="FILE",
                   help="apply these breakers, as live trading does (JSON: daily_loss_pct, max_entries_per_day, "
                        "cooling_off_losses, cooling_off_hours)")
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
