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
                        help="database_config.json (section chosen by PM_ENV, default 'local'); default: "
                             "PM_DB_CONFIG, else ./database_config.json, else the make run cluster of ./var; "
                             "DATABASE_URL in the environment overrides it. The first line on stderr names the "
                             "database read")


def _settings(args: argparse.Namespace) -> Any:
    """The settings every database command reads, chosen once per run (cached on ``args``), with where they came from.

    ``DATABASE_URL``, else the config file (``--db-config``, ``PM_DB_CONFIG``, ``./database_config.json``), else the
    ``make run`` cluster of ``./var`` (``PM_VAR_DIR``) when there is one, else the built-in defaults.
    """
    cached = getattr(args, "_chosen", None)
    if cached is not None:
        return cached
    from dataclasses import replace

    from pm_engine.config import config_file
    from pm_engine.ops.embedded import embedded_settings, var_dir

    path, source = config_file(getattr(args, "db_config", None))
    settings = load_settings(path)
    if os.environ.get("DATABASE_URL"):
        source = "DATABASE_URL"
    elif path:
        source = f"{source} {path}"
    else:
        embedded = embedded_settings()
        if embedded is not None:
            settings = replace(settings, database=embedded.database, webhook_secret=embedded.webhook_secret,
                               read_token=embedded.read_token)
            source = f"the make run cluster in {var_dir()}"
        else:
            source = "built-in defaults: no DATABASE_URL, --db-config, PM_DB_CONFIG or ./database_config.json"
    args._chosen = settings
    args._source = source
    args._embedded = source.startswith("the make run")
    return settings


def database_line(args: argparse.Namespace) -> str:
    """``pm-engine CMD: database host:port/name as user (source)``: which book a command reads; never the password."""
    settings = _settings(args)
    db = settings.database
    hosts = ",".join(f"{h}:{p}" for h, p in db.hosts)
    line = f"pm-engine {args.command}: database {hosts}/{db.database} as {db.user} ({args._source})"
    if settings.read_database is not None:
        r = settings.read_database
        line += f"; reads that may lag: {','.join(f'{h}:{p}' for h, p in r.hosts)}/{r.database}"
    return line


def _holidays_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--holidays", metavar="FILE",
                        help="trading holidays to add or remove ({\"NSE\": {\"add\": [...], \"remove\": [...], "
                             "\"years\": [...]}}); they win over the shipped lists (also PM_HOLIDAYS_FILE, "
                             "holidays_file in the config)")


def cmd_db_deploy(args: argparse.Namespace) -> int:
    from pm_engine.store.deploy import deploy

    settings = _settings(args)
    report = deploy(settings.database)
    print(f"db-deploy {settings.database.url()}: {report.summary()}")
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pm_engine.core.backtest import plot_equity, run_backtest, write_trades_csv
    from pm_engine.core.replay.controls import BreakerSettings, Controls
    from pm_engine.core.engine import LiveTradingEngine
    from pm_engine.core.instruments import load_instruments

    path = Path(args.csv)
    if not path.is_file():
        print(f"pm-engine backtest: error: {path} not found", file=sys.stderr)
        return 2
    from pm_engine.core.contracts import ContractCalendar
    from pm_engine.core.holidays import load_holidays

    controls = Controls(BreakerSettings.from_file(Path(args.breakers))) if args.breakers else None
    instruments = load_instruments(args.instruments)
    engine = LiveTradingEngine(instruments=instruments, max_signal_age=None, controls=controls,
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


def _number_or_off(value: str) -> Any:
    """A breaker setting: a positive number, or ``off``."""
    if value.strip().lower() == "off":
        return "off"
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number (or 'off'): {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive (use 'off' to switch a breaker off)")
    return int(number) if number.is_integer() else number


def _price_arg(value: str) -> Any:
    from decimal import Decimal, InvalidOperation

    try:
        price = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a price: {value!r}") from None
    if not price.is_finite() or price <= 0:
        raise argparse.ArgumentTypeError("the price must be positive")
    return price


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
    from pm_engine.core.contracts import ContractCalendar
    from pm_engine.core.engine import LiveTradingEngine
    from pm_engine.core.holidays import load_holidays
    from pm_engine.core.instruments import load_instruments
    from pm_engine.store.manager import DatabaseStateManager

    instruments = load_instruments(settings.instruments_file)  # a bad file: stop now
    contracts = ContractCalendar(instruments, load_holidays(settings.holidays_file))
    db = DatabaseStateManager(settings.database)
    instance_id = f"{socket.gethostname()[:30]}-{os.getpid()}"
    age = timedelta(seconds=settings.max_signal_age_s) if settings.max_signal_age_s > 0 else None
    broker = broker_for(settings, db, contracts, instance_id)
    engine = LiveTradingEngine(db_manager=db, instance_id=instance_id, max_signal_age=age, broker=broker,
                               fault=fault_hook(os.environ.get("PM_FAULT_CRASH")), send_in_background=True,
                               contracts=contracts, mcx_quantity=settings.mcx_quantity_unit, instruments=instruments,
                               window=broker.window() if broker is not None else None)
    db.register_instance(instance_id, socket.gethostname()[:100], instance_port, __version__)
    engine.send_pending()
    return engine


def broker_for(settings: Any, db: Any, contracts: Any, instance_id: str = "broker-sender") -> Any:
    """None for the paper broker (the engine's default: fills inside the database); else the OpenAlgo sender."""
    if settings.broker.kind != "openalgo":
        return None
    from pm_engine.config import require_broker

    require_broker(settings.broker)  # the one command family that talks to the broker checks its settings
    from pm_engine.adapters.openalgo import OpenAlgoClient, Timeouts
    from pm_engine.core.market_hours import MarketHours
    from pm_engine.ops.sender import OrderSender, SenderSettings

    timeouts = Timeouts(order_read_s=settings.broker.order_timeout_s)
    client = OpenAlgoClient(settings.broker.url, settings.broker.api_key, settings.broker.strategy, timeouts)
    hours = MarketHours(settings.broker.market_hours_always,
                        lambda exchange, day: contracts.holidays[("NSE" if exchange == "NFO" else exchange)]
                        .is_trading_day(day))
    sending = SenderSettings(max_order_age_s=settings.broker.max_order_age_s,
                             review_after_s=settings.broker.review_after_s,
                             # longer than any request can take: a 'sending' this old lost its sender
                             abandoned_after_s=timeouts.connect_s + timeouts.order_read_s + 5,
                             # a call waiting this long is told "broker slow / not answering" before it ends
                             slow_after_s=min(3.0, timeouts.order_read_s / 2),
                             guard_base_pct=_pct(settings.broker.price_guard_base_pct),
                             guard_pyramid_pct=_pct(settings.broker.price_guard_pyramid_pct))
    return OrderSender(db, client, hours, sending, mcx_in_lots=settings.mcx_quantity_unit == "lots",
                       instance_id=instance_id)


def _pct(value: Optional[float]) -> Any:
    from decimal import Decimal

    return None if value is None else Decimal(str(value))


def serve(settings: Any, host: str, port: int, proxy_headers: bool = False,
          forwarded_allow_ips: Optional[str] = None, metrics_port: Optional[int] = None) -> int:
    """Deploy check, recover state, and serve the webhook until interrupted.

    Behind a reverse proxy, ``proxy_headers`` makes the sender's address the one the proxy forwards
    (from ``forwarded_allow_ips`` only), so the allow-list, the brute-force limit and the audit see
    the real sender. Off by default: then forwarding headers are ignored, and never trusted.
    """
    import uvicorn

    from pm_engine.store.audit import RefusalAudit
    from pm_engine.web.app import WebSettings, create_app

    if not settings.webhook_secret:
        print("pm-engine live: error: no webhook secret (set PM_WEBHOOK_SECRET or webhook_secret in the config)",
              file=sys.stderr)
        return 2
    from pm_engine.config import check_secrets

    check_secrets(settings)  # ConfigError (exit 2, said which) for a secret or token shorter than 24 characters
    from pm_engine.web.serving import UVICORN_LIMITS, GuardedH11Protocol
    from pm_engine import __version__
    from pm_engine.ops.jobs import BackgroundJobs, JobSettings

    notifier = _notifier(settings)
    engine = _engine(settings, port)
    audit = RefusalAudit(engine.db_manager, engine.instance_id)
    jobs = BackgroundJobs(engine, JobSettings(request_log_retention=f"{settings.request_log_retention_days} days",
                                              reconcile_every_s=float(os.environ.get("PM_RECONCILE_EVERY_S") or 60),
                                              roll_check_every_s=float(os.environ.get("PM_ROLL_CHECK_S") or 60)),
                          version=__version__, notifier=notifier, roller=roller_for(settings, engine.db_manager))
    from pm_engine.store.manager import DatabaseStateManager

    reader = DatabaseStateManager(settings.read_database) if settings.read_database else None
    app = create_app(engine, WebSettings(settings.webhook_secret, settings.allowed_ips, settings.read_token,
                                         settings.session_hours, settings.allowed_hosts), audit,
                     leader=lambda: jobs.is_leader, reader=reader)
    jobs.start()
    sender = engine.broker if hasattr(engine.broker, "health") else None  # the OpenAlgo sender (None: paper)
    if sender is not None:
        from pm_engine.core.errors import PmError

        try:  # before serving: the book against the broker's positions (a difference locks its instrument)
            check = sender.reconcile_and_record()
            print(f"reconciliation: {'book matches the broker' if check['matched'] else check['differences']}",
                  flush=True)
        except PmError as exc:
            print(f"reconciliation: broker not reachable ({exc}); the leader tries again every minute", flush=True)
        sender.start()
    if metrics_port:  # Prometheus on loopback without the token, for a local scraper
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=app.state.metrics.registry)
        print(f"metrics on http://127.0.0.1:{metrics_port}/metrics (this machine only)", flush=True)
    reads = "read token required" if settings.read_token else "no read token: reads from this machine only"
    print(f"pm-engine {engine.instance_id}: {len(engine.portfolio.positions)} open positions recovered, "
          f"closed equity {engine.portfolio.closed_equity}; {reads}; serving http://{host}:{port}/webhook", flush=True)
    if notifier is not None:
        print(f"notifications to {', '.join(t.label for t in notifier.targets)}", flush=True)
        notifier.direct("process", f"pm-engine started: {engine.instance_id}",
                        f"serving on port {port}, {len(engine.portfolio.positions)} open positions recovered")
    # uvicorn re-raises SIGTERM after its graceful shutdown: as SystemExit, the cleanup below (and the stop notice) runs
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, proxy_headers=proxy_headers,
                    forwarded_allow_ips=forwarded_allow_ips if proxy_headers else None, http=GuardedH11Protocol,
                    **UVICORN_LIMITS)
    finally:
        jobs.stop()
        if sender is not None:
            sender.stop()
        if notifier is not None:
            notifier.direct("process", f"pm-engine stopped: {engine.instance_id}", "a clean shutdown", wait_s=10)
        audit.flush(2)
        audit.close()
        if reader is not None:
            reader.close()
        engine.flush_orders(5)
        engine.close()
        try:
            engine.db_manager.stop_instance(engine.instance_id)  # the dashboard says stopped, not crashed
        except PmError as exc:
            print(f"pm-engine: could not record the clean stop ({exc})", file=sys.stderr)
        engine.db_manager.close()
    return 0


