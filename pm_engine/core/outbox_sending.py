"""Sending a committed decision's orders, and the outbox's recovery: the engine's side of the broker.

Orders are sent only after the decision that made them is durable; what a send fails to deliver
stays ``queued`` in the outbox (``pm.broker_orders``), where ``send_queued`` finds it again (at
start-up, and every few seconds on the job leader).
"""

from __future__ import annotations

import logging
from typing import Optional

from pm_engine.core.errors import DatabaseUnavailableError
from pm_engine.core.orders import BackgroundSender, Broker, Order
from pm_engine.core.state_store import Gateway

log = logging.getLogger("pm_engine.core.engine")


class OutboxSending:
    """The TradingEngine's order sending (a mixin: the engine owns the attributes below)."""

    broker: Broker
    store: Optional[Gateway]
    sender: Optional[BackgroundSender]
    _queued_told: set[str]

    def _send(self, orders: list[Order]) -> None:
        """Send committed orders; on failure they stay ``queued`` in the outbox for ``send_queued``."""
        if not orders:
            return
        if self.sender is not None:
            self.sender.submit(orders)
            return
        try:  # only a database-backed broker can be unavailable; the in-memory one never raises this
            self.broker.place_orders(orders)
        except DatabaseUnavailableError as exc:
            self._send_failed(orders, exc)

    @staticmethod
    def _send_failed(orders: list[Order], exc: Exception) -> None:
        log.warning("%d committed order(s) left queued (%s); recovery will send them", len(orders), exc)

    def flush_orders(self, timeout: float = 10.0) -> bool:
        """Wait for the background sender to send what it has (True at once when sending inline)."""
        return self.sender.flush(timeout) if self.sender is not None else True

    def close(self) -> None:
        """Stop the order sender (what it had not sent stays queued in the outbox)."""
        if self.sender is not None:
            self.sender.close()

    def send_queued(self, min_age_s: float = 0) -> int:
        """Send outbox orders committed at least ``min_age_s`` ago and never sent (recovery, the job leader)."""
        if self.store is None:
            return 0
        orders = self.store.orders.queued(min_age_s)
        if orders:
            fills = self.broker.place_orders(orders)
            self._tell_queued(orders, {f.client_order_id for f in fills})
        else:
            self._queued_told.clear()
        return len(orders)

    def _tell_queued(self, orders: list[Order], filled: set[str]) -> None:
        """Log what became of queued orders, once per order: the leader asks every few seconds, and an order
        waiting for its market (or for a broker sender) is still queued at every round."""
        waiting = {o.client_order_id for o in orders} - filled
        new = [o for o in orders if o.client_order_id not in self._queued_told]
        if new:
            done = sum(1 for o in new if o.client_order_id in filled)
            if done:
                log.warning("filled %d queued order(s) left by an interrupted instance", done)
            held = [o.client_order_id for o in new if o.client_order_id not in filled]
            if held:
                log.warning("%d queued order(s) wait for the broker sender (market hours, backoff, an engine "
                            "started with the broker; a layer traded at a broker is never paper-filled): %s",
                            len(held), ", ".join(held))
        self._queued_told = waiting  # bounded: only what is still queued is remembered
