"""Notifications: the event log with each delivery, a test message, the daily report."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from pm_engine.app.wiring import notifier_for
from pm_engine.cli.common import date_arg, db_config_arg, fmt_when, print_body, settings_of, time_arg, with_store


def cmd_notify(args: argparse.Namespace) -> int:
    """``notify`` lists events and their deliveries; ``notify test`` and ``notify report`` (issue 24)."""
    action = getattr(args, "action", None)
    if action == "test":
        notifier = notifier_for(settings_of(args))
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

    def show(store: Any) -> int:
        from pm_engine.notify.messages import Event, short

        rows = store.notifications.notification_log(args.since, args.limit)
        if args.json:
            return print_body(rows, True, str)
        for r in rows:
            event = Event(int(r["id"]), r["kind"], r["level"], r["created_at"], r["data"] or {})
            states = ", ".join(f"{d['scheme']}#{d['target']} {d['state']}"
                               + (f" ({d['attempts']} attempts)" if d["attempts"] > 1 else "")
                               + (f": {d['last_error']}" if d["last_error"] and d["state"] != "sent" else "")
                               for d in r["deliveries"]) or "not yet taken up by the leader"
            print(f"#{r['id']:<6} {fmt_when(r['created_at'])} {r['level']:<8} {short(event)}\n        {states}")
        if not rows:
            print("no notification events")
        return 0
    return with_store(args, show)


def _notify_report(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from pm_engine.notify.settings import NotifySettings
    from pm_engine.ops.daily_report import IST, build_daily_report, report_due

    # the URLs (--send) and the report time come from the configuration; without --send only the time matters
    settings = settings_of(args) if args.send or os.environ.get("PM_NOTIFY_REPORT_TIME") else None

    def run(store: Any) -> int:
        day = args.date
        if day is None:
            report_time = settings.notify.report_time if settings is not None else NotifySettings().report_time
            day = report_due(datetime.now(timezone.utc), report_time)[0]
        if day > datetime.now(IST).date():
            print(f"pm-engine notify report: error: --date {day} is in the future", file=sys.stderr)
            return 2
        report = build_daily_report(store, day)
        if args.json:
            print_body(report.as_json(), True, str)
        else:
            print(report.text())
        if not args.send:
            return 0
        notifier = notifier_for(settings) if settings is not None else None  # --send read them
        if notifier is None:
            print("pm-engine notify report: error: --send needs a notification URL (PM_NOTIFY_URLS or notify.urls)",
                  file=sys.stderr)
            return 2
        failed = 0
        for target, result in notifier.send_all(f"pm-engine daily report {day.isoformat()}", report.text()):
            print(f"{target.label}: {'delivered' if result.ok else 'failed: ' + str(result.error)}", file=sys.stderr)
            failed += not result.ok
        return 1 if failed else 0
    return with_store(args, run, may_lag=True)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this group's commands to the top-level parser."""
    p = sub.add_parser("notify", help="notification events and their delivery per URL (default: the last day); "
                                      "notify test, notify report")
    db_config_arg(p)
    p.add_argument("--since", type=time_arg, metavar="TS")
    p.add_argument("--limit", type=int, default=200)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_notify)
    actions = p.add_subparsers(dest="action")
    q = actions.add_parser("test", help="send one message to every notification URL; print delivered or the error")
    db_config_arg(q)
    q.set_defaults(func=cmd_notify)
    q = actions.add_parser("report", help="the daily report (default: the last day whose report time has passed)")
    db_config_arg(q)
    q.add_argument("--date", type=date_arg, metavar="D", help="the IST trading day (YYYY-MM-DD)")
    q.add_argument("--json", action="store_true", help="the figures as JSON")
    q.add_argument("--send", action="store_true", help="also send it to every notification URL")
    q.set_defaults(func=cmd_notify)
