"""Reconciliation (issue 21): the book's net quantity per contract against the broker's positionbook.

Only the contracts this portfolio trades are compared (the book's, and every symbol it has sent an
order for); a position of other activity on the account is listed, never touched. A difference is
reported — never "fixed" by placing an order.
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable


def _quantity(value: Any) -> int:
    try:
        return int(Decimal(str(value or 0)))
    except (InvalidOperation, ValueError):
        return 0


def compare(book: Iterable[dict[str, Any]], traded: set[str], broker: Iterable[dict[str, Any]],
            in_flight: Iterable[str] = ()) -> dict[str, Any]:
    """``{"matched", "differences": [{symbol, exchange, product, book_quantity, broker_quantity}], "checked_at",
    "other_positions", "in_flight"}``; positions keyed by (symbol, exchange, product), quantities signed. A
    contract in ``in_flight`` (an order of it not yet settled) is listed there, not compared: not a difference."""
    ours: dict[tuple[str, str, str], int] = {}
    for row in book:
        key = (str(row["symbol"]).upper(), str(row["exchange"]).upper(), str(row["product"]).upper())
        ours[key] = ours.get(key, 0) + int(row["quantity"])
    theirs: dict[tuple[str, str, str], int] = {}
    other: list[dict[str, Any]] = []
    mine = {s.upper() for s in traded} | {k[0] for k in ours}
    for row in broker:
        key = (str(row.get("symbol", "")).upper(), str(row.get("exchange", "")).upper(),
               str(row.get("product", "")).upper())
        quantity = _quantity(row.get("quantity"))
        if key[0] not in mine:
            if quantity:
                other.append({"symbol": key[0], "exchange": key[1], "product": key[2], "quantity": quantity})
            continue
        theirs[key] = theirs.get(key, 0) + quantity
    waiting = {s.upper() for s in in_flight}
    differences = [{"symbol": k[0], "exchange": k[1], "product": k[2], "book_quantity": ours.get(k, 0),
                    "broker_quantity": theirs.get(k, 0)}
                   for k in sorted(set(ours) | set(theirs)) if ours.get(k, 0) != theirs.get(k, 0)]
    return {"matched": not [d for d in differences if d["symbol"] not in waiting],
            "differences": [d for d in differences if d["symbol"] not in waiting],
            "checked_at": datetime.now(timezone.utc).isoformat(), "other_positions": other,
            "in_flight": sorted(waiting & ({k[0] for k in ours} | {k[0] for k in theirs}))}
