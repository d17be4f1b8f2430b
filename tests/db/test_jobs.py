"""Background jobs and the order outbox against a real PostgreSQL: one leader, takeover, recovery."""

from __future__ import annotations

import time
from decimal import Decimal as D
from typing import Any, Callable, Iterator

import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.engine import TradingEngine
from pm_engine.ops.jobs import BackgroundJobs, JobSettings
from pm_engine.store.gateway import Store
from tests.helpers import payload

ENTRY = payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30", stop=51650, atr=350,
                er=0.85)


class Died(Exception):
    """Stands for SIGKILL at a fault point (the real kill is in tests/integration)."""


def die_at(point: str) -> Callable[[str], None]:
    def hook(name: str) -> None:
        if name == point:
            raise Died(name)
    return hook


@pytest.fixture
def engines(db_config: DatabaseConfig) -> Iterator[list[TradingEngine]]:
    made: list[TradingEngine] = []
    yield made
    for engine in made:
        assert engine.store is not None
        engine.store.close()


def engine(db_config: DatabaseConfig, made: list[TradingEngine], name: str,
           **kwargs: Any) -> TradingEngine:
    store = Store(db_config)
    store.instances.register_instance(name, "host", None, "test")
    e = TradingEngine(store=store, instance_id=name, **kwargs)
    made.append(e)
    return e


def test_orders_committed_then_interrupted_are_sent_once_by_recovery(db_config: DatabaseConfig,
                                                                     engines: list[TradingEngine]) -> None:
    doomed = engine(db_config, engines, "inst-a", fault=die_at("after_commit"))
    with pytest.raises(Died):
        doomed.process_payload(ENTRY, check_time=False)
    fp = doomed.parse(ENTRY, check_time=False).fingerprint
    store = doomed.store
    assert store is not None
    assert [o["status"] for o in store.orders.orders_for_signal(fp)] == ["queued"]  # durable, not yet sent
    survivor = engine(db_config, engines, "inst-b")
    assert survivor.portfolio.positions["BANK_NIFTY_Long_1"].lots == 4  # the committed state is recovered
    assert survivor.send_queued() == 1
    assert survivor.send_queued() == 0
    orders = store.orders.orders_for_signal(fp)
    assert [(o["status"], o["lots"]) for o in orders] == [("filled", 4)]
    # the TradingView retry of the same alert changes nothing and orders nothing
    assert survivor.process_payload(ENTRY, check_time=False).outcome.value == "duplicate"
    assert len(store.orders.orders_for_signal(fp)) == 1


def test_one_leader_and_takeover_when_it_dies(db_config: DatabaseConfig, engines: list[TradingEngine]) -> None:
    settings = JobSettings(heartbeat_s=60)
    first = BackgroundJobs(engine(db_config, engines, "inst-a"), settings)
    second = BackgroundJobs(engine(db_config, engines, "inst-b"), settings)
    first.tick()
    second.tick()
    assert first.is_leader and not second.is_leader
    assert first.runs == {"heartbeat": 1, "sweep": 1, "queued": 1, "cleanup": 1}
    assert second.runs == {"heartbeat": 1, "sweep": 0, "queued": 0, "cleanup": 0}
    first.tick()
    assert first.runs["cleanup"] == 1  # daily, not every tick
    first._release()  # the leader's session ends (what a crash does to its connection)
    # the server frees the lock when its backend has ended the session, a moment after the client closed it:
    # the next leader is whoever's tick comes after that (a round of the jobs thread, here up to 10 s of ticks)
    deadline = time.monotonic() + 10
    second.tick()
    while not second.is_leader and time.monotonic() < deadline:
        time.sleep(0.05)
        second.tick()
    assert second.is_leader and second.runs["cleanup"] == 1
    with second.store.transaction() as cur:
        cur.execute("SELECT instance_id FROM pm.instance_metadata WHERE is_leader")
        assert [r["instance_id"] for r in cur.fetchall()] == ["inst-b"]
    second.stop()
    first.stop()


