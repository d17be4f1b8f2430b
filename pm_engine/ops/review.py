"""The trader's review of a ``needs_review`` order, checked against the broker's order book.

``pm-engine orders review ID --at-broker BROKER_ID`` used to accept any string: a typo (or a control byte)
linked the order to a broker order that does not exist, so it stayed ``open`` forever, the exit behind it
waited, and reconciliation left its contract alone. The id must now be in the broker's order book as an
order of the same symbol, side and quantity (this module asks the broker: I/O belongs to Python); the
database then records the link as ``checked`` and the sender sends it back to ``needs_review`` if its books
never show it within ``review_after_s``. ``--force`` (with a reason) skips the look-up, for yesterday's
orders that are no longer in the books: the link is ``forced`` and reconciliation judges its contract.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any, Optional

from pm_engine.adapters.openalgo import OpenAlgoClient


def orderbook_mismatch(orderbook: list[dict[str, Any]], broker_order_id: str, order: dict[str, Any]) -> Optional[str]:
    """Why ``broker_order_id`` is not our ``order`` in the broker's order book (None when it is).

    The broker's row must carry the id exactly (no trimming, so a stray byte never matches) and the
    order's symbol (case-insensitive, as the broker writes it), side and quantity (in the order's unit).
    """
    rows = [o for o in orderbook if str(o.get("orderid") or "") == broker_order_id]
    if not rows:
        return f"broker order {broker_order_id!r} is not in the broker's order book"
    row = rows[0]
    theirs = (str(row.get("symbol") or "").upper(), str(row.get("action") or "").upper(), _quantity(row))
    ours = (str(order.get("symbol") or "").upper(), str(order.get("side") or "").upper(), int(order["quantity"]))
    if theirs != ours:
        return (f"broker order {broker_order_id} is {theirs[1]} {theirs[2]} {theirs[0]}, the order is "
                f"{ours[1]} {ours[2]} {ours[0]}")
    return None


def check_review(client: OpenAlgoClient, broker_order_id: str, order: dict[str, Any]) -> Optional[str]:
    """Ask the broker's order book (one request) whether ``broker_order_id`` is ``order``: the problem, or None."""
    return orderbook_mismatch(client.orderbook(), broker_order_id, order)


def _quantity(row: dict[str, Any]) -> Optional[int]:
    try:
        quantity = Decimal(str(row.get("quantity")).strip())
    except InvalidOperation:
        return None
    return int(quantity) if quantity.is_finite() and quantity == quantity.to_integral_value() else None
