"""Issue 29, item 2: a gateway that sends its headers and then a space every half second.

A real engine process sends to a real dripping HTTP server (``tests/dripbroker.py``). Before the fix
its one thread waited on that answer forever: the stuck entry stayed ``sending``, the next entry
``queued`` past its age, another position's EXIT ``queued`` with 0 attempts, and the health said
"broker connected" throughout. Now: the call ends at its deadline as ``unknown`` (never sent again),
the other position's exit is sent and filled, the entry behind the stuck one expires on time, and
``/orders/broker``, ``/ready`` and ``/metrics`` say "slow" within one deadline.
"""

from __future__ import annotations

import time
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from pm_engine.config import DatabaseConfig
from pm_engine.core.contracts import ContractCalendar
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.tools import children
from tests.dripbroker import DripBroker
from tests.helpers import payload, rows
from tests.integration.test_broker_orders import stamp, wait_for

SECRET = "broker-drip-webhook-secret-0123456789ab"
CALENDAR = ContractCalendar(DEFAULT_INSTRUMENTS)
GOLD = CALENDAR.on("GOLD_MINI", date.today())
SILVER = CALENDAR.on("SILVER_MINI", date.today())
DEADLINE_S = 2.0


def states(config: DatabaseConfig) -> list[tuple[Any, ...]]:
    return rows(config, "SELECT position_id, side, status, attempts FROM pm.broker_orders ORDER BY created_at")


def test_a_dripping_gateway_holds_up_no_other_position_nor_the_clock(db_config: DatabaseConfig, tmp_path: Path) -> None:
    assert GOLD is not None and SILVER is not None
    with DripBroker(drip={GOLD.symbol}, price=90000) as broker:
        engine = children.EngineProcess(db_config, SECRET, log=tmp_path / "engine.log", env={
            "PM_BROKER": "openalgo", "PM_OPENALGO_URL": broker.url, "PM_OPENALGO_API_KEY": "drip-test-key-0123",
            "PM_MARKET_HOURS": "always", "PM_OPENALGO_TIMEOUT_S": str(DEADLINE_S), "PM_MAX_ORDER_AGE_S": "6",
            "PM_ORDER_REVIEW_AFTER_S": "30"})
        engine.start()
        try:
            assert engine.wait_ready(30), (tmp_path / "engine.log").read_text()[-2000:]
            url = f"http://127.0.0.1:{engine.port}"

            def send(body: dict[str, Any]) -> str:
                answer = httpx.post(url + "/webhook", json={**body, "secret": SECRET}, timeout=5)
                assert answer.status_code == 200, answer.text
                outcome = str(answer.json()["outcome"])
                return outcome if outcome == "executed" else answer.text

            silver = payload("BASE_ENTRY", "SILVER_MINI", "Long_1", 90000, stamp(), stop=86000, atr=600, er=0.8)
            assert send(silver) == "executed"
            wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE status = 'filled'"), 30,
                     lambda: states(db_config))
            broker_view = httpx.get(url + "/orders/broker", timeout=5).json()
            assert broker_view["state"] == "ok", broker_view  # an answering gateway is connected

            gold = payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 75000, stamp(), stop=74300, atr=400, er=0.8)
            assert send(gold) == "executed"
            wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE position_id LIKE 'GOLD%' "
                                             "AND status = 'sending'"), 10, lambda: states(db_config))
            stalled = time.monotonic()
            # within one deadline of the stall, every view says the broker is slow, not "connected"
            seen: dict[str, Any] = {}

            def slow_everywhere() -> bool:
                seen["orders/broker"] = httpx.get(url + "/orders/broker", timeout=5).json()["state"]
                seen["ready"] = httpx.get(url + "/ready", timeout=5).json()["broker"]["state"]
                seen["metrics"] = 'pm_broker_state{state="slow"} 1.0' in httpx.get(url + "/metrics", timeout=5).text
                return seen["orders/broker"] == "slow" and seen["ready"] == "slow" and seen["metrics"] is True
            wait_for(slow_everywhere, DEADLINE_S + 1, lambda: seen)
            assert time.monotonic() - stalled <= DEADLINE_S + 1

            # the same symbol's next entry waits behind the unresolved one, and expires at its age
            pyramid = payload("PYRAMID", "GOLD_MINI", "Long_2", 76500, stamp(), stop=76200, atr=400)
            assert send(pyramid) == "executed"
            # another position's exit is sent and filled while the gold call drips
            assert send(payload("EXIT", "SILVER_MINI", "ALL", 90500, stamp(), reason="SIGNAL")) == "executed"
            wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE position_id LIKE 'SILVER%' "
                                             "AND side = 'SELL' AND status = 'filled'"), 15, lambda: states(db_config))
            wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE position_id LIKE '%Long_2%' "
                                             "AND status = 'expired'"), 15, lambda: states(db_config))
            # the stuck call ended at its deadline: unknown, to be resolved from the books, never sent again
            [(status, attempts)] = rows(db_config, "SELECT status, attempts FROM pm.broker_orders "
                                                   "WHERE position_id LIKE '%GOLD%Long_1%'")
            assert status in ("unknown", "needs_review") and attempts == 1
            time.sleep(DEADLINE_S)
            assert broker.placements.count(GOLD.symbol) == 1, broker.placements
        finally:
            engine.stop()


def test_a_call_ends_at_its_deadline_and_an_endless_answer_is_capped() -> None:
    """The client alone, against real sockets: a dripping placement is ``unknown`` at its total deadline (a
    per-read timeout never fired), and an answer past 4 MiB is no answer (a query fails as ``lost``)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import pytest

    from pm_engine.adapters.openalgo import OpenAlgoClient, OpenAlgoError, OrderRequest, OutcomeKind, Timeouts

    class Huge(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            pass

        def do_POST(self) -> None:  # noqa: N802 - the base class's name
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()  # no length: the answer runs until the connection closes
            try:
                self.wfile.write(b'{"status": "success", "data": [' + b"0," * (3 * 1024 * 1024) + b"0]}")
            except OSError:
                pass

    huge = ThreadingHTTPServer(("127.0.0.1", 0), Huge)
    threading.Thread(target=huge.serve_forever, daemon=True).start()
    assert GOLD is not None
    with DripBroker(drip={GOLD.symbol}, price=75000, every_s=0.2) as drip:
        client = OpenAlgoClient(drip.url, "drip-test-key-0123", timeouts=Timeouts(order_read_s=1.5))
        began = time.monotonic()
        outcome = client.placeorder(OrderRequest("MCX", GOLD.symbol, "BUY", 1))
        assert outcome.kind is OutcomeKind.UNKNOWN and "not answering" in outcome.reason
        assert time.monotonic() - began < 5  # ended by its deadline, not by the drip (which never ends)
        assert client.oldest_call_s() == 0.0
    try:
        with pytest.raises(OpenAlgoError) as lost:
            OpenAlgoClient(f"http://127.0.0.1:{huge.server_address[1]}", "k" * 20).tradebook()
        assert lost.value.kind == "lost" and "larger than 4096 KiB" in str(lost.value)
    finally:
        huge.shutdown()
        huge.server_close()
