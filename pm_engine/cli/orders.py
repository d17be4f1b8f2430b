"""Orders and the broker: the order book, a needs_review answer, reconciliation, rolling to the next contract."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Optional

from pm_engine.app.wiring import roller_for
from pm_engine.cli.common import db_config_arg, settings_of, time_arg, who, with_store
from pm_engine.config import load_settings


def cmd_orders(args: argparse.Namespace) -> int:
    """The order book, newest first: state, fills against the signal's price, why, attempts (GET /orders)."""
    import json

    from pm_engine.core.statistics import as_json
    from pm_engine.core.replay.states import ORDER_STATES

    if args.state is not None and args.state not in ORDER_STATES:
        print(f"pm-engine orders: error: --state must be one of {', '.join(ORDER_STATES)}", file=sys.stderr)
        return 2

    def show(store: Any) -> int:
        rows = store.orders.listing(args.state, args.since)
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
    return with_store(args, show)


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

    def fail(message: str) -> int:
        print(f"pm-engine orders review: error: {message}", file=sys.stderr)
        return 2

    if args.force and args.at_broker is None:
        return fail("--force: only with --at-broker")
    if args.force and not (args.reason or "").strip():
        return fail("--force needs --reason (what you saw at the broker)")
    settings = load_settings(args.db_config)

    def review(store: Any) -> int:
        states = store.orders
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
            row = states.review(args.client_order_id, args.at_broker, args.reason, who(), link)
        except DatabaseError as exc:
            return fail(str(exc))
        print(f"{row['client_order_id']}: {row['status']} ({row['reason']})")
        return 0
    return with_store(args, review)


def cmd_release_restored(args: argparse.Namespace) -> int:
    """The trader's answer to a restored database: the orders queued before the restore was found (held, never
    sent blindly: they may have been sent, filled or made pointless at the broker since the backup) may go now.
    Look first: ``pm-engine orders --state queued`` against the broker's books, ``pm-engine reconcile``."""

    def release(store: Any) -> int:
        released = store.orders.release_restored(who())
        print(f"released {released} held order(s): the broker sender sends them at its next round" if released
              else "no order is held: nothing to release")
        return 0
    return with_store(args, release)


def cmd_reconcile(args: argparse.Namespace) -> int:
    """The book's net quantity per contract against the broker's positionbook: exit 0 matched, 3 not."""
    import json

    from pm_engine.adapters.openalgo import OpenAlgoClient, OpenAlgoError
    from pm_engine.ops.sender import reconcile

    settings = settings_of(args)
    if settings.broker.kind != "openalgo":
        print("pm-engine reconcile: error: needs the OpenAlgo broker (PM_BROKER=openalgo, PM_OPENALGO_URL, "
              "PM_OPENALGO_API_KEY)", file=sys.stderr)
        return 2
    from pm_engine.config import require_broker

    require_broker(settings.broker)
    client = OpenAlgoClient(settings.broker.url or "", settings.broker.api_key or "", settings.broker.strategy)

    def check(store: Any) -> int:
        try:
            result = reconcile(store, client, settings.mcx_quantity_unit == "lots")
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
    return with_store(args, check)


RECONCILE_NEXT = (
    "next: nothing was placed to fix this, and the instrument takes no new entries while the engine's lock holds.\n"
    "  1. compare with your broker's positions and `pm-engine orders` (an order still in flight shows up later);\n"
    "  2. if the broker is right, close or open the difference at the broker by hand, or `pm-engine exit` the book's\n"
    "     position; if the book is right, place the missing order at the broker by hand;\n"
    "  3. run `pm-engine reconcile` again until it says \"book matches the broker\", then\n"
    "     `pm-engine unlock INSTRUMENT`.")


def cmd_rollover(args: argparse.Namespace) -> int:
    """Show what is due to roll and roll it now (exit 0; 3 when a selected position cannot be rolled)."""
    import json
    import time

    from pm_engine.core.statistics import as_json

    settings = settings_of(args)
    if args.all and args.position_ids:
        print("pm-engine rollover: error: give --all or position ids, not both", file=sys.stderr)
        return 2
    if args.force and not (args.all or args.position_ids):
        print("pm-engine rollover: error: --force needs --all or position ids", file=sys.stderr)
        return 2

    def run(store: Any) -> int:
        roller = roller_for(settings, store)
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
    return with_store(args, run)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands to the top-level parser."""
    p = sub.add_parser("orders", help="broker orders, newest first: state, fills, signal price, slippage, reason")
    db_config_arg(p)
    p.add_argument("--state", metavar="S", help="only orders in this state (queued, sending, open, filled, ...)")
    p.add_argument("--since", type=time_arg, metavar="TS", help="only orders created at or after this time")
    p.add_argument("--json", action="store_true", help="print JSON (the orders of GET /orders)")
    p.set_defaults(func=cmd_orders)
    actions = p.add_subparsers(dest="action")
    q = actions.add_parser("review", help="resolve a needs_review order once you have looked at the broker's books")
    db_config_arg(q)
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
    q = actions.add_parser("release-restored",
                           help="after a restore from a backup: send the queued orders held since (check them against "
                                "the broker first)")
    db_config_arg(q)
    q.set_defaults(func=cmd_release_restored)

    p = sub.add_parser("reconcile", help="compare the book's net quantity per contract with the broker's positions "
                                         "(exit 0 matched, 3 differ: it says what to do next); needs "
                                         "PM_OPENALGO_URL and PM_OPENALGO_API_KEY")
    db_config_arg(p)
    p.add_argument("--json", action="store_true", help="print JSON (the body of GET /reconcile)")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("rollover", help="show the groups due to roll to their next contract and roll them now "
                                        "(the running engine sends the legs)")
    db_config_arg(p)
    p.add_argument("position_ids", nargs="*", metavar="POSITION_ID", help="roll these positions' groups")
    p.add_argument("--all", action="store_true", help="every open group (due ones unless --force)")
    p.add_argument("--force", action="store_true", help="roll before the roll date")
    p.add_argument("--dry-run", action="store_true",
                   help="show the plan (each layer's lots and order quantities), change nothing")
    p.add_argument("--wait", type=float, default=0.0, metavar="S", help="wait up to S seconds for the rolls to end")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_rollover)
