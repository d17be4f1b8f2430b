"""What a notification says: a title and a body per event kind, and the digest of a burst.

Every title starts ``pm-engine #<event id>``: a message resent after a crash carries the same id
(and says it is a resend), so the reader — or a receiver — recognises it. A kind without a template
of its own (the broker's and rollover's kinds until they are wired) is shown by its data, so wiring
a new kind needs no change here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Optional
from zoneinfo import ZoneInfo

from pm_engine.core.replay.notification_kinds import KINDS

IST = ZoneInfo("Asia/Kolkata")
DIGEST_LINES = 60  # a digest lists this many events, then counts the rest


@dataclass(frozen=True)
class Event:
    """One outbox event as the leader claimed it for one URL."""

    id: int
    kind: str
    level: str
    created_at: datetime
    data: dict[str, Any]
    resend: bool = False


def _money(value: Any) -> str:
    try:
        return f"{Decimal(str(value)):,.2f}"
    except (InvalidOperation, ValueError):
        return str(value)


def _when(value: Any) -> str:
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    if not isinstance(when, datetime):
        return str(value)
    return when.astimezone(IST).isoformat(sep=" ")  # whole: pastes into `status --as-of` as the same instant


def _until(value: Any) -> str:
    """A lock's end; a lock with no end (infinity in the database) lasts until the trader unlocks it."""
    if value is None or str(value).lower() == "infinity" or str(value).startswith("9999"):
        return "until unlocked (pm-engine unlock)"
    return f"until {_when(value)}"


def _signal(data: dict[str, Any], paper: bool = True) -> tuple[str, str]:
    head = f"{data.get('signal_type')} {data.get('instrument')} {data.get('position')}"
    lines = []
    signal_price = data.get("price")
    for order in data.get("orders") or []:
        if not paper:  # a broker fills it later: its order_filled event says the fill and the slippage
            lines.append(f"{order.get('side')} {order.get('lots')} lots {order.get('position_id')} sent to the broker "
                         f"at the signal price {_money(order.get('price'))}; its fill follows")
            continue
        fill = order.get("fill_price", order.get("price"))
        slip = ""
        if signal_price is not None and fill is not None:
            try:
                slip = f", slippage {_money(Decimal(str(fill)) - Decimal(str(signal_price)))}"
            except (InvalidOperation, ValueError):
                slip = ""
        note = "" if "fill_price" in order else " (paper fill at the order price)"
        lines.append(f"{order.get('side')} {order.get('lots')} lots {order.get('position_id')} "
                     f"fill {_money(fill)}{note}{slip}")
    for closed in data.get("closed") or []:
        lines.append(f"closed {closed.get('position_id')} at {_money(closed.get('exit_price'))}: "
                     f"realized P&L {_money(closed.get('realized_pnl'))}")
    if data.get("reason"):
        lines.append(str(data["reason"]))
    if signal_price is not None:
        lines.append(f"signal price {_money(signal_price)} at {_when(data.get('signal_timestamp'))}")
    return head, "\n".join(lines)


def _executed(data: dict[str, Any], paper: bool = True) -> tuple[str, str]:
    head, body = _signal(data, paper)
    return f"{head} executed", body


def _blocked(data: dict[str, Any]) -> tuple[str, str]:
    head, body = _signal(data)
    return f"{head} blocked", body


def _mode(data: dict[str, Any]) -> tuple[str, str]:
    return (f"trading mode {data.get('mode')}",
            f"set by {data.get('changed_by')}" + (f": {data['reason']}" if data.get("reason") else ""))


def _breaker(data: dict[str, Any]) -> tuple[str, str]:
    if "mode" in data:
        return f"breaker tripped: trading {data.get('mode')}", f"{data.get('reason')} ({data.get('changed_by')})"
    return (f"breaker tripped: {data.get('instrument')} locked",
            f"{_until(data.get('locked_until'))}: {data.get('reason')} ({data.get('source')})")


def _locked(data: dict[str, Any]) -> tuple[str, str]:
    return (f"{data.get('instrument')} locked",
            f"{_until(data.get('locked_until'))}: {data.get('reason')} ({data.get('source')})")


def _order(what: str) -> Callable[[dict[str, Any]], tuple[str, str]]:
    def render(data: dict[str, Any]) -> tuple[str, str]:
        contract = data.get("symbol") or data.get("instrument")
        head = f"order {what}: {data.get('side')} {contract} x{data.get('quantity')}"
        lines = [f"{data.get('client_order_id')}" + (f" (broker order {data['broker_order_id']})"
                                                     if data.get("broker_order_id") else "")]
        if data.get("reason"):
            lines.append(str(data["reason"]))
        if what == "unknown":
            lines.append("resolved from the broker's books, never sent again (pm-engine orders)")
        elif what == "needs review":
            lines.append(f"{data.get('instrument')} is locked: check the order at the broker (README: needs_review)")
        return head, "\n".join(lines)
    return render


