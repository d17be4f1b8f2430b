"""The OpenAlgo adapter over real HTTP against broker-sim: every fault switch ends in the right outcome.

The outcome decides whether an order may ever be sent again, so each test also checks what the
broker (the simulator) really holds: an ``unknown`` outcome with exactly one order at the broker is
the case that must never be resent.
"""

from __future__ import annotations

import logging
import pickle
import socket
import threading
from decimal import Decimal

import pytest

from pm_engine.adapters.openalgo import (OpenAlgoClient, OpenAlgoError, OrderRequest, OutcomeKind, RateLimiter,
                                         Secret, Timeouts)
from tests.brokersim import Sim, sim, sim_process  # noqa: F401 - fixtures

FUT = "BANKNIFTY29DEC26FUT"
ORDER = OrderRequest("NFO", FUT, "BUY", 30)


def adapter(s: Sim, **kw: object) -> OpenAlgoClient:
    return OpenAlgoClient(s.url, s.api_key, timeouts=Timeouts(connect_s=2, order_read_s=1.0, query_read_s=2), **kw)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_accepted_order_is_booked_once_with_its_id(sim: Sim) -> None:  # noqa: F811
    sim.control("price", {"symbol": FUT, "price": 52000})
    c = adapter(sim)
    outcome = c.placeorder(OrderRequest("NFO", FUT, "BUY", 60))
    assert outcome.kind is OutcomeKind.ACCEPTED and outcome.broker_order_id and outcome.may_have_reached_broker
    [order] = sim.state()["orders"]
    assert (order["orderid"], order["quantity"], order["product"], order["pricetype"], order["strategy"]) == (
        outcome.broker_order_id, 60, "NRML", "MARKET", "pm-engine")
    assert c.orderstatus(outcome.broker_order_id)["order_status"] == "complete"
    assert [o["orderid"] for o in c.orderbook()] == [outcome.broker_order_id]
    assert [(t["orderid"], t["quantity"]) for t in c.tradebook()] == [(outcome.broker_order_id, 60)]
    assert [(p["symbol"], p["quantity"]) for p in c.positionbook()] == [(FUT, 60)]
    assert c.quotes(FUT, "NFO")["ltp"] == 52000.0
    assert c.ping() == {"message": "pong", "broker": "simulator"}


@pytest.mark.parametrize("fault, reason", [
    ("timeout", "no answer from"), ("cut", "lost after the request was sent"), ("500", "HTTP 500"),
    ("no_orderid", "success without an order id")])
def test_an_answer_lost_after_acceptance_is_unknown_and_the_broker_holds_one_order(
        sim: Sim, fault: str, reason: str) -> None:  # noqa: F811
    sim.control("price", {"symbol": FUT, "price": 52000})
    sim.control("faults", {"after_accept": fault, "hang_s": 3, "times": 1})
    outcome = adapter(sim).placeorder(ORDER)
    assert outcome.kind is OutcomeKind.UNKNOWN, outcome
    assert reason in outcome.reason and outcome.broker_order_id is None and outcome.may_have_reached_broker
    orders = sim.state()["orders"]
    assert [(o["symbol"], o["action"], o["quantity"], o["order_status"]) for o in orders] == [
        (FUT, "BUY", 30, "complete")]  # it did reach the broker: resolving it from the book finds exactly this one


def test_a_definite_refusal_is_rejected_and_nothing_is_booked(sim: Sim) -> None:  # noqa: F811
    sim.control("price", {"symbol": FUT, "price": 52000})
    sim.control("faults", {"reject": "place", "reject_message": "RMS: insufficient margin"})
    outcome = adapter(sim).placeorder(ORDER)
    assert (outcome.kind, outcome.reason, outcome.http_status) == (OutcomeKind.REJECTED, "RMS: insufficient margin",
                                                                   400)
    assert not outcome.may_have_reached_broker
    assert sim.state()["orders"] == []


def test_a_rejection_in_the_order_book_is_accepted_then_seen_rejected(sim: Sim) -> None:  # noqa: F811
    sim.control("price", {"symbol": FUT, "price": 52000})
    sim.control("faults", {"reject": "book"})
    c = adapter(sim)
    outcome = c.placeorder(ORDER)
    assert outcome.kind is OutcomeKind.ACCEPTED
    assert c.orderstatus(str(outcome.broker_order_id))["order_status"] == "rejected"


def test_an_expired_session_is_not_sent_and_says_so(sim: Sim) -> None:  # noqa: F811
    sim.control("price", {"symbol": FUT, "price": 52000})
    sim.control("faults", {"session_expired": True})
    c = adapter(sim)
    outcome = c.placeorder(ORDER)
    assert outcome.kind is OutcomeKind.NOT_SENT and outcome.session_expired and "403" in outcome.reason
    with pytest.raises(OpenAlgoError) as error:
        c.orderbook()
    assert error.value.kind == "session" and error.value.http_status == 403
    assert sim.state()["orders"] == []


