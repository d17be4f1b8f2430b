"""The daily report's figures: one IST trading day, from the functions ``status --as-of`` and ``report`` use.

``pm_engine.notify.report`` writes the text; the leader's delivery (``pm_engine.ops.delivery``) records
the report once a day as a ``daily_report`` event, and ``pm-engine notify report`` prints it on demand.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Optional
from zoneinfo import ZoneInfo

from pm_engine.notify.report import DailyReport
from pm_engine.store.errors import HistoryUnavailableError
from pm_engine.store.gateway import Store

IST = ZoneInfo("Asia/Kolkata")


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """The IST day's first instant and its last (1 µs before the next midnight), as aware UTC times."""
    start = datetime(day.year, day.month, day.day, tzinfo=IST)
    return start.astimezone(timezone.utc), (start + timedelta(days=1) - timedelta(microseconds=1)).astimezone(
        timezone.utc)


def report_due(now: datetime, report_time: Any) -> tuple[date, datetime]:
    """The latest trading day whose report time has passed at ``now``, and that report time.

    A report time before noon (the default, 00:05) reports the day that ended at midnight; one
    from noon on reports that same day.
    """
    local = now.astimezone(IST)
    offset = 1 if report_time.hour < 12 else 0
    for back in range(0, 3):
        day = local.date() - timedelta(days=back + offset)
        moment = datetime.combine(day + timedelta(days=offset), report_time, tzinfo=IST)
        if moment <= local:
            return day, moment
    raise AssertionError("unreachable: a report time passed within three days")  # pragma: no cover


def build_daily_report(store: Store, day: date, now: Optional[datetime] = None) -> DailyReport:
    """The figures of one IST day, from the functions ``status --as-of`` and ``report`` use."""
    from pm_engine.core.status import render_status
    from pm_engine.core.portfolio import Book

    start, end = day_bounds(day)
    now = now or datetime.now(timezone.utc)
    as_of = min(end, now)
    report = DailyReport(day=day, as_of=as_of)
    try:
        book = Book()
        book.load(store.history.state_as_of(as_of))
        status = render_status(book, day)  # days to roll counted from the reported day
        report.closed_equity, report.open_equity = status["closed_equity"], status["open_equity"]
        report.total_risk_percent = status["total_risk_percent"]
        report.positions = [{k: p[k] for k in ("position_id", "lots", "entry_price", "current_stop", "unrealized_pnl",
                                               "risk_pct")} for p in status["positions"]]
        report.next_rolls = next_rolls(status["positions"])
    except HistoryUnavailableError:
        pass
    days = store.history.pnl_by_period("day", start, end)
    report.realized_pnl = str(sum((Decimal(str(r["realized_pnl"])) for r in days), Decimal("0.00")))
    report.trades = [{"position_id": t["position_id"], "lots": t["lots"], "realized_pnl": str(t["pnl"]),
                      "exit_reason": t["exit_reason"]} for t in store.history.trades(start, end)]
    report.signals = store.signals.signal_outcomes_between(start, end)
    anomalies = [a for a in store.controls.anomalies(start) if a["detected_at"] <= end]
    if anomalies:
        report.attention.append(f"{len(anomalies)} anomal{'y' if len(anomalies) == 1 else 'ies'} "
                                "(pm-engine anomalies)")
    # what waits for the trader now (whatever day is reported): orders the broker's books could not settle,
    # instruments locked because the book and the broker differ
    for state, what in (("needs_review", "needs review"), ("unknown", "is in an unknown state")):
        for order in store.orders.listing(state):
            report.attention.append(f"order {order['client_order_id']} ({order['side']} {order['symbol']} "
                                    f"x{order['quantity']}) {what} (pm-engine orders)")
    for lock in store.controls.active_locks():
        if lock["source"] == "reconcile":
            report.attention.append(f"{lock['instrument']} locked: {lock['reason']} (pm-engine reconcile)")
    queued = store.orders.queued(60)
    if queued:
        report.attention.append(f"{len(queued)} order(s) committed more than a minute ago and not yet sent")
    counts = store.notifications.notification_counts()
    if counts.get("given_up"):
        report.attention.append(f"{counts['given_up']} notification(s) given up (pm-engine notify)")
    return report


def next_rolls(positions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The next roll of each open position group (an instrument's layers in one contract), soonest first.

    The roll dates are the ones ``pm-engine status`` shows (``contract_view``: the recorded expiry minus
    the instrument's roll offset, docs/domain.md#contracts-and-expiry): the layers of one contract roll together.
    A group     whose contract was never recorded (a custom instrument) has no roll date and comes last.
    """
    groups: dict[tuple[str, Optional[str]], dict[str, Any]] = {}
    for p in positions:
        key = (p["instrument"], p.get("contract"))
        group = groups.setdefault(key, {"instrument": p["instrument"], "contract": p.get("contract"),
                                        "roll_date": p.get("roll_date"), "days_to_roll": p.get("days_to_roll"),
                                        "roll_due": bool(p.get("roll_due")), "layers": 0, "lots": 0})
        group["layers"] += 1
        group["lots"] += int(p["lots"])
    return sorted(groups.values(), key=lambda g: (g["roll_date"] is None, g["roll_date"] or "", g["instrument"]))