def _filled(data: dict[str, Any]) -> tuple[str, str]:
    head = (f"{data.get('side')} {data.get('lots')} lots {data.get('position_id')} filled "
            f"{_money(data.get('fill_price'))}")
    lines = [f"{data.get('symbol')} x{data.get('quantity')}, signal price {_money(data.get('signal_price'))}"]
    if data.get("slippage_points") is not None:
        rupees = data.get("slippage_rupees")
        lines.append(f"slippage {_money(data['slippage_points'])} points"
                     + (f", {_money(rupees)} rupees" if rupees is not None else "") + " (adverse positive)")
    return head, "\n".join(lines)


def _reconcile(data: dict[str, Any]) -> tuple[str, str]:
    differences = data.get("differences") or []
    names = sorted({str(d.get("instrument")) for d in differences})
    lines = [str(d.get("text")) for d in differences]
    lines.append(f"{', '.join(names)} locked for new entries until you unlock (pm-engine unlock); "
                 "nothing is placed to fix it: check the broker (pm-engine reconcile)")
    return f"the book and the broker differ: {', '.join(names)}", "\n".join(lines)


_BROKER = {"session_expired": "broker session expired", "unreachable": "broker unreachable", "ok": "broker ok"}


def _broker(data: dict[str, Any]) -> tuple[str, str]:
    state, before = data.get("state"), data.get("previous")
    if state == "ok":
        title = "broker session restored" if before == "session_expired" else "broker reachable again"
        body = f"after about {data.get('seconds')} s; orders waiting are sent now"
    else:
        title = _BROKER.get(str(state), f"broker {state}")
        body = ("log in to the broker again (OpenAlgo): orders wait queued, entries expire at max_order_age_s"
                if state == "session_expired" else "orders wait queued; entries expire at max_order_age_s")
    message = f"\n{data['message']}" if data.get("message") else ""
    return title, f"{body}{message}\nseen by {data.get('instance')}"


def _report(data: dict[str, Any]) -> tuple[str, str]:
    return f"daily report {data.get('day')}", str(data.get("text", ""))


def _generic(kind: str) -> Callable[[dict[str, Any]], tuple[str, str]]:
    def render(data: dict[str, Any]) -> tuple[str, str]:
        return KINDS[kind].description if kind in KINDS else kind, "\n".join(f"{k}: {v}" for k, v in data.items())
    return render


TEMPLATES: dict[str, Callable[[dict[str, Any]], tuple[str, str]]] = {
    "signal_executed": _executed, "signal_blocked": _blocked, "mode_changed": _mode, "breaker_tripped": _breaker,
    "instrument_locked": _locked, "daily_report": _report, "order_filled": _filled,
    "order_rejected": _order("rejected"), "order_unknown": _order("unknown"),
    "order_needs_review": _order("needs review"),
    "reconciliation_difference": _reconcile, "broker_session": _broker,
}


def render(event: Event, paper: bool = True) -> tuple[str, str]:
    """(title, body) of one event; ``paper``: orders fill at the signal price (else a broker fills them later)."""
    if event.kind == "signal_executed":
        head, body = _executed(event.data, paper)
    else:
        head, body = TEMPLATES.get(event.kind, _generic(event.kind))(event.data)
    resend = " (resent: an earlier send of this id was interrupted)" if event.resend else ""
    return f"pm-engine #{event.id} {head}{resend}", f"{body}\n{event.kind}, {_when(event.created_at)}".strip()


def digest(events: list[Event], burst: int) -> tuple[str, str]:
    """One message for a burst: a line per event (the first ``DIGEST_LINES``, their titles), ids included."""
    lines = [f"#{e.id} {render(e)[0].split(' ', 2)[-1]}" for e in events[:DIGEST_LINES]]
    if len(events) > DIGEST_LINES:
        lines.append(f"... and {len(events) - DIGEST_LINES} more (pm-engine notify lists them all)")
    first, last = events[0].id, events[-1].id
    return (f"pm-engine digest #{first}-#{last}: {len(events)} events",
            f"More than {burst} messages a minute, so in one:\n" + "\n".join(lines))


def level_of(events: list[Event]) -> str:
    order = ("info", "warning", "critical")
    return max((e.level for e in events), key=lambda level: order.index(level) if level in order else 0)


def short(event: Event) -> str:
    """One line for a listing."""
    return render(event)[0].split(" ", 2)[-1]


def text_of(title: str, body: Optional[str]) -> str:
    return f"{title}\n{body}" if body else title
