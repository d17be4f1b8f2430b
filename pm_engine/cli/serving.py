"""Running pm-engine: deploy the schema, serve the webhook (configured or a private ./var cluster), the broker
simulator. The wiring of what is served is pm_engine.app.wiring."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pm_engine.app.wiring import SIM_FOLDER, serve, serve_beside_sim
from pm_engine.cli.common import db_config_arg, holidays_arg, settings_of


def cmd_db_deploy(args: argparse.Namespace) -> int:
    from pm_engine.store.deploy import deploy

    settings = settings_of(args)
    report = deploy(settings.database)
    print(f"db-deploy {settings.database.url()}: {report.summary()}")
    return 0


def cmd_live(args: argparse.Namespace) -> int:
    from dataclasses import replace

    if args.forwarded_allow_ips and not args.proxy_headers:
        print("pm-engine live: error: --forwarded-allow-ips needs --proxy-headers", file=sys.stderr)
        return 2
    settings = settings_of(args)
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


def cmd_broker_sim(args: argparse.Namespace) -> int:
    from pm_engine.sim.main import run

    return run(args)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands to the top-level parser."""
    p = sub.add_parser("db-deploy", help="apply pending migrations and changed functions (idempotent); run it as "
                                         "the schema's owner, not the app role")
    db_config_arg(p)
    p.set_defaults(func=cmd_db_deploy)

    p = sub.add_parser("live", help="serve the webhook against the configured database")
    db_config_arg(p)
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
    holidays_arg(p)
    p.set_defaults(func=cmd_live)

    p = sub.add_parser("run", help="private PostgreSQL cluster under ./var, deploy, serve (make run)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--broker", choices=("paper", "sim", "openalgo"),
                   help="where orders go: sim starts the broker simulator beside the engine (the whole loop over "
                        "HTTP, no account needed); default PM_BROKER, else paper")
    p.add_argument("--sim-port", type=int, default=5000, metavar="PORT",
                   help="the simulator's port with --broker sim (default 5000, OpenAlgo's; 0 picks a free one)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("broker-sim", help="an OpenAlgo-compatible broker simulator, with switches for its faults")
    from pm_engine.sim.main import add_arguments as broker_sim_arguments

    broker_sim_arguments(p)
    p.set_defaults(func=cmd_broker_sim)
