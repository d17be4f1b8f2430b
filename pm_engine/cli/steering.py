"""The trader steering the book: trading mode, breakers, instrument locks, a manual exit, refusals, anomalies,
capital."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pm_engine.cli.common import (db_config_arg, duration_arg, fmt_until, fmt_when, number_or_off, price_arg,
                                  print_body, time_arg, who, with_store)
from pm_engine.config import load_settings


# the mode's first row is written by the migration that made the table: for a user, the default
SEEDED_BY = "migration 004"


def _mode_text(mode: dict[str, Any]) -> str:
    if mode["changed_by"] == SEEDED_BY:
        since = "the default (never changed)"
    else:
        since = f"set by {mode['changed_by']} at {fmt_when(mode['changed_at'])}"
    return (f"trading mode: {mode['mode']}" + (f" ({mode['reason']})" if mode.get("reason") else "")
            + f", {since}, version {mode['version']}")


def cmd_pause(args: argparse.Namespace) -> int:
    mode = "halted" if args.halt else "exits_only"
    return with_store(args, lambda store: print_body(store.controls.set_trading_mode(mode, args.reason, who()), False,
                                                     _mode_text))


def cmd_resume(args: argparse.Namespace) -> int:
    return with_store(args, lambda store: print_body(store.controls.set_trading_mode("active", args.reason, who()),
                                                     False, _mode_text))


def cmd_mode(args: argparse.Namespace) -> int:
    def show(store: Any) -> int:
        mode = store.controls.trading_mode()
        if args.json:
            return print_body({**mode, "history": store.controls.trading_mode_history(20),
                               "locks": store.controls.active_locks()}, True, str)
        print(_mode_text(mode))
        for lock in store.controls.active_locks():
            print(f"  {lock['instrument']} locked {fmt_until(lock['locked_until'])}: {lock['reason']} "
                  f"({lock['source']})")
        return 0
    return with_store(args, show)


def cmd_breakers(args: argparse.Namespace) -> int:
    def text(b: dict[str, Any]) -> str:
        def show(value: Any) -> str:
            return "off" if value is None else str(value)
        return (f"daily loss limit %: {show(b['daily_loss_pct'])}\nmax entries per instrument per day: "
                f"{show(b['max_entries_per_day'])}\ncooling off: {show(b['cooling_off_losses'])} losing trades -> "
                f"{show(b['cooling_off_hours'])} h\n"
                f"(set by {b['updated_by']} at {fmt_when(b['updated_at'])})")

    if getattr(args, "action", None) == "set":
        chosen = {name: getattr(args, name) for name in ("daily_loss_pct", "max_entries_per_day", "cooling_off_losses",
                                                         "cooling_off_hours") if getattr(args, name) is not None}
        if not chosen:
            print("pm-engine breakers set: error: give at least one setting (a number, or 'off')", file=sys.stderr)
            return 2
        values = {k: (None if v == "off" else v) for k, v in chosen.items()}
        return with_store(args, lambda store: print_body(store.controls.set_breakers(values, who()), False, text))
    return with_store(args, lambda store: print_body(store.controls.breakers(), args.json, text))


def cmd_lock(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    until = datetime.now(timezone.utc) + args.duration

    def lock(store: Any) -> int:
        store.controls.lock_instrument(args.instrument.upper(), until, args.reason, who())
        print(f"{args.instrument.upper()} locked until {fmt_when(until)}: "
              "new bases and pyramids are blocked")
        return 0
    return with_store(args, lock)


def cmd_unlock(args: argparse.Namespace) -> int:
    def unlock(store: Any) -> int:
        released = store.controls.unlock_instrument(args.instrument.upper(), who())
        print(f"{args.instrument.upper()}: {released} lock(s) released")
        return 0
    return with_store(args, unlock)


def cmd_exit(args: argparse.Namespace) -> int:
    """Close a layer (or ALL) the way the running engine sends orders: decided and queued in the database.

    The exit is one transaction (the book closes it now, its orders queued in the outbox). A layer traded on
    paper is filled on paper here; one traded at a broker (``pm.layer_on_paper``: the rule rollover uses) is never
    paper-filled, whatever this shell's own settings: its order waits, queued, for the broker sender of the
    running engine, or of the next one to start.
    """
    from pm_engine.core.contracts import ContractCalendar
    from pm_engine.core.engine import TradingEngine
    from pm_engine.core.holidays import load_holidays
    from pm_engine.core.instruments import load_instruments
    from pm_engine.core.signals import SignalValidationError

    settings = load_settings(args.db_config)
    instruments = load_instruments(settings.instruments_file)
    contracts = ContractCalendar(instruments, load_holidays(settings.holidays_file))

    def close(store: Any) -> int:
        engine = TradingEngine(store=store, instance_id=who()[:50], instruments=instruments,
                               contracts=contracts, mcx_quantity=settings.mcx_quantity_unit)
        try:
            result = engine.manual_exit(args.instrument, args.layer, args.price, args.reason, force=args.force)
        except SignalValidationError as exc:
            print(f"pm-engine exit: error: {exc}", file=sys.stderr)
            return 2
        print(f"{result.outcome.value}: {result.reason}")
        if result.outcome.value != "executed":
            return 1
        queued = [o["client_order_id"] for o in store.orders.orders_for_signal(result.fingerprint)
                  if o["status"] == "queued"]
        if queued:
            # an engine that heartbeated within three heartbeats (5 s each) is running; a stopped one is silent
            running = [i for i in store.instances.list_instances() if i["status"] == "active" and not i["stale"]
                       and i["heartbeat_age_s"] is not None and float(i["heartbeat_age_s"]) <= 15]
            when = (f"the running engine's broker sender sends it ({running[0]['instance_id']})" if running else
                    "no engine is running: it is sent when one starts (pm-engine live --broker openalgo)")
            print(f"queued for the broker, not filled on paper: {', '.join(queued)}; {when}")
        return 0
    return with_store(args, close)


def cmd_refusals(args: argparse.Namespace) -> int:
    def text(rows: list[dict[str, Any]]) -> str:
        lines = [f"{fmt_when(r['received_at'])} {r['source']:<15} {r['status']} {r['reason']}"
                 + (f" [{r['field']}]" if r["field"] else "") for r in rows]
        return "\n".join(lines) or "no refused requests"
    return with_store(args, lambda store: print_body(store.audit.refusals(args.since), args.json, text))


def cmd_anomalies(args: argparse.Namespace) -> int:
    def text(rows: list[dict[str, Any]]) -> str:
        lines = [f"{fmt_when(r['detected_at'])} {r['kind']:<22} {r['instrument']} {r['signal_type']} "
                 f"{r['position']}: {r['reason']}" for r in rows]
        return "\n".join(lines) or "no anomalies"
    return with_store(args, lambda store: print_body(store.controls.anomalies(args.since), args.json, text))


def cmd_capital(args: argparse.Namespace) -> int:
    """``capital deposit|withdraw AMOUNT [--note]`` records a flow (docs/domain.md#capital-flows); else the ledger."""
    from pm_engine.core.capital import CapitalRefusedError, parse_amount

    action = getattr(args, "action", None)
    if action in ("deposit", "withdraw"):
        kind = "deposit" if action == "deposit" else "withdrawal"
        try:
            amount = parse_amount(args.amount)
        except CapitalRefusedError as exc:
            print(f"pm-engine capital {action}: error: {exc.field}: {exc}", file=sys.stderr)
            return 2

        def record(store: Any) -> int:
            try:  # the database checks the amount and the margin in use, and writes nothing if it refuses
                flow = store.capital.record_capital_flow(kind, amount, args.note, who())
            except CapitalRefusedError as exc:
                print(f"pm-engine capital {action}: error: {exc.field}: {exc}", file=sys.stderr)
                return 2
            print(f"{kind} of {flow['amount']} recorded by {flow['recorded_by']}: closed equity now "
                  f"{flow['closed_equity']}, equity high {flow['equity_high']} (portfolio version "
                  f"{flow['portfolio_version']}; every instance sizes on it from its next signal)")
            return 0
        return with_store(args, record)

    def text(body: dict[str, Any]) -> str:
        lines = [f"{fmt_when(f['recorded_at'])}  {f['kind']:<10} {f['amount']:>16}  closed equity after "
                 f"{f['closed_equity']:>16}  by {f['recorded_by']}" + (f"  ({f['note']})" if f["note"] else "")
                 for f in body["flows"]]
        return "\n".join(lines or ["no capital flows"]) + (
            f"\ndeposits {body['deposits']}, withdrawals {body['withdrawals']}, net {body['net_flows']}")
    return with_store(args, lambda store: print_body({"flows": store.capital.capital_ledger(),
                                                      **store.capital.capital_totals()}, args.json, text))


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands to the top-level parser."""
    p = sub.add_parser("pause", help="stop new entries (default: exits only) or all trading (--halt), every instance")
    db_config_arg(p)
    p.add_argument("--reason", required=True, help="why (recorded with who and when)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--exits-only", action="store_true", help="block entries and pyramids, allow exits (default)")
    how.add_argument("--halt", action="store_true", help="block every signal, exits too")
    p.set_defaults(func=cmd_pause)

    p = sub.add_parser("resume", help="trade normally again")
    db_config_arg(p)
    p.add_argument("--reason", help="why (recorded)")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("mode", help="the trading mode, who set it and why, and the instrument locks")
    db_config_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_mode)

    p = sub.add_parser("breakers", help="show the breakers (or change them: breakers set ...)")
    db_config_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_breakers)
    actions = p.add_subparsers(dest="action")
    q = actions.add_parser("set", help="change breaker settings ('off' switches one off)")
    db_config_arg(q)
    q.add_argument("--daily-loss-pct", type=number_or_off,
                   help="pause entries when open equity falls this %% below the day's start (IST)")
    q.add_argument("--max-entries-per-day", type=number_or_off,
                   help="entries (bases and pyramids) per instrument per IST day")
    q.add_argument("--cooling-off-losses", type=number_or_off,
                   help="losing trades in a row on an instrument that start a cooling-off")
    q.add_argument("--cooling-off-hours", type=number_or_off, help="how long no new base is taken after that")
    q.set_defaults(func=cmd_breakers)

    p = sub.add_parser("lock", help="block new bases and pyramids on one instrument for a while")
    db_config_arg(p)
    p.add_argument("instrument")
    p.add_argument("--for", dest="duration", type=duration_arg, required=True, metavar="DURATION",
                   help="e.g. 30m, 2h, 1d")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("unlock", help="release an instrument's locks")
    db_config_arg(p)
    p.add_argument("instrument")
    p.set_defaults(func=cmd_unlock)

    p = sub.add_parser("exit", help="close a layer (or all) now, as an EXIT alert would, reason MANUAL: a layer "
                                    "traded on paper is filled on paper; one traded at a broker is queued for the "
                                    "running engine's broker sender (or the next engine to start), never paper-filled")
    db_config_arg(p)
    p.add_argument("instrument")
    p.add_argument("--layer", default="ALL", help="Long_1 … Long_6 (default ALL)")
    p.add_argument("--price", type=price_arg,
                   help="exit price (default: the instrument's last mark; within 5 %% of it unless --force)")
    p.add_argument("--force", action="store_true", help="accept a --price more than 5 %% from the last mark")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_exit)

    p = sub.add_parser("refusals", help="refused webhook requests (default: the last 24 hours)")
    db_config_arg(p)
    p.add_argument("--since", type=time_arg, metavar="TS")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_refusals)

    p = sub.add_parser("anomalies", help="alerts that suggest an earlier one was missed (default: the last 24 hours)")
    db_config_arg(p)
    p.add_argument("--since", type=time_arg, metavar="TS")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_anomalies)

    p = sub.add_parser("capital", help="the capital ledger; capital deposit|withdraw AMOUNT records a flow")
    db_config_arg(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_capital)
    actions = p.add_subparsers(dest="action")
    for name, what in (("deposit", "add capital: closed equity, equity high and sizing rise by AMOUNT"),
                       ("withdraw", "take capital out (refused below the margin in use or below zero)")):
        q = actions.add_parser(name, help=what)
        db_config_arg(q)
        q.add_argument("amount", help="rupees, at most two decimals (e.g. 1000000 or 250000.50)")
        q.add_argument("--note", help="recorded with the flow, who and when")
        q.set_defaults(func=cmd_capital)
