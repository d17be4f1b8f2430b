"""What one placeorder attempt ended as, and why: the classification the order state machine acts on.

OpenAlgo has no idempotency key (docs/domain.md#orders-through-openalgo): a second placeorder is a second
real order. So an
attempt is only ever one of

- ``accepted``: the broker took it and said so with an order id;
- ``rejected``: a definite refusal of this order (HTTP 400 and other 4xx but 403/429): it was not
  placed and sending it again would be refused again;
- ``not_sent``: it certainly was not placed and may be sent again later — the connection was never
  made (refused, DNS, connect timeout), or OpenAlgo turned it away before the broker (403: bad key or
  expired broker session; 429: rate limited);
- ``unknown``: it may have reached the broker without a clear answer — a timeout after sending, a
  connection cut after sending, HTTP 5xx, a success without an order id, an unreadable answer. Such
  an order is never sent again; it is resolved from the broker's order book and trade book.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional


class OutcomeKind(str, Enum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    NOT_SENT = "not_sent"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class PlaceOutcome:
    kind: OutcomeKind
    reason: str = ""
    broker_order_id: Optional[str] = None
    http_status: Optional[int] = None  # None: no HTTP answer at all

    @property
    def may_have_reached_broker(self) -> bool:
        """True for accepted and unknown: an order in either state must never be sent again."""
        return self.kind in (OutcomeKind.ACCEPTED, OutcomeKind.UNKNOWN)

    @property
    def session_expired(self) -> bool:
        """A 403: the API key is wrong or the broker's daily login has lapsed (the trader must log in)."""
        return self.kind is OutcomeKind.NOT_SENT and self.http_status == 403


def classify_answer(status: int, document: object) -> PlaceOutcome:
    """A placeorder's HTTP answer (status, parsed JSON or None) as an outcome."""
    message = _message(document)
    if status == 200:
        if isinstance(document, dict) and document.get("status") == "success":
            order_id = document.get("orderid")
            if isinstance(order_id, (str, int)) and not isinstance(order_id, bool) and str(order_id).strip():
                return PlaceOutcome(OutcomeKind.ACCEPTED, "accepted", str(order_id).strip(), status)
            return PlaceOutcome(OutcomeKind.UNKNOWN, "success without an order id", None, status)
        return PlaceOutcome(OutcomeKind.UNKNOWN, f"unreadable answer to placeorder (HTTP 200): {message}", None,
                            status)
    if status == 403:
        return PlaceOutcome(OutcomeKind.NOT_SENT, f"refused before the broker (HTTP 403: invalid API key or the broker "
                                                  f"session has expired): {message}", None, status)
    if status == 429:
        return PlaceOutcome(OutcomeKind.NOT_SENT, f"rate limited (HTTP 429): {message}", None, status)
    if 400 <= status < 500:
        return PlaceOutcome(OutcomeKind.REJECTED, message or f"HTTP {status}", None, status)
    return PlaceOutcome(OutcomeKind.UNKNOWN, f"HTTP {status} after the request was sent: {message}", None, status)


def _message(document: object) -> str:
    if isinstance(document, dict):
        message = document.get("message")
        return message if isinstance(message, str) else str(message) if message is not None else ""
    return "" if document is None else str(document)[:200]
