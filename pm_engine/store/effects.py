"""What a decision sends to pm.apply_signal: the signal's document and the working copy's effects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pm_engine.core.models import Signal, SignalResult
from pm_engine.store.codec import changes
from pm_engine.store.outbox import order_document

if TYPE_CHECKING:  # pragma: no cover
    from pm_engine.core.portfolio import Book


def control_document(signal: Signal) -> dict[str, Any]:
    """What the trading controls look at: the signal's identity, instrument, type and bar time."""
    return {"fingerprint": signal.fingerprint, "instrument": signal.instrument, "signal_type": signal.type.value,
            "position": signal.position, "signal_timestamp": signal.timestamp}


def signal_document(signal: Signal, result: SignalResult, work: "Book", instance_id: str) -> dict[str, Any]:
    """The signal's log row with its outcome and the decision's broker orders (the outbox rows)."""
    doc = control_document(signal) | {
        "processing_status": result.outcome.value, "reason": result.reason, "payload": signal.payload,
        "instance": instance_id, "orders": [order_document(o) for o in work.orders]}
    if "anomaly" in result.details:
        doc["anomaly"] = result.details["anomaly"]
    return doc


def effects(work: "Book") -> tuple[list[Any], list[Any], dict[str, Any]]:
    """A working copy's changed positions (in the order they must be written), pyramiding rows and portfolio row."""
    # a row closed and reopened under the same id in one decision: the close first, then the insert
    # (which archives the closed row), so the answer's version for that id is the new row's; every close
    # before any insert, so a new base on the next contract never meets a stopped-out layer still open
    # on the old one (PM030, one contract per instrument)
    dirty = list(work.dirty_positions.values())
    ordered = [*work.dirty_closed, *(p for p in dirty if p.status == "closed"),
               *(p for p in dirty if p.status != "closed")]
    positions = [{"doc": changes(p, work.origin.get(p.position_id)), "expected_version": p.version or None}
                 for p in ordered]
    pyramiding = []
    for instrument in sorted(work.dirty_pyramiding):
        state = work.pyramiding.get(instrument)
        pyramiding.append({"instrument": instrument, "clear": True} if state is None else
                          {"instrument": instrument, "last_pyramid_price": state.last_pyramid_price,
                           "base_position_id": state.base_position_id, "clear": False})
    return positions, pyramiding, work.state_document()
