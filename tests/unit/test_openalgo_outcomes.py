"""Placeorder answers and the rate limiter, without a network: the classification table and the queue."""

from __future__ import annotations

import pytest

from pm_engine.adapters.openalgo import OutcomeKind, RateLimiter
from pm_engine.adapters.openalgo.outcomes import classify_answer


@pytest.mark.parametrize("status, document, kind", [
    (200, {"status": "success", "orderid": "2512010001"}, OutcomeKind.ACCEPTED),
    (200, {"status": "success", "orderid": 2512010001}, OutcomeKind.ACCEPTED),
    (200, {"status": "success", "orderid": None}, OutcomeKind.UNKNOWN),
    (200, {"status": "success", "orderid": " "}, OutcomeKind.UNKNOWN),
    (200, {"status": "success"}, OutcomeKind.UNKNOWN),
    (200, None, OutcomeKind.UNKNOWN),  # not JSON
    (200, {"status": "error", "message": "?"}, OutcomeKind.UNKNOWN),
    (400, {"status": "error", "message": "{'symbol': ['Missing data for required field.']}"}, OutcomeKind.REJECTED),
    (404, {"status": "error", "message": "Broker-specific module not found"}, OutcomeKind.REJECTED),
    (403, {"status": "error", "message": "Invalid openalgo apikey"}, OutcomeKind.NOT_SENT),
    (429, {"status": "error", "message": "Rate limit exceeded."}, OutcomeKind.NOT_SENT),
    (500, {"status": "error", "message": "Failed to place order due to internal error"}, OutcomeKind.UNKNOWN),
    (502, None, OutcomeKind.UNKNOWN),
    (504, "gateway timeout", OutcomeKind.UNKNOWN),
    (302, None, OutcomeKind.UNKNOWN),
])
def test_classify_answer(status: int, document: object, kind: OutcomeKind) -> None:
    outcome = classify_answer(status, document)
    assert outcome.kind is kind and outcome.http_status == status
    assert (outcome.broker_order_id is not None) == (kind is OutcomeKind.ACCEPTED)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_the_limiter_queues_the_eleventh_call_until_the_first_leaves_the_window() -> None:
    t = FakeClock()
    limiter = RateLimiter(10, per=1.0, margin=0.05, clock=t.clock, sleep=t.sleep)
    for _ in range(10):
        assert limiter.acquire() == 0
        t.now += 0.01
    assert t.slept == []
    assert limiter.acquire() == pytest.approx(0.95)  # first at 100.00, window 1.05 s, now 100.10
    assert t.slept == [pytest.approx(0.95)]
    t.now += 5
    assert limiter.acquire() == 0  # an idle window forgets old calls


def test_the_limiter_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)
