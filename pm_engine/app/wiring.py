"""The application's wiring: which engine, broker sender, roller and notifier a configuration makes, and serving them.

Below the CLI (which only parses and prints) and above every layer it assembles (web, ops, store, notify, the
OpenAlgo adapter, the simulator). Each piece is handed to the next as an explicit parameter: ``serve`` knows the
order sender because ``start_engine`` returned it (``None`` for the paper broker), never by probing the engine's
broker for attributes. Layers are imported inside the functions so that ``pm-engine status`` does not pay for
uvicorn and FastAPI.
"""

from __future__ import annotations

import os
import random
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Optional

from pm_engine.core.errors import PmError

if TYPE_CHECKING:
    from pm_engine.config import Settings
    from pm_engine.core.contracts import ContractCalendar
    from pm_engine.core.engine import TradingEngine
    from pm_engine.notify.notifier import Notifier
    from pm_engine.ops.rollover import Roller
    from pm_engine.ops.sender import OrderSender
    from pm_engine.store.gateway import Store

SIM_FOLDER = "sim"  # run --broker sim: its own embedded cluster in var/sim/


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


@dataclass
class Running:
    """A started engine and its OpenAlgo order sender (``None``: the paper broker fills inside the database)."""

    engine: "TradingEngine"
    store: "Store"  # the engine's store, typed as the PostgreSQL gateway the jobs and the audit need
    sender: "Optional[OrderSender]"


def start_engine(settings: "Settings", instance_port: Optional[int] = None) -> Running:
    """Connect, register this instance, recover state, and send orders an interrupted instance left."""
    import socket

    from pm_engine import __version__
    from pm_engine.core.contracts import ContractCalendar
    from pm_engine.core.engine import TradingEngine
    from pm_engine.core.holidays import load_holidays
    from pm_engine.core.instruments import load_instruments
    from pm_engine.store.gateway import Store

    instruments = load_instruments(settings.instruments_file)  # a bad file: stop now
    contracts = ContractCalendar(instruments, load_holidays(settings.holidays_file))
    store = Store(settings.database)
    instance_id = f"{socket.gethostname()[:30]}-{os.getpid()}"
    age = timedelta(seconds=settings.max_signal_age_s) if settings.max_signal_age_s > 0 else None
    sender = broker_for(settings, store, contracts, instance_id)
    engine = TradingEngine(store=store, instance_id=instance_id, max_signal_age=age, broker=sender,
                           fault=fault_hook(os.environ.get("PM_FAULT_CRASH")), send_in_background=True,
                           contracts=contracts, mcx_quantity=settings.mcx_quantity_unit, instruments=instruments,
                           window=sender.window() if sender is not None else None)
    store.instances.register_instance(instance_id, socket.gethostname()[:100], instance_port, __version__)
    engine.send_queued()
    return Running(engine, store, sender)


def broker_for(settings: "Settings", store: "Store", contracts: "ContractCalendar",
               instance_id: str = "broker-sender") -> "Optional[OrderSender]":
    """None for the paper broker (the engine's default: fills inside the database); else the OpenAlgo sender."""
    if settings.broker.kind != "openalgo":
        return None
    from pm_engine.config import require_broker

    require_broker(settings.broker)  # the one command family that talks to the broker checks its settings
    from pm_engine.adapters.openalgo import OpenAlgoClient, Timeouts
    from pm_engine.core.market_hours import MarketHours
    from pm_engine.ops.sender import OrderSender, SenderSettings

    timeouts = Timeouts(order_read_s=settings.broker.order_timeout_s)
    client = OpenAlgoClient(settings.broker.url or "", settings.broker.api_key or "", settings.broker.strategy,
                            timeouts)

    def trading_day(exchange: str, day: Any) -> bool:
        return bool(contracts.holidays["NSE" if exchange == "NFO" else exchange].is_trading_day(day))

    hours = MarketHours(settings.broker.market_hours_always, trading_day)
    sending = SenderSettings(max_order_age_s=settings.broker.max_order_age_s,
                             review_after_s=settings.broker.review_after_s,
                             # longer than any request can take: a 'sending' this old lost its sender
                             abandoned_after_s=timeouts.connect_s + timeouts.order_read_s + 5,
                             # a call waiting this long is told "broker slow / not answering" before it ends
                             slow_after_s=min(3.0, timeouts.order_read_s / 2),
                             guard_base_pct=_pct(settings.broker.price_guard_base_pct),
                             guard_pyramid_pct=_pct(settings.broker.price_guard_pyramid_pct))
    return OrderSender(store, client, hours, sending, mcx_in_lots=settings.mcx_quantity_unit == "lots",
                       instance_id=instance_id)


def _pct(value: Optional[float]) -> Optional[Decimal]:
    return None if value is None else Decimal(str(value))


def notifier_for(settings: "Settings") -> "Optional[Notifier]":
    """The Apprise notifier of ``PM_NOTIFY_URLS`` / ``notify.urls``; None when no URL is configured."""
    if not settings.notify.enabled:
        return None
    from pm_engine.notify.notifier import Notifier

    return Notifier(settings.notify)


def roller_for(settings: "Settings", store: "Store") -> "Roller":
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
    return Roller(store, contracts, instruments, hours, settings.mcx_quantity_unit)


def serve(settings: "Settings", host: str, port: int, proxy_headers: bool = False,
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
    from pm_engine import __version__
    from pm_engine.ops.jobs import BackgroundJobs, JobSettings
    from pm_engine.store.gateway import Store
    from pm_engine.web.serving import UVICORN_LIMITS, GuardedH11Protocol

    notifier = notifier_for(settings)
    running = start_engine(settings, port)
    engine, store, sender = running.engine, running.store, running.sender
    audit = RefusalAudit(store.audit, engine.instance_id)
    jobs = BackgroundJobs(engine, JobSettings(request_log_retention=f"{settings.request_log_retention_days} days",
                                              reconcile_every_s=float(os.environ.get("PM_RECONCILE_EVERY_S") or 60),
                                              roll_check_every_s=float(os.environ.get("PM_ROLL_CHECK_S") or 60)),
                          version=__version__, notifier=notifier, roller=roller_for(settings, store),
                          sender=sender)
    reader = Store(settings.read_database) if settings.read_database else None
    app = create_app(engine, WebSettings(settings.webhook_secret, settings.allowed_ips, settings.read_token,
                                         settings.session_hours, settings.allowed_hosts), audit,
                     leader=lambda: jobs.is_leader, reader=reader, sender=sender)
    jobs.start()
    if sender is not None:
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
            store.instances.stop_instance(engine.instance_id)  # the dashboard says stopped, not crashed
        except PmError as exc:
            print(f"pm-engine: could not record the clean stop ({exc})", file=sys.stderr)
        store.close()
    return 0


def serve_beside_sim(settings: "Settings", host: str, port: int, sim_port: int = 5000) -> int:
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

    from pm_engine.ops import embedded
    from pm_engine.sim.server import make_server
    from pm_engine.store.gateway import Store

    prices = Store(settings.database)

    def signal_price(symbol: str, side: str) -> Optional[Decimal]:
        return prices.orders.sending_signal_price(symbol, side)

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
