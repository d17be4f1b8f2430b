"""The order outbox's Python side: the document pm.add_orders takes, and the paper broker that fills it.

Orders are written to ``pm.broker_orders`` by pm.apply_signal in the transaction that claims the
signal's fingerprint, and sent only after that commit (``pm_engine.core.orders``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pm_engine.core.orders import Fill, Order

if TYPE_CHECKING:  # pragma: no cover
    from pm_engine.store.orders import OrderQueries


def order_document(order: Order) -> dict[str, Any]:
    """An order as pm.add_orders takes it (the contract's keys only when it names one)."""
    doc = {"client_order_id": order.client_order_id, "fingerprint": order.fingerprint,
           "position_id": order.position_id, "instrument": order.instrument, "side": order.side,
           "lots": order.lots, "price": order.price}
    if order.symbol is not None:
        doc |= {"exchange": order.exchange, "symbol": order.symbol, "quantity": order.quantity,
                "product": order.product, "leg": order.leg}
        if order.point_value is not None:
            doc["point_value"] = order.point_value
    return doc


class DatabasePaperBroker:
    """The paper broker of a live engine: fills outbox rows in ``pm.broker_orders`` (one round trip)."""

    def __init__(self, orders: "OrderQueries") -> None:
        self.orders = orders

    def place_orders(self, orders: list[Order]) -> list[Fill]:
        if not orders:
            return []
        rows = self.orders.fill_paper_orders([o.client_order_id for o in orders])
        return [Fill(r["client_order_id"], int(r["lots"]), r["fill_price"], r["broker_order_id"]) for r in rows]