def test_a_refused_connection_is_not_sent() -> None:
    c = OpenAlgoClient(f"http://127.0.0.1:{closed_port()}", "any-key")
    outcome = c.placeorder(ORDER)
    assert outcome.kind is OutcomeKind.NOT_SENT and "not sent" in outcome.reason and outcome.http_status is None
    assert not outcome.session_expired
    with pytest.raises(OpenAlgoError) as error:
        c.positionbook()
    assert error.value.kind == "unreachable"


def test_a_burst_is_queued_within_ten_a_second_and_never_fails(sim: Sim) -> None:  # noqa: F811
    sim.control("price", {"symbol": FUT, "price": 52000})
    c = adapter(sim)
    outcomes = []
    threads = [threading.Thread(target=lambda: outcomes.append(c.placeorder(ORDER))) for _ in range(23)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    refused = [o.reason for o in outcomes if o.kind is not OutcomeKind.ACCEPTED]
    assert [o.kind for o in outcomes] == [OutcomeKind.ACCEPTED] * 23, refused
    assert len(sim.state()["orders"]) == 23


def test_without_the_limiter_the_gateway_answers_429_and_that_is_not_sent(sim: Sim) -> None:  # noqa: F811
    sim.control("price", {"symbol": FUT, "price": 52000})
    sim.control("faults", {"order_rate": 2})  # robust on a loaded machine: 3 of 14 within a second suffice
    c = adapter(sim, order_limiter=RateLimiter(1000), rate_limited_retries=0)
    outcomes = [c.placeorder(ORDER) for _ in range(14)]
    limited = [o for o in outcomes if o.kind is OutcomeKind.NOT_SENT]
    assert limited and all(o.http_status == 429 and "rate limited" in o.reason for o in limited)
    assert len(sim.state()["orders"]) == 14 - len(limited)
    retried = adapter(sim, order_limiter=RateLimiter(1000)).placeorder(ORDER)  # a 429 is retried after the window
    assert retried.kind is OutcomeKind.ACCEPTED


def test_partial_fill_and_cancel_through_the_adapter(sim: Sim) -> None:  # noqa: F811
    sim.control("price", {"symbol": FUT, "price": 52000})
    sim.control("faults", {"partial": "0.34", "partial_rest": "open", "times": 1})
    c = adapter(sim)
    outcome = c.placeorder(OrderRequest("NFO", FUT, "BUY", 90))
    order_id = str(outcome.broker_order_id)
    assert [t["quantity"] for t in c.tradebook() if t["orderid"] == order_id] == [30]
    assert c.orderstatus(order_id)["order_status"] == "open"
    assert c.cancelorder(order_id) == order_id
    assert c.orderstatus(order_id)["order_status"] == "cancelled"
    with pytest.raises(OpenAlgoError) as error:
        c.cancelorder(order_id)
    assert error.value.kind == "refused"


def test_query_errors_are_typed(sim: Sim) -> None:  # noqa: F811
    c = adapter(sim)
    with pytest.raises(OpenAlgoError) as error:
        c.quotes(FUT, "NFO")  # no price set: 400
    assert error.value.kind == "refused" and "No price" in str(error.value)
    with pytest.raises(OpenAlgoError) as error:
        c.orderstatus("123")
    assert error.value.kind == "refused" and error.value.http_status == 404
    sim.control("faults", {"latency_ms": 2500})
    with pytest.raises(OpenAlgoError) as error:
        c.ping()
    assert error.value.kind == "lost"


def test_the_api_key_never_shows(sim: Sim, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    c = adapter(sim)
    seen += [repr(c), str(c), repr(c._key), str(c._key)]
    sim.control("price", {"symbol": FUT, "price": 52000})
    for faults in ({}, {"after_accept": "500"}, {"after_accept": "cut"}, {"after_accept": None, "reject": "place"},
                   {"reject": None, "session_expired": True}):
        sim.control("faults", faults)
        outcome = c.placeorder(ORDER)
        seen += [repr(outcome), outcome.reason]
        try:
            c.orderbook()
        except OpenAlgoError as exc:
            seen += [str(exc), repr(exc)]
    bad = OpenAlgoClient(f"http://127.0.0.1:{closed_port()}", sim.api_key)
    seen.append(repr(bad.placeorder(ORDER)))
    seen += [r.getMessage() for r in caplog.records]
    assert len(seen) > 15 and not [s for s in seen if sim.api_key in s]
    with pytest.raises(TypeError):
        pickle.dumps(c._key)
    assert Secret("abc").scrub("key abc here") == "key **** here"


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        OpenAlgoClient("ftp://host", "k")
    with pytest.raises(ValueError, match="empty"):
        OpenAlgoClient("http://host", "")
    with pytest.raises(ValueError, match="quantity"):
        OrderRequest("NFO", FUT, "BUY", 0)
    with pytest.raises(ValueError, match="action"):
        OrderRequest("NFO", FUT, "HOLD", 1)
    assert OpenAlgoClient("https://gw.example/openalgo/", "k").url == "https://gw.example/openalgo"
    assert OrderRequest("MCX", "GOLDM", "SELL", 5, price=Decimal("78000")).product == "NRML"
