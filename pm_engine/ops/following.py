"""Following the broker's books: the half of the broker sender (``pm_engine.ops.sender``) that reads them.

Orders at the broker are followed in its books on the follower thread (``pm-broker-follow``): the trade
book gives each broker order's filled quantity and volume-weighted price (``pm.record_order_fill``,
idempotent), the order book its rejections and cancellations, and resolves ``unknown`` orders
(``pm.resolve_unknown_order``: linked to the one matching broker order, or ``needs_review`` with the
instrument locked); an order a trader's review linked that the order book never shows within
``review_after`` goes back to ``needs_review`` (``pm.orders_seen_at_broker``; a ``--force`` link is
exempt and left to reconciliation).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from decimal import Decimal
from typing import Any, Optional

from pm_engine.adapters.openalgo import OpenAlgoClient, OpenAlgoError
from pm_engine.ops.broker_health import BrokerHealth
from pm_engine.store.orders import OrderQueries

log = logging.getLogger("pm_engine.ops.sender")  # one logger for the whole broker sender


class BookFollower:
    """One pass over the broker's order and trade books, recorded through the order state machine."""

    def __init__(self, states: OrderQueries, client: OpenAlgoClient, health: BrokerHealth,
                 review_after_s: float) -> None:
        self.states, self.client, self.health, self.review_after_s = states, client, health, review_after_s

    def follow(self) -> None:
        watched = self.states.at_broker()
        if not watched:
            return
        try:
            orderbook = self.client.orderbook()
            trades = self.client.tradebook()
        except OpenAlgoError as exc:
            self.health.failed(exc)
            return
        self.health.set("ok")
        filled: dict[str, tuple[int, Decimal]] = {}
        totals: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for t in trades:
            quantity = Decimal(str(t.get("quantity") or 0))
            price = Decimal(str(t.get("average_price") or 0))
            if quantity > 0 and price > 0 and t.get("orderid"):
                totals[str(t["orderid"])][0] += quantity
                totals[str(t["orderid"])][1] += quantity * price
        for broker_id, (quantity, value) in totals.items():
            filled[broker_id] = (int(quantity), value / quantity)  # the trade book's volume-weighted price
        statuses = {str(o.get("orderid")): str(o.get("order_status") or "").lower() for o in orderbook}
        # a review's checked link the books never show within the review window goes back to needs_review
        if self.states.seen_at_broker(sorted(statuses), self.review_after_s):
            log.error("an order a review linked is not in the broker's books: it needs review again")
            watched = self.states.at_broker()
        for row in watched:
            order_id = row["client_order_id"]
            if row["status"] == "unknown":
                result = self.states.resolve_unknown(order_id, orderbook, self.review_after_s)
                if result != "linked":
                    if result == "needs_review":
                        log.error("order %s needs review: the instrument is locked", order_id)
                    continue
                row = {**row, "broker_order_id": self._linked_id(order_id)}
            self._apply(row, filled, statuses)

    def _linked_id(self, order_id: str) -> Optional[str]:
        for row in self.states.at_broker():
            if row["client_order_id"] == order_id:
                return row["broker_order_id"]
        return None

    def _apply(self, row: dict[str, Any], filled: dict[str, tuple[int, Decimal]], statuses: dict[str, str]) -> None:
        order_id, broker_id = row["client_order_id"], row.get("broker_order_id")
        if not broker_id:
            return
        if broker_id in filled:
            cumulative, price = filled[broker_id]
            row = self.states.fill(order_id, broker_id, min(cumulative, int(row["quantity"])), price)
        status = statuses.get(broker_id, "")
        if row["status"] in ("open", "partially_filled"):
            if status == "rejected" and row["status"] == "open":
                self.states.rejected(order_id, "rejected in the broker's order book")
            elif status == "cancelled":
                self.states.cancelled(order_id, "cancelled at the broker")