def test_jobs_thread_heartbeats_and_survives_errors(db_config: DatabaseConfig,
                                                    engines: list[TradingEngine]) -> None:
    e = engine(db_config, engines, "inst-a")
    assert e.store is not None
    with e.store.transaction() as cur:
        cur.execute("DELETE FROM pm.instance_metadata")  # e.g. a restored database: re-registered by the heartbeat
    jobs = BackgroundJobs(e, JobSettings(heartbeat_s=0.05)).start()
    try:
        import time
        deadline = time.monotonic() + 5
        while jobs.runs["heartbeat"] < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        jobs.stop()
    assert jobs.runs["heartbeat"] >= 3 and jobs.runs["cleanup"] == 1
    with e.store.transaction() as cur:
        cur.execute("SELECT status FROM pm.instance_metadata WHERE instance_id = 'inst-a'")
        assert cur.fetchone()["status"] == "active"


def test_background_sender_answers_after_one_round_trip_and_fills_in_batches(
        db_config: DatabaseConfig, engines: list[TradingEngine]) -> None:
    from pm_engine.store.outbox import DatabasePaperBroker

    orders_db = Store(db_config)
    store = Store(db_config)
    live = TradingEngine(store=store, broker=DatabasePaperBroker(orders_db.orders), send_in_background=True)
    engines.append(live)
    try:
        before = store.round_trips
        assert live.process_payload(ENTRY, check_time=False).outcome.value == "executed"
        assert store.round_trips - before == 1  # the signal path: one atomic call; the fill is the sender's
        assert live.flush_orders(5)
        fp = live.parse(ENTRY, check_time=False).fingerprint
        assert [o["status"] for o in store.orders.orders_for_signal(fp)] == ["filled"]
        assert live.sender is not None and live.sender.batches == 1 and orders_db.round_trips == 1
    finally:
        live.close()
        orders_db.close()


def test_background_sender_failure_leaves_orders_queued(db_config: DatabaseConfig,
                                                        engines: list[TradingEngine]) -> None:
    from pm_engine.core.orders import BackgroundSender, Order

    class Down:
        def place_orders(self, orders: list[Order]) -> list[Any]:
            raise RuntimeError("broker down")

    failed: list[int] = []
    sender = BackgroundSender(Down(), lambda orders, exc: failed.append(len(orders)))
    sender.submit([Order("pm-x-Long_1", "COPPER", "BUY", 1, D("800"), "f" * 64, "COPPER_Long_1")])
    assert sender.flush(5) and failed == [1]
    sender.close()


def test_heartbeat_refreshes_a_copy_another_instance_moved(
        db_config: DatabaseConfig, engines: list[TradingEngine]) -> None:
    a, b = engine(db_config, engines, "inst-a"), engine(db_config, engines, "inst-b")
    assert a.process_payload(ENTRY, check_time=False).outcome.value == "executed"
    assert b.portfolio.positions == {}  # b has not looked since it started
    store = b.store
    assert store is not None
    before = store.round_trips
    BackgroundJobs(b).tick()
    assert b.portfolio.version == a.portfolio.version
    assert b.portfolio.positions["BANK_NIFTY_Long_1"].lots == 4
    trips = store.round_trips - before
    BackgroundJobs(b).tick()
    assert store.round_trips - before - trips <= trips  # a current copy costs no more than a moved one


def test_duplicate_of_a_signal_another_instance_committed_refreshes_at_once(
        db_config: DatabaseConfig, engines: list[TradingEngine]) -> None:
    a, b = engine(db_config, engines, "inst-a"), engine(db_config, engines, "inst-b")
    a.process_payload(ENTRY, check_time=False)
    store = b.store
    assert store is not None
    before = store.round_trips
    assert b.process_payload(ENTRY, check_time=False).outcome.value == "duplicate"
    assert store.round_trips - before == 1  # the duplicate answer carried the fresh state
    assert b.status()["positions"][0]["lots"] == 4 and b.portfolio.version == a.portfolio.version
    assert store.book.state_if_moved(b.portfolio.version) is None  # proven current
