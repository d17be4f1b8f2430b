"""Issue 28 item 3: an order decided while its market is closed is answered with what will happen to it.

In process (the engine and the broker sender share one clock: the time of day is the test's), against the real
PostgreSQL and the real broker simulator over HTTP. A Bank Nifty entry at 06:12 IST, that the sender would expire
long before NFO opens, is blocked with that reason; one at 09:14:59 IST is answered queued with when NFO opens and
when the entry expires; the sender holds it while NFO is closed, it expires as "market closed", the signal's
outcome becomes the order's, and the log says each thing once however often the leader looks.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.market_hours import IST, MarketHours
from tests.brokersim import Sim, sim, sim_process  # noqa: F401 - fixtures
from tests.helpers import payload, rows


def weekday_at(hour: int, minute: int, second: int = 0) -> datetime:
    """The next Monday at this IST time of day (a trading day: the hours' trading_day says every weekday is)."""
    today = datetime.now(IST).date()
    monday = today + timedelta(days=(7 - today.weekday()) % 7 or 7)
    return datetime(monday.year, monday.month, monday.day, hour, minute, second, tzinfo=IST)


def bank_entry() -> dict[str, Any]:
    return payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, datetime.now(timezone.utc).isoformat(), stop=51650,
                   atr=350, er=0.85)


def engine_and_sender(store: Any, broker: Sim, clock: Callable[[], datetime], max_age_s: float) -> tuple[Any, Any]:
    from pm_engine.adapters.openalgo import OpenAlgoClient
    from pm_engine.core.engine import TradingEngine
    from pm_engine.ops.sender import OrderSender, SenderSettings

    hours = MarketHours(always=False, trading_day=lambda exchange, day: True)
    sender = OrderSender(store, OpenAlgoClient(broker.url, broker.api_key), hours,
                         SenderSettings(max_order_age_s=max_age_s), clock=clock)
    engine = TradingEngine(store=store, broker=sender, max_signal_age=None, clock=clock,
                           window=sender.window())
    return engine, sender


def test_an_entry_that_would_expire_before_the_open_is_blocked(
        db_config: DatabaseConfig, sim: Sim) -> None:  # noqa: F811
    from pm_engine.store.gateway import Store

    broker = sim
    store = Store(db_config)
    try:
        engine, _ = engine_and_sender(store, broker, lambda: weekday_at(6, 12), 120)
        result = engine.process_payload(bank_entry(), check_time=False)
    finally:
        store.close()
    assert result.outcome.value == "blocked", result
    assert result.reason == ("market closed: NFO opens 09:15 IST; an entry not sent within max_order_age (120 s) "
                             "expires at 06:14 IST, so it is not taken"), result.reason
    assert rows(db_config, "SELECT count(*) FROM pm.broker_orders") == [(0,)]
    assert rows(db_config, "SELECT processing_status FROM pm.signal_log") == [("blocked",)]
    assert broker.state()["orders"] == []


def test_an_entry_queued_while_closed_expires_as_market_closed_told_once(
        db_config: DatabaseConfig, sim: Sim, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    from pm_engine.store.gateway import Store

    broker = sim
    caplog.set_level(logging.INFO)
    store = Store(db_config)
    try:
        engine, sender = engine_and_sender(store, broker, lambda: weekday_at(9, 14, 59), 2)
        result = engine.process_payload(bank_entry(), check_time=False)
        assert result.outcome.value == "executed", result
        assert result.details["queued"] == "queued: NFO opens 09:15 IST; an entry expires at 09:15:01 IST unless sent"
        assert result.reason.startswith(result.details["queued"] + "; entered ")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and rows(db_config, "SELECT status FROM pm.broker_orders") != [("expired",)]:
            engine.send_queued(0)  # the leader's round: the order is still queued at every one
            sender.tick()
            time.sleep(0.2)
        for _ in range(3):
            engine.send_queued(0)
            sender.tick()
    finally:
        store.close()
    [(status, reason)] = rows(db_config, "SELECT status, reason FROM pm.broker_orders")
    assert status == "expired" and reason == "market closed: NFO did not open within max_order_age (00:00:02)", reason
    assert broker.state()["orders"] == []  # never sent while NFO was closed
    assert rows(db_config, "SELECT count(*) FROM pm.portfolio_positions") == [(0,)]  # the entry never happened
    [(outcome, why)] = rows(db_config, "SELECT processing_status, reason FROM pm.signal_log")
    assert outcome == "rejected" and "market closed" in why, why  # the signal's outcome is its order's
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "expired: market closed" in m]) == 1, messages
    assert len([m for m in messages if "wait for the broker sender" in m]) == 1, messages
    assert not [m for m in messages if "left by an interrupted instance" in m], messages
