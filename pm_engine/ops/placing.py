"""Placing one order at the broker: the per-order half of the broker sender (``pm_engine.ops.sender``).

A worker thread calls ``OrderPlacer.send`` for each order the database offers it. The order is
committed ``sending`` (``pm.order_sending``: only one instance can take an order, and only one order per
symbol, side and product may be unresolved) *before* its request leaves; the answer is recorded through
the state machine: accepted → ``open``, a definite refusal → ``rejected``, certainly not placed → back
to ``queued`` with backoff, anything that may have reached the broker — a call past its deadline
included — → ``unknown``, never sent again. The optional price guard (issue 21) may refuse a futures
entry first.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Optional

from pm_engine.adapters.openalgo import OpenAlgoClient, OpenAlgoError, OrderRequest, OutcomeKind
from pm_engine.core.market_hours import MarketHours
from pm_engine.ops.broker_health import SLOW, BrokerHealth
from pm_engine.store.errors import OrderTransitionError, OrderUnresolvedError
from pm_engine.store.orders import OrderQueries

BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # after the 1st, 2nd, ... attempt that certainly was not placed


class OrderPlacer:
    """Sends one queued order and records the broker's answer (thread-safe: it keeps no state of its own)."""

    def __init__(self, states: OrderQueries, client: OpenAlgoClient, hours: MarketHours, health: BrokerHealth,
                 clock: Callable[[], datetime], guard_base_pct: Optional[Decimal] = None,
                 guard_pyramid_pct: Optional[Decimal] = None) -> None:
        self.states, self.client, self.hours, self.health, self.clock = states, client, hours, health, clock
        self.guard_base_pct, self.guard_pyramid_pct = guard_base_pct, guard_pyramid_pct

    def send(self, row: dict[str, Any]) -> None:
        order_id = row["client_order_id"]
        if not self.hours.is_open(row["exchange"], self.clock()):
            return  # waits queued: the broker would refuse a MARKET order now (an entry may expire meanwhile)
        try:
            taken = self.states.sending(order_id)  # committed before the request leaves
        except (OrderUnresolvedError, OrderTransitionError):
            return  # another order of the symbol is unresolved, or another instance took this one
        refusal = self.guard(row)
        if refusal is not None:
            if refusal.startswith("market moved"):
                self.states.rejected(order_id, refusal)  # unwound as a rejection: the entry is removed from the book
            else:
                self.states.send_later(order_id, refusal, BACKOFF_S[0])
            return
        request = OrderRequest(exchange=row["exchange"], symbol=row["symbol"], action=row["side"],
                               quantity=int(row["quantity"]), product=row["product"])
        outcome = self.client.placeorder(request)
        if outcome.kind is OutcomeKind.ACCEPTED:
            assert outcome.broker_order_id is not None
            self.health.set("ok")
            self.states.accepted(order_id, outcome.broker_order_id)
        elif outcome.kind is OutcomeKind.REJECTED:
            self.health.set("ok")
            self.states.rejected(order_id, outcome.reason or "rejected by the broker")
        elif outcome.kind is OutcomeKind.NOT_SENT:
            self.health.set("session_expired" if outcome.session_expired else
                            "unreachable" if outcome.http_status is None else "ok", outcome.reason)
            delay = BACKOFF_S[min(int(taken["attempts"]), len(BACKOFF_S)) - 1]
            self.states.send_later(order_id, outcome.reason or "not sent", delay)
        else:
            self.health.set("error" if outcome.http_status else "slow" if SLOW in (outcome.reason or "")
                            else "unreachable", outcome.reason)
            self.states.unknown(order_id, outcome.reason or "no clear answer")

    def guard(self, row: dict[str, Any]) -> Optional[str]:
        """The optional price guard for a futures entry: why not to send it now (None: send).

        The broker's last price more than X % (base, layer 1) or Y % (pyramid) from the signal's price:
        "market moved", the entry is refused. No quote: not sent yet (tried again; the entry expires at
        ``max_order_age`` if quotes never come), since the guard cannot vouch for the price.
        """
        if (row.get("leg") or "FUT") != "FUT" or row["side"] != "BUY" or row.get("roll_id") is not None:
            return None  # a roll's open leg is priced against the old contract's close: the basis is no move
        base = str(row["position_id"]).endswith("_Long_1")
        pct = self.guard_base_pct if base else self.guard_pyramid_pct
        if pct is None:
            return None
        try:
            ltp = Decimal(str(self.client.quotes(row["symbol"], row["exchange"]).get("ltp")))
        except (OpenAlgoError, InvalidOperation, ValueError) as exc:
            return f"no quote for the price guard ({exc})"
        signal = Decimal(row["price"])
        if ltp <= 0:
            return "no quote for the price guard (ltp 0)"
        away = abs(ltp - signal) / signal * 100
        if away > pct:
            return (f"market moved: the quote {ltp} is {away.quantize(Decimal('0.01'))} % from the signal price "
                    f"{signal} (guard {pct} %)")
        return None
