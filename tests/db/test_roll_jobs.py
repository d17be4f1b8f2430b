"""Issue 22: the leader rolls a group once its roll date has come, during its exchange's hours only, once."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Iterator

import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.engine import TradingEngine
from pm_engine.core.market_hours import IST, MarketHours
from pm_engine.ops.jobs import BackgroundJobs, JobSettings
from pm_engine.ops.rollover import Roller
from pm_engine.store.gateway import Store
from tests.helpers import payload, rows

ENTRY = payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 75000, "2026-12-01T11:00:00+05:30", stop=74300, atr=400, er=0.8)


@pytest.fixture
def engine(db_config: DatabaseConfig) -> Iterator[TradingEngine]:
    store = Store(db_config)
    store.instances.register_instance("leader", "host", None, "test")
    e = TradingEngine(store=store, instance_id="leader", max_signal_age=None)
    yield e
    store.close()


def jobs_at(engine: TradingEngine, moment: datetime) -> BackgroundJobs:
    assert isinstance(engine.store, Store)
    roller = Roller(engine.store, engine.contracts, engine.instruments, MarketHours(always=False),
                    clock=lambda: moment)
    return BackgroundJobs(engine, JobSettings(roll_check_every_s=0), roller=roller)


def test_the_leader_rolls_a_due_group_in_market_hours_and_only_then(db_config: DatabaseConfig,
                                                                    engine: TradingEngine) -> None:
    assert engine.process_payload(ENTRY, check_time=False).outcome.value == "executed"
    early = jobs_at(engine, datetime(2026, 12, 21, 11, 0, tzinfo=IST))  # before GOLDM05JAN27FUT's roll date
    early.tick()
    assert rows(db_config, "SELECT count(*) FROM pm.rolls") == [(0,)]
    night = jobs_at(engine, datetime(2026, 12, 28, 23, 45, tzinfo=IST))  # due, but MCX is closed
    night.tick()
    assert rows(db_config, "SELECT count(*) FROM pm.rolls") == [(0,)]
    early._release()
    night._release()
    day = jobs_at(engine, datetime(2026, 12, 28, 10, 0, tzinfo=IST))
    deadline = time.monotonic() + 10  # the released lock is free once the server ended those sessions
    day.tick()
    while not day.is_leader and time.monotonic() < deadline:
        time.sleep(0.05)
        day.tick()
    assert day.is_leader and day.runs["roll"] == 1
    assert rows(db_config, "SELECT instrument, from_symbol, to_symbol, state FROM pm.rolls") == \
        [("GOLD_MINI", "GOLDM05JAN27FUT", "GOLDM05FEB27FUT", "rolled")]  # paper legs fill inside the database
    assert rows(db_config, "SELECT futures_symbol, rollover_count FROM pm.portfolio_positions") == \
        [("GOLDM05FEB27FUT", 1)]
    day.tick()  # the next check: the group now holds the February contract, not due
    assert rows(db_config, "SELECT count(*) FROM pm.rolls") == [(1,)]
    assert engine.portfolio.positions["GOLD_MINI_Long_1"].futures_symbol == "GOLDM05FEB27FUT"  # refreshed
    day._release()
