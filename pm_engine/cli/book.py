"""What the book says: equity and positions (now or as of a time), the signal log, the contracts in use, history."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pm_engine.cli.common import db_config_arg, holidays_arg, time_arg, with_store


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from pm_engine.core.contracts import ist_date
    from pm_engine.core.status import render_status
    from pm_engine.core.portfolio import Book

    def read(store: Any) -> dict[str, Any]:
        if args.as_of is None:
            body = render_status(Book(store=store.book))  # loads the committed book
            body["signals"] = store.signals.signal_outcomes()
            return body
        then = Book()  # the book as it stood then, rendered by the same code as GET /status
        then.load(store.history.state_as_of(args.as_of))
        # the keys of GET /status; signal counts and instances are not history; days to expiry as of then
        return {**render_status(then, ist_date(args.as_of)), "outcomes": None, "instance_id": None,
                "as_of": args.as_of.isoformat(), "version": then.version}

    def show(store: Any) -> int:
        body = read(store)
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
    return with_store(args, show, may_lag=args.as_of is not None)


def cmd_signals(args: argparse.Namespace) -> int:
    """The signal log, newest first. Each ``processed_at`` is printed whole (microseconds and offset),
    so it can be pasted into ``status --as-of`` and means the instant that signal changed the book."""
    import json

    if args.limit < 0:
        print("pm-engine signals: error: --limit must be >= 0", file=sys.stderr)
        return 2

    def show(store: Any) -> int:
        rows = [{"processed_at": r["processed_at"].isoformat(), "signal_time": r["signal_timestamp"].isoformat(),
                 "instrument": r["instrument"], "type": r["signal_type"], "layer": r["position"],
                 "outcome": r["processing_status"], "reason": r["reason"], "instance": r["processed_by_instance"],
                 "fingerprint": r["fingerprint"]}
                for r in store.signals.recent_signals(args.limit, args.since)]
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        if not rows:
            print("no signals" + (f" since {args.since.isoformat()}" if args.since else ""))
        for r in rows:
            print(f"{r['processed_at']}  {r['instrument']:<12} {r['type']:<10} {r['layer']:<8} {r['outcome']:<10} "
                  f"{r['reason'] or ''}  [{r['instance'] or '-'}; alert {r['signal_time']}]")
        return 0
    return with_store(args, show, may_lag=True)


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


def cmd_report(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pm_engine.core.backtest import plot_equity, stats_table, write_trades_csv
    from pm_engine.core.statistics import Trade, as_json

    if args.start and args.end and args.start > args.end:
        print("pm-engine report: error: --from is after --to", file=sys.stderr)
        return 2

    def report(store: Any) -> int:
        stats = store.history.trade_stats(args.start, args.end)
        periods = {p: store.history.pnl_by_period(p, args.start, args.end) for p in ("day", "week", "month")}
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
            trades = [Trade.from_row(row) for row in store.history.trades(args.start, args.end)]
            write_trades_csv(trades, Path(args.trades))
            print(f"{len(trades)} trades written to {args.trades}")
        if args.plot:
            curve = store.history.equity_curve(args.start, args.end)
            plot_equity([(p["recorded_at"], p["closed_equity"], p["open_equity"], p["flow"]) for p in curve],
                        Path(args.plot), "pm-engine equity curve")
            print(f"equity curve ({len(curve)} points) written to {args.plot}")
        return 0
    return with_store(args, report, may_lag=True)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands to the top-level parser."""
    p = sub.add_parser("contracts", help="per instrument the contract new orders use on a date, and the next one")
    p.add_argument("--on", metavar="DATE", help="the date (YYYY-MM-DD, IST; default today)")
    p.add_argument("--json", action="store_true", help="print JSON (the body of GET /contracts)")
    p.add_argument("--instruments", metavar="FILE", help="instrument configuration JSON (defaults built in)")
    holidays_arg(p)
    p.set_defaults(func=cmd_contracts)

    p = sub.add_parser("status", help="equity and open positions from the database (no broker settings needed)")
    db_config_arg(p)
    p.add_argument("--json", action="store_true", help="print the status as JSON (the keys of GET /status)")
    p.add_argument("--as-of", type=time_arg, metavar="TS",
                   help="the book as committed at or before this time (ISO 8601; no zone = IST)")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("signals", help="the signal log, newest first (processed at, alert time, outcome, reason)")
    db_config_arg(p)
    p.add_argument("--since", type=time_arg, metavar="TS", help="only signals processed at or after this time")
    p.add_argument("--limit", type=int, default=50, metavar="N", help="at most N signals (default 50)")
    p.add_argument("--json", action="store_true",
                   help="print JSON; each processed_at can be given to status --as-of as it is")
    p.set_defaults(func=cmd_signals)

    p = sub.add_parser("report", help="trade statistics, P&L by period, equity curve and trade list from history")
    db_config_arg(p)
    p.add_argument("--from", dest="start", type=time_arg, metavar="TS", help="first time included (ISO 8601)")
    p.add_argument("--to", dest="end", type=time_arg, metavar="TS", help="last time included (ISO 8601)")
    p.add_argument("--json", metavar="FILE", help="write the statistics (and P&L by period) as JSON")
    p.add_argument("--plot", metavar="PNG", help="write the equity curve (closed, open, drawdown shaded)")
    p.add_argument("--trades", metavar="CSV", help="write the trade list")
    p.set_defaults(func=cmd_report)
