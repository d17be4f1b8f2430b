"""broker-sim speaks OpenAlgo's dialect: the official ``openalgo`` client (PyPI, pinned) drives it over real HTTP.

Also its validation (unknown fields, missing fields, the key in the body), its answers, and each switch.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from openalgo import api

from tests.brokersim import Sim, sim, sim_process  # noqa: F401 - fixtures

FUT = "BANKNIFTY29DEC26FUT"


def client(s: Sim, key: str | None = None) -> Any:
    return api(api_key=key or s.api_key, host=s.url)


def test_the_official_client_places_and_reads_back(sim: Sim) -> None:  # noqa: F811
    sim.control("price", {"symbol": FUT, "price": "52010.5"})
    oa = client(sim)
    placed = oa.placeorder(strategy="pm-engine", symbol=FUT, action="BUY", exchange="NFO", price_type="MARKET",
                           product="NRML", quantity=60)
    assert placed["status"] == "success" and placed["orderid"], placed
    order_id = placed["orderid"]

    status = oa.orderstatus(order_id=order_id, strategy="pm-engine")
    assert status["status"] == "success", status
    fields = ("order_status", "symbol", "exchange", "action", "quantity", "product", "pricetype", "average_price",
              "orderid")
    assert {k: status["data"][k] for k in fields} == {
        "order_status": "complete", "symbol": FUT, "exchange": "NFO", "action": "BUY", "quantity": 60,
        "product": "NRML", "pricetype": "MARKET", "average_price": 52010.5, "orderid": order_id}
    assert status["data"]["price"] == 0.0  # MARKET orders show price 0, as OpenAlgo's order book does

    book = oa.orderbook()
    assert book["status"] == "success"
    assert [o["orderid"] for o in book["data"]["orders"]] == [order_id]
    assert "strategy" not in book["data"]["orders"][0]  # the order book carries no strategy label
    assert book["data"]["statistics"]["total_buy_orders"] == 1
    assert book["data"]["statistics"]["total_completed_orders"] == 1

    trades = oa.tradebook()
    assert trades["status"] == "success"
    assert [(t["orderid"], t["quantity"], t["average_price"], t["trade_value"]) for t in trades["data"]] == [
        (order_id, 60, 52010.5, 3120630.0)]

    sim.control("price", {"symbol": FUT, "price": "52110.5"})
    positions = oa.positionbook()
    assert positions["status"] == "success"
    assert [(p["symbol"], p["exchange"], p["product"], p["quantity"], p["average_price"], p["ltp"], p["pnl"])
            for p in positions["data"]] == [(FUT, "NFO", "NRML", 60, "52010.50", 52110.5, 6000.0)]

    quote = oa.quotes(symbol=FUT, exchange="NFO")
    assert quote["status"] == "success" and quote["data"]["ltp"] == 52110.5
    assert {"bid", "ask", "open", "high", "low", "prev_close", "volume", "oi"} <= set(quote["data"])


def test_a_sell_nets_the_position_and_realizes_pnl(sim: Sim) -> None:  # noqa: F811
    oa = client(sim)
    sim.control("price", {"symbol": FUT, "price": 52000})
    oa.placeorder(strategy="s", symbol=FUT, action="BUY", exchange="NFO", product="NRML", quantity=90)
    sim.control("price", {"symbol": FUT, "price": 52100})
    oa.placeorder(strategy="s", symbol=FUT, action="SELL", exchange="NFO", product="NRML", quantity=30)
    [position] = oa.positionbook()["data"]
    assert (position["quantity"], position["average_price"], position["pnl"]) == (60, "52000.00", 9000.0)
    oa.placeorder(strategy="s", symbol=FUT, action="SELL", exchange="NFO", product="NRML", quantity=90)
    [position] = oa.positionbook()["data"]
    assert (position["quantity"], position["average_price"]) == (-30, "52100.00")


def test_unknown_and_missing_fields_are_refused_with_the_field_map(sim: Sim) -> None:  # noqa: F811
    sim.control("price", {"symbol": FUT, "price": 52000})
    refused = client(sim).placeorder(strategy="s", symbol=FUT, action="BUY", exchange="NFO", quantity=30,
                                     validity="DAY")
    assert refused["status"] == "error" and refused["code"] == 400
    assert "{'validity': ['Unknown field.']}" in refused["message"]
    status, body = sim.post("placeorder", {"apikey": sim.api_key, "strategy": "s", "exchange": "NFO",
                                           "action": "HOLD", "quantity": 0})
    assert status == 400 and body["status"] == "error"
    assert "'symbol': ['Missing data for required field.']" in body["message"]
    assert "'action': ['Must be one of: BUY, SELL, buy, sell.']" in body["message"]
    assert "'quantity': ['Quantity must be a positive number.']" in body["message"]
    status, body = sim.post("placeorder", {"apikey": sim.api_key, "strategy": "s", "exchange": "NFO", "symbol": FUT,
                                           "action": "BUY", "quantity": "1.5"})
    assert status == 400 and "Fractional quantity" in body["message"]
    status, body = sim.post("orderbook", {"apikey": sim.api_key, "strategy": "s"})
    assert (status, body) == (400, {"status": "error", "message": {"strategy": ["Unknown field."]}})
    status, body = sim.post("quotes", {"apikey": sim.api_key, "symbol": FUT, "exchange": "NYSE"})
    assert status == 400 and "exchange" in body["message"]
    assert sim.state()["orders"] == []


def test_the_key_travels_in_the_body_and_a_bad_one_is_403(sim: Sim) -> None:  # noqa: F811
    refused = client(sim, key="not-the-key").orderbook()
    assert refused["status"] == "error" and "Invalid openalgo apikey" in refused["message"]
    assert sim.post("ping", {})[0] == 400  # no apikey field at all: a validation error
    assert sim.post("ping", {"apikey": sim.api_key}) == (200, {"status": "success",
                                                               "data": {"message": "pong", "broker": "simulator"}})


def test_orderstatus_reports_the_first_trade_and_the_tradebook_every_trade(sim: Sim) -> None:  # noqa: F811
    """Several trades at different prices: OpenAlgo's average_price is the first trade's, the tradebook has them all."""
    sim.control("price", {"symbol": FUT, "price": 52000})
    sim.control("faults", {"trades_per_order": 3, "price_step": "5"})
    oa = client(sim)
    order_id = oa.placeorder(strategy="s", symbol=FUT, action="BUY", exchange="NFO", product="NRML",
                             quantity=90)["orderid"]
    assert oa.orderstatus(order_id=order_id, strategy="s")["data"]["average_price"] == 52000.0
    trades = oa.tradebook()["data"]
    assert [(t["quantity"], t["average_price"]) for t in trades] == [(30, 52000.0), (30, 52005.0), (30, 52010.0)]


def test_partial_fill_book_rejection_hold_and_cancel(sim: Sim) -> None:  # noqa: F811
    oa = client(sim)
    sim.control("price", {"symbol": FUT, "price": 52000})
    sim.control("faults", {"partial": "0.5", "times": 1})
    partial = oa.placeorder(strategy="s", symbol=FUT, action="BUY", exchange="NFO", product="NRML", quantity=90)
    assert oa.orderstatus(order_id=partial["orderid"], strategy="s")["data"]["order_status"] == "cancelled"
    assert [t["quantity"] for t in oa.tradebook()["data"]] == [45]
    full = oa.placeorder(strategy="s", symbol=FUT, action="BUY", exchange="NFO", product="NRML", quantity=30)
    assert oa.orderstatus(order_id=full["orderid"], strategy="s")["data"]["order_status"] == "complete"

    sim.control("faults", {"partial": None, "reject": "book", "times": 1})
    rejected = oa.placeorder(strategy="s", symbol=FUT, action="BUY", exchange="NFO", product="NRML", quantity=30)
    assert rejected["status"] == "success"  # accepted, then rejected in the book (an RMS rejection)
    assert oa.orderstatus(order_id=rejected["orderid"], strategy="s")["data"]["order_status"] == "rejected"

    sim.control("faults", {"reject": None, "hold": True, "times": 1})
    held = oa.placeorder(strategy="s", symbol=FUT, action="SELL", exchange="NFO", product="NRML", quantity=30)
    assert oa.orderstatus(order_id=held["orderid"], strategy="s")["data"]["order_status"] == "open"
    assert oa.cancelorder(order_id=held["orderid"], strategy="s")["status"] == "success"
    assert oa.orderstatus(order_id=held["orderid"], strategy="s")["data"]["order_status"] == "cancelled"
    again = oa.cancelorder(order_id=held["orderid"], strategy="s")
    assert again["status"] == "error" and again["code"] == 400
    missing = oa.orderstatus(order_id="999", strategy="s")
    assert missing["code"] == 404 and "not found" in missing["message"]


def test_a_limit_order_rests_until_the_price_reaches_it(sim: Sim) -> None:  # noqa: F811
    oa = client(sim)
    sim.control("price", {"symbol": FUT, "price": 52000})
    order_id = oa.placeorder(strategy="s", symbol=FUT, action="BUY", exchange="NFO", price_type="LIMIT",
                             product="NRML", quantity=30, price="51950")["orderid"]
    assert oa.orderstatus(order_id=order_id, strategy="s")["data"]["order_status"] == "open"
    sim.control("price", {"symbol": FUT, "price": 51940})
    status = oa.orderstatus(order_id=order_id, strategy="s")["data"]
    assert (status["order_status"], status["price"], status["average_price"]) == ("complete", 51950.0, 51940.0)


def test_a_placement_rejection_and_no_price_book_nothing(sim: Sim) -> None:  # noqa: F811
    oa = client(sim)
    no_price = oa.placeorder(strategy="s", symbol=FUT, action="BUY", exchange="NFO", quantity=30)
    assert no_price["code"] == 400 and "No price for" in no_price["message"]
    priced = oa.placeorder(strategy="s", symbol=FUT, action="BUY", exchange="NFO", quantity=30, price="52000")
    assert priced["status"] == "success"  # a MARKET order carrying a price fills there when none was set
    sim.control("faults", {"reject": "place"})
    refused = oa.placeorder(strategy="s", symbol=FUT, action="BUY", exchange="NFO", quantity=30)
    assert refused["code"] == 400 and "RMS" in refused["message"]
    assert len(sim.state()["orders"]) == 1


def test_an_expired_session_answers_403_everywhere(sim: Sim) -> None:  # noqa: F811
    sim.control("price", {"symbol": FUT, "price": 52000})
    sim.control("faults", {"session_expired": True})
    oa = client(sim)
    for answer in (oa.placeorder(strategy="s", symbol=FUT, action="BUY", exchange="NFO", quantity=30),
                   oa.orderbook(), oa.tradebook(), oa.positionbook(), oa.quotes(symbol=FUT, exchange="NFO")):
        assert answer["status"] == "error" and answer["code"] == 403, answer
    assert sim.state()["orders"] == []
    sim.control("faults", {"session_expired": False})
    assert oa.orderbook()["status"] == "success"


def test_orders_over_the_rate_get_429(sim: Sim) -> None:  # noqa: F811
    """At 2 orders/s (the default is 10) the test holds on a loaded machine: 3 of 15 posts within a second suffice."""
    sim.control("price", {"symbol": FUT, "price": 52000})
    sim.control("faults", {"order_rate": 2})
    order = {"apikey": sim.api_key, "strategy": "s", "exchange": "NFO", "symbol": FUT, "action": "BUY",
             "quantity": 30}
    answers = [sim.post("placeorder", order) for _ in range(15)]
    limited = [body for status, body in answers if status == 429]
    assert limited and limited[0]["message"].startswith("Rate limit exceeded")
    assert len(sim.state()["orders"]) == 15 - len(limited) < 15


def test_after_acceptance_faults_still_book_the_order(sim: Sim) -> None:  # noqa: F811
    sim.control("price", {"symbol": FUT, "price": 52000})
    order = {"apikey": sim.api_key, "strategy": "s", "exchange": "NFO", "symbol": FUT, "action": "BUY",
             "quantity": 30}
    sim.control("faults", {"after_accept": "500", "times": 1})
    assert sim.post("placeorder", order)[0] == 500
    sim.control("faults", {"after_accept": "no_orderid", "times": 1})
    assert sim.post("placeorder", order) == (200, {"status": "success", "orderid": None})
    assert [o["order_status"] for o in sim.state()["orders"]] == ["complete", "complete"]


def test_expiry_funds_and_the_controls(sim: Sim) -> None:  # noqa: F811
    status, body = sim.post("expiry", {"apikey": sim.api_key, "symbol": "BANKNIFTY", "exchange": "NFO",
                                       "instrumenttype": "futures"})
    assert status == 200 and len(body["data"]) == 3 and all(len(d) == 9 and d[2] == "-" for d in body["data"])
    status, body = sim.post("funds", {"apikey": sim.api_key})
    assert status == 200 and {"availablecash", "collateral", "m2mrealized", "m2munrealized",
                              "utiliseddebits"} <= set(body["data"])
    with pytest.raises(Exception) as bad_fault:
        sim.control("faults", {"after_accept": "explode"})
    assert "400" in str(bad_fault.value)
    with pytest.raises(Exception):
        sim.control("faults", {"no_such_switch": 1})
    with pytest.raises(Exception):
        sim.control("price", {"symbol": FUT, "price": -1})


def test_broker_sim_needs_a_key() -> None:
    done = subprocess.run([sys.executable, "-m", "pm_engine", "broker-sim", "--port", "0"], capture_output=True,
                          text=True, timeout=30, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and "--api-key" in done.stderr


def test_a_web_page_cannot_drive_the_simulator(sim: Sim) -> None:  # noqa: F811
    """Issue 19's rule holds for the simulator too: no cross-site form, no DNS-rebinding host, JSON only."""
    import httpx

    sim.control("price", {"symbol": FUT, "price": "52000"})
    form = httpx.post(sim.url + "/sim/price", content='{"symbol": "%s", "price": 1, "x": "="}' % FUT,
                      headers={"Content-Type": "text/plain"})  # what a top-level form can send
    assert form.status_code == 403 and "application/json" in form.json()["message"]
    cross = httpx.post(sim.url + "/sim/reset", json={}, headers={"Origin": "http://evil.example",
                                                                 "Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403 and "cross-site" in cross.json()["message"]
    rebound = httpx.get(sim.url + "/sim/state", headers={"Host": "evil.example"})
    assert rebound.status_code == 403 and "Host" in rebound.json()["message"]
    quote = client(sim).quotes(symbol=FUT, exchange="NFO")
    assert quote["data"]["ltp"] == 52000.0, "nothing the page sent changed the price"


def test_the_controls_need_the_simulators_key(sim: Sim) -> None:  # noqa: F811
    """Issue 29: any local user reaches loopback; without the key no price, fault, fill, reset or state."""
    import httpx

    sim.control("price", {"symbol": FUT, "price": "52000"})
    for name, body in (("price", {"symbol": FUT, "price": 1}), ("faults", {"reject": "place"}), ("reset", {}),
                       ("fill", {"orderid": "x"})):
        bare = httpx.post(f"{sim.url}/sim/{name}", json=body, timeout=5)
        wrong = httpx.post(f"{sim.url}/sim/{name}", json={**body, "apikey": sim.api_key + "x"}, timeout=5)
        assert bare.status_code == wrong.status_code == 401 and "need its API key" in bare.json()["message"], name
    assert httpx.get(f"{sim.url}/sim/state", timeout=5).status_code == 401
    assert httpx.get(f"{sim.url}/sim/state", headers={"Authorization": "Bearer nope"}, timeout=5).status_code == 401
    in_body = httpx.post(f"{sim.url}/sim/price", json={"symbol": FUT, "price": "52100", "apikey": sim.api_key})
    assert in_body.status_code == 200, in_body.text  # the key in the body, as the API takes it
    assert client(sim).quotes(symbol=FUT, exchange="NFO")["data"]["ltp"] == 52100.0


def test_the_simulator_refuses_unbounded_and_slow_bodies(sim: Sim) -> None:  # noqa: F811
    """Issue 29: ``Content-Length: -1`` was read to the end of the stream (68 → 378 MB); a slow body held a thread."""
    import socket
    import time

    host, port = sim.url.rsplit("//", 1)[1].split(":")

    def raw(head: bytes, then: bytes = b"") -> bytes:
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(head + then)
            conn.settimeout(30)
            return conn.recv(4096)

    start = b"POST /sim/price HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    minus = raw(start + b"Content-Length: -1\r\n\r\n", b"{" * 1000)
    assert minus.startswith(b"HTTP/1.1 400") and b"Content-Length" in minus
    chunked = raw(start + b"Transfer-Encoding: chunked\r\n\r\n", b"5\r\n{}{}{\r\n")
    assert chunked.startswith(b"HTTP/1.1 400")
    big = raw(start + b"Content-Length: 10000000\r\n\r\n")
    assert big.startswith(b"HTTP/1.1 413")
    began = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=30) as conn:  # a head that never ends
        conn.sendall(b"POST /sim/price HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        conn.settimeout(30)
        assert conn.recv(4096) == b""  # the simulator closed it
    assert time.monotonic() - began < 25  # within its read timeout (10 s), not the 30 s this side would wait
