"""The broker sender's calls into the order state machine: every state change is a PL/pgSQL function.

Python never sets an order's state; it asks ``pm.order_sending`` before a request leaves and reports
what the broker said through the other transitions (``db/functions/72_order_states.sql`` and
``74_order_sending.sql``). Each call is one statement, one transaction, committed on return. The
outbox's queued orders (``queued``) and the paper broker that fills them are read from here too.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from json import dumps
from typing import Any, Optional, Sequence

from pm_engine.core.orders import Order
from pm_engine.store.executor import Executor
from pm_engine.store.outbox import DatabasePaperBroker


class OrderQueries:
    """``store.orders``: named queries of the order path over the store's executor."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def _row(self, name: str, *args: Any) -> dict[str, Any]:
        return self.executor.first(name, *args)

    # -- the outbox ----------------------------------------------------------------------------
    def queued(self, min_age_s: float = 0) -> list[Order]:
        """Committed orders never sent, at least ``min_age_s`` old, oldest first (state ``queued``)."""
        return [Order(r["client_order_id"], r["instrument"], r["side"], int(r["lots"]), r["price"], r["fingerprint"],
                      r["position_id"], r["created_at"], exchange=r.get("exchange"), symbol=r.get("symbol"),
                      quantity=r.get("quantity"), product=r.get("product") or "NRML", leg=r.get("leg"))
                for r in self.executor.run("queued_orders", f"{min_age_s} seconds")]

    def paper_broker(self) -> DatabasePaperBroker:
        """The paper broker of a live engine: it fills this store's outbox rows."""
        return DatabasePaperBroker(self)

    def fill_paper_orders(self, client_order_ids: list[str]) -> list[dict[str, Any]]:
        """The paper broker's fill of outbox orders (idempotent); the filled rows."""
        return self.executor.run("fill_paper_orders", client_order_ids)

    def orders_for_signal(self, fingerprint: str) -> list[dict[str, Any]]:
        return self.executor.run("orders_for_signal", fingerprint)

    # -- the order state machine ---------------------------------------------------------------
    def sendable(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.executor.run("sendable_orders", limit)

    def sending(self, client_order_id: str) -> dict[str, Any]:
        """queued → sending, committed: only after this returns may the request leave."""
        return self._row("order_sending", client_order_id)

    def accepted(self, client_order_id: str, broker_order_id: str) -> dict[str, Any]:
        return self._row("order_accepted", client_order_id, broker_order_id)

    def rejected(self, client_order_id: str, reason: str) -> dict[str, Any]:
        return self._row("order_rejected", client_order_id, reason)

    def unknown(self, client_order_id: str, reason: str) -> dict[str, Any]:
        return self._row("order_unknown", client_order_id, reason)

    def cancelled(self, client_order_id: str, reason: str) -> dict[str, Any]:
        return self._row("order_cancelled", client_order_id, reason)

    def send_later(self, client_order_id: str, reason: str, delay_s: float) -> dict[str, Any]:
        return self._row("order_send_later", client_order_id, reason, f"{delay_s} seconds")

    def fill(self, client_order_id: str, broker_order_id: str, cumulative: int, average_price: Decimal,
             source: str = "tradebook") -> dict[str, Any]:
        return self._row("record_order_fill", client_order_id, broker_order_id, cumulative, average_price, source)

    def expire_stale_entries(self, max_age_s: float, closed: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Entries queued longer than ``max_age_s`` expire; the reason says "market closed" for ``closed``."""
        return self.executor.run("expire_stale_entries", f"{max_age_s} seconds", list(closed))

    def check_identity(self) -> dict[str, Any]:
        """The restore guard (pm.check_database_identity): ``state`` recorded | same | restored | unknown and
        ``held_orders``, the queued orders held since a restore into another cluster was found."""
        return dict(self.executor.scalar("check_database_identity"))

    def release_restored(self, by: str) -> int:
        """The trader's release of the orders held since a restore (a checked principal); how many."""
        return int(self.executor.scalar("release_restored_orders", by))

    def abandon_sending(self, after_s: float) -> int:
        return int(self.executor.scalar("abandon_sending", f"{after_s} seconds"))

    def at_broker(self) -> list[dict[str, Any]]:
        return self.executor.run("orders_at_broker")

    def resolve_unknown(self, client_order_id: str, orderbook: list[dict[str, Any]], review_after_s: float) -> str:
        return str(self.executor.scalar("resolve_unknown_order", client_order_id, dumps(orderbook, default=str),
                                        f"{review_after_s} seconds"))

    def review(self, client_order_id: str, broker_order_id: Optional[str], reason: Optional[str],
               by: str, link: Optional[str] = None) -> dict[str, Any]:
        """The trader's answer to ``needs_review``: at the broker as ``broker_order_id`` (→ open; its fills are then
        booked from the broker), or not at the broker (None → rejected, booked as a refusal). A link is ``checked``
        (found in the broker's order book by the caller) or ``forced`` (with a reason); the database refuses
        any other (PM096)."""
        return self._row("review_order", client_order_id, broker_order_id is not None, broker_order_id, reason, by,
                         link if broker_order_id is not None else None)

    def seen_at_broker(self, broker_order_ids: list[str], review_after_s: float) -> int:
        """Tell the database which order ids the broker's order book shows; returns how many review-linked orders
        it never showed went back to ``needs_review`` (pm.orders_seen_at_broker)."""
        return int(self.executor.scalar("orders_seen_at_broker", broker_order_ids, f"{review_after_s} seconds"))

    def order(self, client_order_id: str) -> Optional[dict[str, Any]]:
        """One order of ours by client order id (what a review checks against the broker's order book)."""
        rows = [r for r in self.listing("needs_review") if r["client_order_id"] == client_order_id]
        return rows[0] if rows else None

    def listing(self, state: Optional[str] = None, since: Optional[datetime] = None,
                limit: int = 500) -> list[dict[str, Any]]:
        """``pm-engine orders`` and ``GET /orders``: newest first, with fills and slippage."""
        return self.executor.run("list_orders", state, since, limit)

    # -- the book against the broker (reconciliation) ------------------------------------------
    def book_positions(self, mcx_in_lots: bool = True) -> tuple[list[dict[str, Any]], set[str]]:
        """The book's net quantity per contract (order units) and every symbol the portfolio ever sent."""
        rows = self.executor.run("book_net_positions", mcx_in_lots)
        return rows, {str(r["traded_symbols"]) for r in self.executor.run("traded_symbols")}

    def symbols_in_flight(self) -> set[str]:
        """Contracts with an order not yet settled: the book holds what the broker may not show yet."""
        return {str(r["symbols_in_flight"]) for r in self.executor.run("symbols_in_flight")}

    def sending_signal_price(self, symbol: str, side: str) -> Optional[Decimal]:
        """The signal's price of the order of ``symbol`` and ``side`` now sending (None: none is)."""
        value = self.executor.scalar("sending_signal_price", symbol, side)
        return Decimal(str(value)) if value is not None else None

    def record_reconcile_differences(self, differences: list[dict[str, Any]]) -> int:
        """Lock each differing contract's instrument (once) and record the anomaly; how many were newly locked."""
        return int(self.executor.scalar("record_reconcile_differences", dumps(differences)))

    def record_broker_session(self, state: str, message: str, instance_id: str) -> Optional[int]:
        """Report the broker's state (ok | session_expired | unreachable); the event's id when it changed, else None."""
        value = self.executor.scalar("record_broker_session", state, message[:500] or None, instance_id)
        return None if value is None else int(value)