def _notifier(settings: Any) -> Any:
    """The Apprise notifier of ``PM_NOTIFY_URLS`` / ``notify.urls``; None when no URL is configured."""
    if not settings.notify.enabled:
        return None
    from pm_engine.notify.notifier import Notifier

    return Notifier(settings.notify)


def cmd_notify(args: argparse.Namespace) -> int:
    """``notify`` lists events and their deliveries; ``notify test`` and ``notify report`` (issue 24)."""
    action = getattr(args, "action", None)
    if action == "test":
        notifier = _notifier(_settings(args))
        if notifier is None:
            print("pm-engine notify test: error: no notification URL (set PM_NOTIFY_URLS or notify.urls)",
                  file=sys.stderr)
            return 2
        failed = 0
        for target, result in notifier.send_all("pm-engine test message",
                                                "If you can read this, pm-engine can reach you here."):
            print(f"{target.label}: {'delivered' if result.ok else 'failed: ' + str(result.error)}")
            failed += not result.ok
        return 1 if failed else 0
    if action == "report":
        return _notify_report(args)

    def show(db: Any) -> int:
        from pm_engine.notify.messages import Event, short

        rows = db.notification_log(args.since, args.limit)
        if args.json:
            return _print(rows, True, str)
        for r in rows:
            event = Event(int(r["id"]), r["kind"], r["level"], r["created_at"], r["data"] or {})
            states = ", ".join(f"{d['scheme']}#{d['target']} {d['state']}"
                               + (f" ({d['attempts']} attempts)" if d["attempts"] > 1 else "")
                               + (f": {d['last_error']}" if d["last_error"] and d["state"] != "sent" else "")
                               for d in r["deliveries"]) or "not yet taken up by the leader"
            print(f"#{r['id']:<6} {_when(r['created_at'])} {r['level']:<8} {short(event)}\n        {states}")
        if not rows:
            print("no notification events")
        return 0
    return _with_store(args, show)


