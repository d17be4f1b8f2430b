"""Order execution: the Broker interface and the PaperBroker (fills at the signal price).

Client order ids derive from the signal fingerprint and the layer, so a retried signal — or the
same alert decided by two engine instances — asks for the same id, and a broker that dedupes on
client ids (as the paper broker does) can never fill it twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Optional, Protocol


@dataclass(frozen=True)
class Order:
    client_order_id: str
    instrument: str
    side: str  # BUY | SELL
    lots: int
    price: Decimal
    fingerprint: str
    position_id: str
    created_at: Optional[datetime] = None


@dataclass(frozen=True)
class Fill:
    client_order_id: str
    lots: int
    price: Decimal
    broker_order_id: str


def client_order_id(fingerprint: str, position_id: str) -> str:
    """``pm-<first 24 hex of the fingerprint>-<layer>``: stable across retries, distinct per layer."""
    layer = position_id.rsplit("_", 2)[-2:]
    return f"pm-{fingerprint[:24]}-{'_'.join(layer)}"


class Broker(Protocol):
    """Places orders idempotently by client order id."""

    def place_order(self, order: Order) -> Fill: ...

    def get_order(self, client_order_id: str) -> Optional[Fill]: ...


class PaperBroker:
    """Fills every order at its limit price, once per client order id (kept in memory)."""

    def __init__(self) -> None:
        self.orders: dict[str, Order] = {}
        self.fills: dict[str, Fill] = {}

    def place_order(self, order: Order) -> Fill:
        existing = self.fills.get(order.client_order_id)
        if existing is not None:
            return existing
        fill = Fill(order.client_order_id, order.lots, order.price, f"paper-{len(self.fills) + 1}")
        self.orders[order.client_order_id] = order
        self.fills[order.client_order_id] = fill
        return fill

    def get_order(self, client_order_id: str) -> Optional[Fill]:
        return self.fills.get(client_order_id)