def _notify_report(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from pm_engine.notify.settings import NotifySettings
    from pm_engine.ops.daily_report import IST, build_daily_report, report_due

    # the URLs (--send) and the report time come from the configuration; without --send only the time matters
    settings = _settings(args) if args.send or os.environ.get("PM_NOTIFY_REPORT_TIME") else None

    def run(db: Any) -> int:
        day = args.date
        if day is None:
            report_time = settings.notify.report_time if settings is not None else NotifySettings().report_time
            day = report_due(datetime.now(timezone.utc), report_time)[0]
        if day > datetime.now(IST).date():
            print(f"pm-engine notify report: error: --date {day} is in the future", file=sys.stderr)
            return 2
        report = build_daily_report(db, day)
        if args.json:
            _print(report.as_json(), True, str)
        else:
            print(report.text())
        if not args.send:
            return 0
        notifier = _notifier(settings)
        if notifier is None:
            print("pm-engine notify report: error: --send needs a notification URL (PM_NOTIFY_URLS or notify.urls)",
                  file=sys.stderr)
            return 2
        failed = 0
        for target, result in notifier.send_all(f"pm-engine daily report {day.isoformat()}", report.text()):
            print(f"{target.label}: {'delivered' if result.ok else 'failed: ' + str(result.error)}", file=sys.stderr)
            failed += not result.ok
        return 1 if failed else 0
    return _with_store(args, run, may_lag=True)


def _date_arg(value: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (YYYY-MM-DD, an IST trading day)") from None


def cmd_live(args: argparse.Namespace) -> int:
    from dataclasses import replace

    if args.forwarded_allow_ips and not args.proxy_headers:
        print("pm-engine live: error: --forwarded-allow-ips needs --proxy-headers", file=sys.stderr)
        return 2
    settings = _settings(args)
    if args.holidays:
        settings = replace(settings, holidays_file=args.holidays)
    if args.instruments:
        settings = replace(settings, instruments_file=args.instruments)
    if args.broker:
        settings = replace(settings, broker=replace(settings.broker, kind=args.broker))
        if args.broker == "openalgo" and not (settings.broker.url and settings.broker.api_key):
            print("pm-engine live: error: --broker openalgo needs PM_OPENALGO_URL and PM_OPENALGO_API_KEY",
                  file=sys.stderr)
            return 2
    return serve(settings, args.host, args.port, args.proxy_headers, args.forwarded_allow_ips or "127.0.0.1",
                 args.metrics_port)


def cmd_contracts(args: argparse.Namespace) -> int:
    """Per instrument the contract new orders use on a date (default today, IST) and the next one."""
    import json
    import logging
    from datetime import datetime, timezone

    from pm_engine.core.contracts import ContractCalendar, ist_date, report_date
    from pm_engine.core.holidays import load_holidays
    from pm_engine.core.instruments import load_instruments

    if args.on is None:
        on = ist_date(datetime.now(timezone.utc))
    else:
        try:
            on = report_date(args.on)
        except ValueError as exc:
            print(f"pm-engine contracts: error: --on: {exc}: {args.on[:40]!r}", file=sys.stderr)
            return 2
    holidays_file = args.holidays or os.environ.get("PM_HOLIDAYS_FILE") or None
    logging.getLogger("pm_engine.core.contracts").disabled = True  # its warnings are part of the output here
    report = ContractCalendar(load_instruments(args.instruments), load_holidays(holidays_file)).report(on)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"contracts new orders use on {report['on']} (IST):")
    for c in report["contracts"]:
        following = c["next"]
        print(f"  {c['instrument']:<12} {c['symbol']:<22} {c['exchange']:<4} expiry {c['expiry']}  "
              f"roll {c['roll_date']} ({c['days_to_roll']:>3} d)  lot {c['lot_size']:>5}   next {following['symbol']} "
              f"(lot {following['lot_size']}, from {c['roll_date']})")
    for warning in report["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _open_store(args: argparse.Namespace, may_lag: bool = False) -> Any:
    """The database ``_settings`` chose (``DATABASE_URL``, a config file, else a ``make run``); None (said why) if down.

    ``may_lag``: a read that may come from the read replica (``DATABASE_READ_URL``) when one is configured.
    """
    from pm_engine.store.manager import DatabaseStateManager

    settings = _settings(args)
    embedded = args._embedded
    target = settings.read_database if may_lag and settings.read_database else settings.database
    try:
        return DatabaseStateManager(target, connect_attempts=1)
    except DatabaseUnavailableError as exc:
        hint = ("is `make run` running?" if embedded
                else "is the database up? (DATABASE_URL / --db-config / PM_DB_CONFIG)")
        print(f"pm-engine {args.command}: {exc}\n{hint}", file=sys.stderr)
        return None


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from pm_engine.core.contracts import ist_date
    from pm_engine.core.engine import render_status
    from pm_engine.core.portfolio import PortfolioStateManager

    def read(db: Any) -> dict[str, Any]:
        if args.as_of is None:
            body = render_status(PortfolioStateManager(db_manager=db))  # loads the committed book
            body["signals"] = db.signal_outcomes()
            return body
        then = PortfolioStateManager()  # the book as it stood then, rendered by the same code as GET /status
        then.load(db.state_as_of(args.as_of))
        # the keys of GET /status; signal counts and instances are not history; days to expiry as of then
        return {**render_status(then, ist_date(args.as_of)), "outcomes": None, "instance_id": None,
                "as_of": args.as_of.isoformat(), "version": then.version}

    def show(db: Any) -> int:
        body = read(db)
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
            held = "-"
            if p.get("contract"):
                held = f"{p['contract']} (expiry {p['expiry']}, {p['days_to_expiry']} d)"
                if p.get("ce_symbol"):
                    held += f" legs {p['ce_symbol']} / {p['pe_symbol']}"
                if p.get("roll_due"):
                    held += f" ROLL DUE since {p['roll_date']}"
            if p.get("rollover_status") not in (None, "none"):
                held += f" roll {p['rollover_status']}"
            if p.get("rollover_count"):
                held += f" (rolled {p['rollover_count']}x, rollover P&L {p['rollover_pnl']})"
            print(f"  {p['position_id']:<22} {p['lots']:>4} lots  entry {p['entry_price']:>12}  "
                  f"stop {p['current_stop']:>12}  unrealized {p['unrealized_pnl']:>12}  {held}")
        return 0
    return _with_store(args, show, may_lag=args.as_of is not None)


def cmd_signals(args: argparse.Namespace) -> int:
    """The signal log, newest first. Each ``processed_at`` is printed whole (microseconds and offset),
    so it can be pasted into ``status --as-of`` and means the instant that signal changed the book."""
    import json

    if args.limit < 0:
        print("pm-engine signals: error: --limit must be >= 0", file=sys.stderr)
        return 2

    def show(db: Any) -> int:
        rows = [{"processed_at": r["processed_at"].isoformat(), "signal_time": r["signal_timestamp"].isoformat(),
                 "instrument": r["instrument"], "type": r["signal_type"], "layer": r["position"],
                 "outcome": r["processing_status"], "reason": r["reason"], "instance": r["processed_by_instance"],
                 "fingerprint": r["fingerprint"]}
                for r in db.recent_signals(args.limit, args.since)]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        if not rows:
            print("no signals" + (f" since {args.since.isoformat()}" if args.since else ""))
        for r in rows:
            print(f"{r['processed_at']}  {r['instrument']:<12} {r['type']:<10} {r['layer']:<8} {r['outcome']:<10} "
                  f"{r['reason'] or ''}  [{r['instance'] or '-'}; alert {r['signal_time']}]")
        return 0
    return _with_store(args, show, may_lag=True)


def cmd_orders(args: argparse.Namespace) -> int:
    """The order book, newest first: state, fills against the signal's price, why, attempts (GET /orders)."""
    import json

    from pm_engine.core.statistics import as_json
    from pm_engine.core.replay.states import ORDER_STATES
    from pm_engine.store.orders import OrderStates

    if args.state is not None and args.state not in ORDER_STATES:
        print(f"pm-engine orders: error: --state must be one of {', '.join(ORDER_STATES)}", file=sys.stderr)
        return 2

    def show(db: Any) -> int:
        rows = OrderStates(db).listing(args.state, args.since)
        if args.json:
            print(json.dumps(as_json(rows), indent=2))
            return 0
        if not rows:
            print("no orders" + (f" in state {args.state}" if args.state else ""))
        for r in rows:
            fill = f"{r['filled_quantity']}@{r['average_price']}" if r["filled_quantity"] else "-"
            print(f"{r['created_at'].isoformat()}  {r['client_order_id']:<34} {r['side']:<4} {r['quantity'] or '-':>5} "
                  f"{r['symbol'] or r['instrument']:<24} {r['state']:<16} filled {fill} signal {r['signal_price']} "
                  f"slippage {r['slippage'] if r['slippage'] is not None else '-'}  "
                  f"broker {r['broker_order_id'] or '-'}"
                  f"  attempts {r['attempts']}  {r['reason'] or ''}")
        return 0
    return _with_store(args, show)


def cmd_order_review(args: argparse.Namespace) -> int:
    """The trader's answer to a ``needs_review`` order, after looking at the broker's order book: it is there as
    ``--at-broker ID`` (the order opens and its fills are booked from the broker) or ``--not-at-broker`` (rejected:
    an entry's position is removed, an exit's position reopened). The database makes the transition.

    ``--at-broker`` asks the broker's order book first: the id must be there with the order's symbol, side and
    quantity, else nothing is written (exit 2). ``--force`` with ``--reason`` links without asking (an order no
    longer in today's books); reconciliation then judges its contract."""
    from pm_engine.adapters.openalgo import OpenAlgoClient, OpenAlgoError
    from pm_engine.core.errors import DatabaseError
    from pm_engine.ops.review import check_review
    from pm_engine.store.orders import OrderStates

    def fail(message: str) -> int:
        print(f"pm-engine orders review: error: {message}", file=sys.stderr)
        return 2

    if args.force and args.at_broker is None:
        return fail("--force: only with --at-broker")
    if args.force and not (args.reason or "").strip():
        return fail("--force needs --reason (what you saw at the broker)")
    settings = load_settings(args.db_config)

    def review(db: Any) -> int:
        states = OrderStates(db)
        link = None
        if args.at_broker is not None:
            link = "forced" if args.force else "checked"
            order = states.order(args.client_order_id)
            if order is None:
                return fail(f"client_order_id: {args.client_order_id} is not a needs_review order")
            if not args.force:
                if settings.broker.kind != "openalgo":
                    return fail("--at-broker: checking the broker's order book needs the OpenAlgo broker "
                                "(PM_BROKER=openalgo, PM_OPENALGO_URL, PM_OPENALGO_API_KEY), or --force --reason")
                client = OpenAlgoClient(settings.broker.url or "", settings.broker.api_key or "",
                                        settings.broker.strategy)
                try:
                    problem = check_review(client, args.at_broker, order)
                except OpenAlgoError as exc:
                    return fail(f"broker: {exc}")
                if problem is not None:
                    return fail(f"--at-broker: {problem}; nothing changed (--force --reason to link anyway)")
        try:
            row = states.review(args.client_order_id, args.at_broker, args.reason, _who(), link)
        except DatabaseError as exc:
            return fail(str(exc))
        print(f"{row['client_order_id']}: {row['status']} ({row['reason']})")
        return 0
    return _with_store(args, review)


def cmd_reconcile(args: argparse.Namespace) -> int:
    """The book's net quantity per contract against the broker's positionbook: exit 0 matched, 3 not."""
    import json

    from pm_engine.adapters.openalgo import OpenAlgoClient, OpenAlgoError
    from pm_engine.ops.sender import reconcile

    settings = _settings(args)
    if settings.broker.kind != "openalgo":
        print("pm-engine reconcile: error: needs the OpenAlgo broker (PM_BROKER=openalgo, PM_OPENALGO_URL, "
              "PM_OPENALGO_API_KEY)", file=sys.stderr)
        return 2
    from pm_engine.config import require_broker

    require_broker(settings.broker)
    client = OpenAlgoClient(settings.broker.url or "", settings.broker.api_key or "", settings.broker.strategy)

    def check(db: Any) -> int:
        try:
            result = reconcile(db, client, settings.mcx_quantity_unit == "lots")
        except OpenAlgoError as exc:
            print(f"pm-engine reconcile: error: broker: {exc}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print("book matches the broker" if result["matched"] else "book and broker differ:")
            for d in result["differences"]:
                print(f"  {d['exchange']}:{d['symbol']} {d['product']}: book {d['book_quantity']}, "
                      f"broker {d['broker_quantity']}")
            for o in result["other_positions"]:
                print(f"  not ours (left alone): {o['exchange']}:{o['symbol']} {o['product']} {o['quantity']}")
            if not result["matched"]:
                print(RECONCILE_NEXT)
        return 0 if result["matched"] else 3
    return _with_store(args, check)


RECONCILE_NEXT = (
    "next: nothing was placed to fix this, and the instrument takes no new entries while the engine's lock holds.\n"
    "  1. compare with your broker's positions and `pm-engine orders` (an order still in flight shows up later);\n"
    "  2. if the broker is right, close or open the difference at the broker by hand, or `pm-engine exit` the book's\n"
    "     position; if the book is right, place the missing order at the broker by hand;\n"
    "  3. run `pm-engine reconcile` again until it says \"book matches the broker\", then\n"
    "     `pm-engine unlock INSTRUMENT`.")


def roller_for(settings: Any, db: Any) -> Any:
    """The rollover planner of this configuration: the contract calendar, the market hours, the MCX unit."""
    from pm_engine.core.contracts import ContractCalendar
    from pm_engine.core.holidays import load_holidays
    from pm_engine.core.instruments import load_instruments
    from pm_engine.core.market_hours import MarketHours
    from pm_engine.ops.rollover import Roller

    instruments = load_instruments(settings.instruments_file)
    contracts = ContractCalendar(instruments, load_holidays(settings.holidays_file))

    def trading_day(exchange: str, day: Any) -> bool:
        return bool(contracts.holidays["NSE" if exchange == "NFO" else exchange].is_trading_day(day))

    hours = MarketHours(settings.broker.market_hours_always, trading_day)
    return Roller(db, contracts, instruments, hours, settings.mcx_quantity_unit)


def cmd_rollover(args: argparse.Namespace) -> int:
    """Show what is due to roll and roll it now (exit 0; 3 when a selected position cannot be rolled)."""
    import json
    import time

    from pm_engine.core.statistics import as_json

    settings = _settings(args)
    if args.all and args.position_ids:
        print("pm-engine rollover: error: give --all or position ids, not both", file=sys.stderr)
        return 2
    if args.force and not (args.all or args.position_ids):
        print("pm-engine rollover: error: --force needs --all or position ids", file=sys.stderr)
        return 2

    def run(db: Any) -> int:
        roller = roller_for(settings, db)
        book = roller.book()
        chosen: Optional[set[str]] = None
        if args.position_ids:
            missing = [pid for pid in args.position_ids
                       if pid not in book.positions or book.positions[pid].status != "open"]
            if missing:
                print(f"pm-engine rollover: error: position_id: no open position {', '.join(missing)}", file=sys.stderr)
                return 2
            chosen = {book.positions[pid].instrument for pid in args.position_ids}
        result = roller.check(force=args.force, instruments=chosen, dry_run=args.dry_run, respect_hours=False)
        if settings.broker.kind != "openalgo" and not args.dry_run:
            roller.fill_paper()  # the paper broker fills inside the database: the roll completes now
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline and roller.states.active():
            time.sleep(0.5)
        rolls = {r["roll_id"]: r for r in roller.states.listing(None, 50)}
        for started in result.started:
            if started.get("roll_id") in rolls:
                started.update(state=rolls[started["roll_id"]]["state"], reason=rolls[started["roll_id"]]["reason"])
        if args.json:
            print(json.dumps(as_json(result.as_json()), indent=2, default=str))
        else:
            for started in result.started:
                what = "would roll" if started.get("dry_run") else f"roll {started['roll_id']} {started['state']}:"
                plan = started.get("plan") or {}
                print(f"{what} {started['instrument']} {plan.get('from_symbol', started.get('from_symbol'))} -> "
                      f"{plan.get('to_symbol', started.get('to_symbol'))}")
                for layer in plan.get("layers", []):  # the plan's lots and order quantities (README: --dry-run)
                    print(f"  {layer['position_id']}: close {layer['lots']} lots ({layer['close_quantity']} units of "
                          f"lot {layer['lot_size']}), open {layer['new_lots']} lots ({layer['open_quantity']} units "
                          f"of lot {layer['new_lot_size']}) in {layer['to_symbol']} at about {layer['price']}")
            for skipped in result.skipped:
                print(f"not rolled: {skipped['instrument']} {skipped['from_symbol']}: {skipped['why']}")
            for problem in result.problems:
                print(f"cannot roll: {problem}")
            if not (result.started or result.skipped or result.problems):
                print("no open position to roll")
        return 3 if result.problems and (chosen or args.all) else 0
    return _with_store(args, run)


def cmd_report(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pm_engine.core.backtest import plot_equity, stats_table, write_trades_csv
    from pm_engine.core.statistics import Trade, as_json

    if args.start and args.end and args.start > args.end:
        print("pm-engine report: error: --from is after --to", file=sys.stderr)
        return 2

    def report(db: Any) -> int:
        stats = db.trade_stats(args.start, args.end)
        periods = {p: db.pnl_by_period(p, args.start, args.end) for p in ("day", "week", "month")}
        span = f"{args.start.isoformat() if args.start else 'start'} to {args.end.isoformat() if args.end else 'now'}"
        print(f"pm-engine report, {span}")
        print(stats_table(stats))
        for row in periods["month"]:
            print(f"  month {row['period_start']}: P&L {row['realized_pnl']:>14}  trades {row['trades']:>4}  "
                  f"flows {row['net_flows']:>14}  closing equity {row['closing_equity']:>14}")
        if args.json:
            Path(args.json).write_text(json.dumps(as_json({**stats, "pnl_by_period": periods}), indent=2) + "\n")
            print(f"statistics written to {args.json}")
        if args.trades:
            trades = [Trade.from_row(row) for row in db.trades(args.start, args.end)]
            write_trades_csv(trades, Path(args.trades))
            print(f"{len(trades)} trades written to {args.trades}")
        if args.plot:
            curve = db.equity_curve(args.start, args.end)
            plot_equity([(p["recorded_at"], p["closed_equity"], p["open_equity"], p["flow"]) for p in curve],
                        Path(args.plot), "pm-engine equity curve")
            print(f"equity curve ({len(curve)} points) written to {args.plot}")
        return 0
    return _with_store(args, report, may_lag=True)


def _who() -> str:
    """Who a CLI change is recorded as: ``cli:user@host``."""
    import getpass
    import re
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): the number will do
        user = str(os.getuid())

    def clean(text: str) -> str:  # the characters pm.check_principal accepts (a principal is never free text)
        return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:40] or "_"
    return f"cli:{clean(user)}@{clean(socket.gethostname())}"


def _duration_arg(value: str) -> Any:
    """``--for 30m``, ``2h``, ``1d``, ``1h30m``: a positive duration."""
    import re
    from datetime import timedelta

    parts = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", value.strip().lower())
    if not value.strip() or parts is None:
        raise argparse.ArgumentTypeError(f"not a duration: {value!r} (e.g. 30m, 2h, 1d, 1h30m)")
    days, hours, minutes, seconds = (int(x or 0) for x in parts.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if duration.total_seconds() <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return duration


def _print(body: Any, as_json: bool, text: Callable[[Any], str]) -> int:
    import json

    from pm_engine.core.statistics import as_json as to_json

    print(json.dumps(to_json(body), indent=2) if as_json else text(body))
    return 0


def _with_store(args: argparse.Namespace, work: Callable[[Any], int], may_lag: bool = False) -> int:
    """``work(db)`` on the store of ``_open_store`` (1 when it is down), closed afterwards."""
    db = _open_store(args, may_lag)
    if db is None:
        return 1
    try:
        return work(db)
    finally:
        db.close()


def _when(value: Any) -> str:
    """A time from a row (datetime) or a JSON document (ISO text), shown to the second, in UTC."""
    from datetime import datetime, timezone

    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{when.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def _until(value: Any) -> str:
    """A lock's end: ``until <time>``, or ``until unlocked`` for one with no end (stored as infinity)."""
    from datetime import datetime

    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return "until unlocked" if when is None or when.year >= 9999 else f"until {_when(when)}"


# the mode's first row is written by the migration that made the table: for a user, the default
SEEDED_BY = "migration 004"


def _mode_text(mode: dict[str, Any]) -> str:
    if mode["changed_by"] == SEEDED_BY:
        since = "the default (never changed)"
    else:
        since = f"set by {mode['changed_by']} at {_when(mode['changed_at'])}"
    return (f"trading mode: {mode['mode']}" + (f" ({mode['reason']})" if mode.get("reason") else "")
            + f", {since}, version {mode['version']}")


def cmd_pause(args: argparse.Namespace) -> int:
    mode = "halted" if args.halt else "exits_only"
    return _with_store(args, lambda db: _print(db.set_trading_mode(mode, args.reason, _who()), False, _mode_text))


def cmd_resume(args: argparse.Namespace) -> int:
    return _with_store(args, lambda db: _print(db.set_trading_mode("active", args.reason, _who()), False, _mode_text))


def cmd_mode(args: argparse.Namespace) -> int:
    def show(db: Any) -> int:
        mode = db.trading_mode()
        if args.json:
            return _print({**mode, "history": db.trading_mode_history(20), "locks": db.active_locks()}, True, str)
        print(_mode_text(mode))
        for lock in db.active_locks():
            print(f"  {lock['instrument']} locked {_until(lock['locked_until'])}: {lock['reason']} "
                  f"({lock['source']})")
        return 0
    return _with_store(args, show)


def cmd_breakers(args: argparse.Namespace) -> int:
    def text(b: dict[str, Any]) -> str:
        def show(value: Any) -> str:
            return "off" if value is None else str(value)
        return (f"daily loss limit %: {show(b['daily_loss_pct'])}\nmax entries per instrument per day: "
                f"{show(b['max_entries_per_day'])}\ncooling off: {show(b['cooling_off_losses'])} losing trades -> "
                f"{show(b['cooling_off_hours'])} h\n"
                f"(set by {b['updated_by']} at {_when(b['updated_at'])})")

    if getattr(args, "action", None) == "set":
        chosen = {name: getattr(args, name) for name in ("daily_loss_pct", "max_entries_per_day", "cooling_off_losses",
                                                         "cooling_off_hours") if getattr(args, name) is not None}
        if not chosen:
            print("pm-engine breakers set: error: give at least one setting (a number, or 'off')", file=sys.stderr)
            return 2
        values = {k: (None if v == "off" else v) for k, v in chosen.items()}
        return _with_store(args, lambda db: _print(db.set_breakers(values, _who()), False, text))
    return _with_store(args, lambda db: _print(db.breakers(), args.json, text))


def cmd_lock(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    until = datetime.now(timezone.utc) + args.duration

    def lock(db: Any) -> int:
        db.lock_instrument(args.instrument.upper(), until, args.reason, _who())
        print(f"{args.instrument.upper()} locked until {_when(until)}: "
              "new bases and pyramids are blocked")
        return 0
    return _with_store(args, lock)


def cmd_unlock(args: argparse.Namespace) -> int:
    def unlock(db: Any) -> int:
        released = db.unlock_instrument(args.instrument.upper(), _who())
        print(f"{args.instrument.upper()}: {released} lock(s) released")
        return 0
    return _with_store(args, unlock)


def cmd_exit(args: argparse.Namespace) -> int:
    """Close a layer (or ALL) the way the running engine sends orders: decided and queued in the database.

    The exit is one transaction (the book closes it now, its orders queued in the outbox). A layer traded on
    paper is filled on paper here; one traded at a broker (``pm.layer_on_paper``: the rule rollover uses) is never
    paper-filled, whatever this shell's own settings: its order waits, queued, for the broker sender of the
    running engine, or of the next one to start.
    """
    from pm_engine.core.contracts import ContractCalendar
    from pm_engine.core.engine import LiveTradingEngine
    from pm_engine.core.holidays import load_holidays
    from pm_engine.core.instruments import load_instruments
    from pm_engine.core.signals import SignalValidationError

    settings = load_settings(args.db_config)
    instruments = load_instruments(settings.instruments_file)
    contracts = ContractCalendar(instruments, load_holidays(settings.holidays_file))

    def close(db: Any) -> int:
        engine = LiveTradingEngine(db_manager=db, instance_id=_who()[:50], instruments=instruments,
                                   contracts=contracts, mcx_quantity=settings.mcx_quantity_unit)
        try:
            result = engine.manual_exit(args.instrument, args.layer, args.price, args.reason, force=args.force)
        except SignalValidationError as exc:
            print(f"pm-engine exit: error: {exc}", file=sys.stderr)
            return 2
        print(f"{result.outcome.value}: {result.reason}")
        if result.outcome.value != "executed":
            return 1
        queued = [o["client_order_id"] for o in db.orders_for_signal(result.fingerprint) if o["status"] == "queued"]
        if queued:
            # an engine that heartbeated within three heartbeats (5 s each) is running; a stopped one is silent
            running = [i for i in db.list_instances() if i["status"] == "active" and not i["stale"]
                       and i["heartbeat_age_s"] is not None and float(i["heartbeat_age_s"]) <= 15]
            when = (f"the running engine's broker sender sends it ({running[0]['instance_id']})" if running else
                    "no engine is running: it is sent when one starts (pm-engine live --broker openalgo)")
            print(f"queued for the broker, not filled on paper: {', '.join(queued)}; {when}")
        return 0
    return _with_store(args, close)


def cmd_refusals(args: argparse.Namespace) -> int:
    def text(rows: list[dict[str, Any]]) -> str:
        lines = [f"{_when(r['received_at'])} {r['source']:<15} {r['status']} {r['reason']}"
                 + (f" [{r['field']}]" if r["field"] else "") for r in rows]
        return "\n".join(lines) or "no refused requests"
    return _with_store(args, lambda db: _print(db.refusals(args.since), args.json, text))


def cmd_anomalies(args: argparse.Namespace) -> int:
    def text(rows: list[dict[str, Any]]) -> str:
        lines = [f"{_when(r['detected_at'])} {r['kind']:<22} {r['instrument']} {r['signal_type']} "
                 f"{r['position']}: {r['reason']}" for r in rows]
        return "\n".join(lines) or "no anomalies"
    return _with_store(args, lambda db: _print(db.anomalies(args.since), args.json, text))


def cmd_capital(args: argparse.Namespace) -> int:
    """``capital deposit|withdraw AMOUNT [--note]`` records a flow (DOMAIN.md section 17); ``capital``: the ledger."""
    from pm_engine.core.capital import CapitalRefusedError, parse_amount

    action = getattr(args, "action", None)
    if action in ("deposit", "withdraw"):
        kind = "deposit" if action == "deposit" else "withdrawal"
        try:
            amount = parse_amount(args.amount)
        except CapitalRefusedError as exc:
            print(f"pm-engine capital {action}: error: {exc.field}: {exc}", file=sys.stderr)
            return 2

        def record(db: Any) -> int:
            try:  # the database checks the amount and the margin in use, and writes nothing if it refuses
                flow = db.record_capital_flow(kind, amount, args.note, _who())
            except CapitalRefusedError as exc:
                print(f"pm-engine capital {action}: error: {exc.field}: {exc}", file=sys.stderr)
                return 2
            print(f"{kind} of {flow['amount']} recorded by {flow['recorded_by']}: closed equity now "
                  f"{flow['closed_equity']}, equity high {flow['equity_high']} (portfolio version "
                  f"{flow['portfolio_version']}; every instance sizes on it from its next signal)")
            return 0
        return _with_store(args, record)

    def text(body: dict[str, Any]) -> str:
        lines = [f"{_when(f['recorded_at'])}  {f['kind']:<10} {f['amount']:>16}  closed equity after "
                 f"{f['closed_equity']:>16}  by {f['recorded_by']}" + (f"  ({f['note']})" if f["note"] else "")
                 for f in body["flows"]]
        return "\n".join(lines or ["no capital flows"]) + (
            f"\ndeposits {body['deposits']}, withdrawals {body['withdrawals']}, net {body['net_flows']}")
    return _with_store(args, lambda db: _print({"flows": db.capital_ledger(), **db.capital_totals()}, args.json, text))


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


def cmd_run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pm_engine.ops.embedded import run_embedded

    if args.broker == "sim":
        if os.environ.get("DATABASE_URL"):
            print("pm-engine run: error: --broker sim keeps its own book in its own database (var/sim/), never in "
                  "one the engine trades from: unset DATABASE_URL", file=sys.stderr)
            return 2
        return run_embedded(args.host, args.port, lambda settings, host, port: serve_beside_sim(
            settings, host, port, args.sim_port), folder=SIM_FOLDER)
    if args.broker is not None:
        def chosen(settings: Any, host: str, port: int) -> int:
            from pm_engine.config import broker_settings

            broker = broker_settings({}, dict(os.environ), args.broker)  # make run's settings carry no broker
            if args.broker == "openalgo" and not (broker.url and broker.api_key):
                print("pm-engine run: error: --broker openalgo needs PM_OPENALGO_URL and PM_OPENALGO_API_KEY "
                      "(or try the whole loop with --broker sim)", file=sys.stderr)
                return 2
            return serve(replace(settings, broker=broker), host, port)
        return run_embedded(args.host, args.port, chosen)
    return run_embedded(args.host, args.port, serve)


SIM_FOLDER = "sim"  # run --broker sim: its own embedded cluster in var/sim/


def serve_beside_sim(settings: Any, host: str, port: int, sim_port: int = 5000) -> int:
    """``pm-engine run --broker sim``: the broker simulator on loopback in this process, the engine sending to it.

    The whole loop before a real account: each order goes over HTTP to the simulator, is accepted, filled (at the
    price set with ``POST /sim/price``, else the order's signal price) and booked from its trade book. A fresh API
    key each run, which the simulator's controls need too; its faults can be switched on with ``POST /sim/faults``
    while it runs. Its book is a database of its own (``var/sim/``, run_embedded's folder): a price set by hand
    must never fill an order of the book ``make run`` trades from.
    """
    import secrets
    import threading
    from dataclasses import replace
    from decimal import Decimal

    from pm_engine.sim.server import make_server
    from pm_engine.store.manager import DatabaseStateManager
    from pm_engine.store.orders import sending_signal_price

    prices = DatabaseStateManager(settings.database)

    def signal_price(symbol: str, side: str) -> Optional[Decimal]:
        return sending_signal_price(prices, symbol, side)

    key = secrets.token_urlsafe(24)
    try:
        server = make_server("127.0.0.1", sim_port, key, price_source=signal_price)
    except OSError as exc:
        print(f"pm-engine run: error: the broker simulator cannot listen on 127.0.0.1:{sim_port} ({exc}); "
              "choose another with --sim-port", file=sys.stderr)
        prices.close()
        return 2
    url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="broker-sim",
                              daemon=True)
    thread.start()
    print(f"broker-sim: OpenAlgo API on {url}/api/v1/ (controls under /sim/: price, faults, fill, state); "
          "orders fill at the signal's price unless POST /sim/price sets one", flush=True)
    from pm_engine.ops import embedded

    print(f"broker-sim: its book is kept in its own database under {embedded.var_dir()}, never the one `make run` "
          "trades from", flush=True)
    print(f"broker-sim: the API and the controls need its key (this run's): {key}", flush=True)
    print(f"  curl -s -X POST {url}/sim/price -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' "
          "-d '{\"symbol\": \"...\", \"price\": 52000}'", flush=True)
    simulated = replace(settings.broker, kind="openalgo", url=url, api_key=key, market_hours_always=True)
    try:
        return serve(replace(settings, broker=simulated), host, port)
    finally:
        server.shutdown()
        server.server_close()
        prices.close()


def cmd_broker_sim(args: argparse.Namespace) -> int:
    from pm_engine.sim.main import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pm-engine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("db-deploy", help="apply pending migrations and changed functions (idempotent); run it as "
                                         "the schema's owner, not the app role")
    _db_config_arg(p)
    p.set_defaults(func=cmd_db_deploy)

    p = sub.add_parser("live", help="serve the webhook against the configured database")
    _db_config_arg(p)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--proxy-headers", action="store_true",
                   help="behind a reverse proxy: take the sender's address from X-Forwarded-For / Forwarded")
    p.add_argument("--forwarded-allow-ips", metavar="ADDR",
                   help="the proxy addresses whose forwarding headers are trusted (default 127.0.0.1)")
    p.add_argument("--broker", choices=("paper", "openalgo"),
                   help="where orders go (default: PM_BROKER, broker.kind in the config, else paper)")
    p.add_argument("--instruments", metavar="FILE",
                   help="instrument configuration JSON over the built-in table, e.g. Bank Nifty's synthetic execution "
                        "(default: PM_INSTRUMENTS_FILE, instruments_file in the config)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="also serve Prometheus metrics on 127.0.0.1:PORT without the token (GET /metrics needs it)")
    _holidays_arg(p)
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("contracts", help="per instrument the contract new orders use on a date, and the next one")
    p.add_argument("--on", metavar="DATE", help="the date (YYYY-MM-DD, IST; default today)")
    p.add_argument("--json", action="store_true", help="print JSON (the body of GET /contracts)")
    p.add_argument("--instruments", metavar="FILE", help="instrument configuration JSON (defaults built in)")
    _holidays_arg(p)
    p.set_defaults(func=cmd_contracts)

    p = sub.add_parser("status", help="equity and open positions from the database (no broker settings needed)")
    _db_config_arg(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON (the keys of GET /status)")
    p.add_argument("--as-of", type=_time_arg, metavar="TS",
                   help="the book as committed at or before this time (ISO 8601; no zone = IST)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("signals", help="the signal log, newest first (processed at, alert time, outcome, reason)")
    _db_config_arg(p)
    p.add_argument("--since", type=_time_arg, metavar="TS", help="only signals processed at or after this time")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N signals (default 50)")
    p.add_argument("--json", action="store_true",
                   help="print JSON; each processed_at can be given to status --as-of as it is")
    p.set_defaults(func=cmd_signals)

    p = sub.add_parser("orders", help="broker orders, newest first: state, fills, signal price, slippage, reason")
    _db_config_arg(p)
    p.add_argument("--state", metavar="S", help="only orders in this state (queued, sending, open, filled, ...)")
    p.add_argument("--since", type=_time_arg, metavar="TS", help="only orders created at or after this time")
    p.add_argument("--json", action="store_true", help="print JSON (the orders of GET /orders)")
    p.set_defaults(func=cmd_orders)
    actions = p.add_subparsers(dest="action")
    q = actions.add_parser("review", help="resolve a needs_review order once you have looked at the broker's books")
    _db_config_arg(q)
    q.add_argument("client_order_id", help="the order's client_order_id (pm-engine orders --state needs_review)")
    found = q.add_mutually_exclusive_group(required=True)
    found.add_argument("--at-broker", metavar="BROKER_ORDER_ID",
                       help="it is at the broker as this order: it opens and its fills are booked from the broker")
    found.add_argument("--not-at-broker", dest="at_broker", action="store_const", const=None,
                       help="it never reached the broker: rejected (an entry removed, an exit reopened)")
    q.add_argument("--reason", help="recorded with the order's event (what you saw)")
    q.add_argument("--force", action="store_true",
                   help="with --at-broker and --reason: link without finding the id in the broker's order book "
                        "(an order no longer in today's books; reconciliation then judges its contract)")
    q.set_defaults(func=cmd_order_review)

    p = sub.add_parser("reconcile", help="compare the book's net quantity per contract with the broker's positions "
                                         "(exit 0 matched, 3 differ: it says what to do next); needs "
                                         "PM_OPENALGO_URL and PM_OPENALGO_API_KEY")
    _db_config_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON (the body of GET /reconcile)")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("rollover", help="show the groups due to roll to their next contract and roll them now "
                                        "(the running engine sends the legs)")
    _db_config_arg(p)
    p.add_argument("position_ids", nargs="*", metavar="POSITION_ID", help="roll these positions' groups")
    p.add_argument("--all", action="store_true", help="every open group (due ones unless --force)")
    p.add_argument("--force", action="store_true", help="roll before the roll date")
    p.add_argument("--dry-run", action="store_true",
                   help="show the plan (each layer's lots and order quantities), change nothing")
    p.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S seconds for the rolls to end")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_rollover)

    p = sub.add_parser("report", help="trade statistics, P&L by period, equity curve and trade list from history")
    _db_config_arg(p)
    p.add_argument("--from", dest="start", type=_time_arg, metavar="TS", help="first time included (ISO 8601)")
    p.add_argument("--to", dest="end", type=_time_arg, metavar="TS", help="last time included (ISO 8601)")
    p.add_argument("--json", metavar="FILE", help="write the statistics (and P&L by period) as JSON")
    p.add_argument("--plot", metavar="PNG", help="write the equity curve (closed, open, drawdown shaded)")
    p.add_argument("--trades", metavar="CSV", help="write the trade list")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("pause", help="stop new entries (default: exits only) or all trading (--halt), every instance")
    _db_config_arg(p)
    p.add_argument("--reason", required=True, help="why (recorded with who and when)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--exits-only", action="store_true", help="block entries and pyramids, allow exits (default)")
    how.add_argument("--halt", action="store_true", help="block every signal, exits too")
    p.set_defaults(func=cmd_pause)

    p = sub.add_parser("resume", help="trade normally again")
    _db_config_arg(p)
    p.add_argument("--reason", help="why (recorded)")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("mode", help="the trading mode, who set it and why, and the instrument locks")
    _db_config_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_mode)

    p = sub.add_parser("breakers", help="show the breakers (or change them: breakers set ...)")
    _db_config_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_breakers)
    actions = p.add_subparsers(dest="action")
    q = actions.add_parser("set", help="change breaker settings ('off' switches one off)")
    _db_config_arg(q)
    q.add_argument("--daily-loss-pct", type=_number_or_off,
                   help="pause entries when open equity falls this %% below the day's start (IST)")
    q.add_argument("--max-entries-per-day", type=_number_or_off,
                   help="entries (bases and pyramids) per instrument per IST day")
    q.add_argument("--cooling-off-losses", type=_number_or_off,
                   help="losing trades in a row on an instrument that start a cooling-off")
    q.add_argument("--cooling-off-hours", type=_number_or_off, help="how long no new base is taken after that")
    q.set_defaults(func=cmd_breakers)

    p = sub.add_parser("lock", help="block new bases and pyramids on one instrument for a while")
    _db_config_arg(p)
    p.add_argument("instrument")
    p.add_argument("--for", dest="duration", type=_duration_arg, required=True, metavar="DURATION",
                   help="e.g. 30m, 2h, 1d")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("unlock", help="release an instrument's locks")
    _db_config_arg(p)
    p.add_argument("instrument")
    p.set_defaults(func=cmd_unlock)

    p = sub.add_parser("exit", help="close a layer (or all) now, as an EXIT alert would, reason MANUAL: a layer "
                                    "traded on paper is filled on paper; one traded at a broker is queued for the "
                                    "running engine's broker sender (or the next engine to start), never paper-filled")
    _db_config_arg(p)
    p.add_argument("instrument")
    p.add_argument("--layer", default="ALL", help="Long_1 … Long_6 (default ALL)")
    p.add_argument("--price", type=_price_arg,
                   help="exit price (default: the instrument's last mark; within 5 %% of it unless --force)")
    p.add_argument("--force", action="store_true", help="accept a --price more than 5 %% from the last mark")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_exit)

    p = sub.add_parser("refusals", help="refused webhook requests (default: the last 24 hours)")
    _db_config_arg(p)
    p.add_argument("--since", type=_time_arg, metavar="TS")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_refusals)

    p = sub.add_parser("anomalies", help="alerts that suggest an earlier one was missed (default: the last 24 hours)")
    _db_config_arg(p)
    p.add_argument("--since", type=_time_arg, metavar="TS")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_anomalies)

    p = sub.add_parser("capital", help="the capital ledger; capital deposit|withdraw AMOUNT records a flow")
    _db_config_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_capital)
    actions = p.add_subparsers(dest="action")
    for name, what in (("deposit", "add capital: closed equity, equity high and sizing rise by AMOUNT"),
                       ("withdraw", "take capital out (refused below the margin in use or below zero)")):
        q = actions.add_parser(name, help=what)
        _db_config_arg(q)
        q.add_argument("amount", help="rupees, at most two decimals (e.g. 1000000 or 250000.50)")
        q.add_argument("--note", help="recorded with the flow, who and when")
        q.set_defaults(func=cmd_capital)

    p = sub.add_parser("notify", help="notification events and their delivery per URL (default: the last day); "
                                      "notify test, notify report")
    _db_config_arg(p)
    p.add_argument("--since", type=_time_arg, metavar="TS")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_notify)
    actions = p.add_subparsers(dest="action")
    q = actions.add_parser("test", help="send one message to every notification URL; print delivered or the error")
    _db_config_arg(q)
    q.set_defaults(func=cmd_notify)
    q = actions.add_parser("report", help="the daily report (default: the last day whose report time has passed)")
    _db_config_arg(q)
    q.add_argument("--date", type=_date_arg, metavar="D", help="the IST trading day (YYYY-MM-DD)")
    q.add_argument("--json", action="store_true", help="the figures as JSON")
    q.add_argument("--send", action="store_true", help="also send it to every notification URL")
    q.set_defaults(func=cmd_notify)

    p = sub.add_parser("run", help="private PostgreSQL cluster under ./var, deploy, serve (make run)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--broker", choices=("paper", "sim", "openalgo"),
                   help="where orders go: sim starts the broker simulator beside the engine (the whole loop over "
                        "HTTP, no account needed); default PM_BROKER, else paper")
    p.add_argument("--sim-port", type=int, default=5000, metavar="PORT",
                   help="the simulator's port with --broker sim (default 5000, OpenAlgo's; 0 picks a free one)")
    p.set_defaults(func=cmd_run)

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

    p = sub.add_parser("broker-sim", help="an OpenAlgo-compatible broker simulator, with switches for its faults")
    from pm_engine.sim.main import add_arguments as broker_sim_arguments

    broker_sim_arguments(p)
    p.set_defaults(func=cmd_broker_sim)

    p = sub.add_parser("backtest", help="replay a CSV of signals through the engine, in memory")
    p.add_argument("csv", help="CSV whose header is the payload fields (type,instrument,position,price,...)")
    p.add_argument("--plot", metavar="PNG", help="write the equity curve to this PNG file")
    p.add_argument("--json", metavar="FILE", help="write the statistics, every signal's outcome and the open positions")
    p.add_argument("--trades", metavar="CSV", help="write the trade list")
    p.add_argument("--instruments", metavar="FILE", help="instrument configuration JSON (defaults built in)")
    _holidays_arg(p)
    p.add_argument("--breakers", metavar="FILE",
                   help="apply these breakers, as live trading does (JSON: daily_loss_pct, max_entries_per_day, "
                        "cooling_off_losses, cooling_off_hours)")
    p.set_defaults(func=cmd_backtest)
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
