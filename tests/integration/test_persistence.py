"""Real engine processes over HTTP on a real PostgreSQL: restart, SIGKILL, two instances, one alert."""

from __future__ import annotations

import signal
import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D
from typing import Any, Iterator

import httpx
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.engine import TradingEngine
from pm_engine.store.deploy import migration_files
from pm_engine.store.gateway import Store
from pm_engine.tools import children
from tests.helpers import payload, rows

SECRET = "integration-secret-0123456789abc"


class EngineProcess(children.EngineProcess):
    """``python -m pm_engine live`` as a child process, started and ready."""

    def __init__(self, config: DatabaseConfig, **extra_env: str) -> None:
        super().__init__(config, SECRET, env=extra_env)
        self.start()
        self.url = f"http://127.0.0.1:{self.port}"
        if not self.wait_ready(20):
            raise RuntimeError("engine did not start")

    def send(self, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + "/webhook", json={**body, "secret": SECRET}, timeout=5, **kwargs)


@pytest.fixture
def engines(db_config: DatabaseConfig) -> Iterator[list[EngineProcess]]:
    started: list[EngineProcess] = []
    yield started
    for engine in started:
        engine.stop()


def stamp(minutes_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat()


def sequence() -> list[dict[str, Any]]:
    return [
        payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, stamp(5), stop=51650, atr=350, er=0.85),
        payload("PYRAMID", "BANK_NIFTY", "Long_2", 52800, stamp(4), stop=52300, atr=360),
        payload("EXIT", "BANK_NIFTY", "ALL", 53500, stamp(3), reason="SIGNAL"),
    ]


def test_full_sequence_over_http(db_config: DatabaseConfig, engines: list[EngineProcess]) -> None:
    engine = EngineProcess(db_config)
    engines.append(engine)
    entry, pyramid, exit_ = sequence()
    first = engine.send(entry, headers={"Content-Type": "text/plain"})
    assert first.status_code == 200 and first.json()["outcome"] == "executed" and first.json()["lots"] == 4
    assert engine.send(entry).json()["outcome"] == "duplicate"
    assert engine.send(pyramid).json()["lots"] == 1
    status = httpx.get(engine.url + "/status").json()
    assert [p["position_id"] for p in status["positions"]] == ["BANK_NIFTY_Long_1", "BANK_NIFTY_Long_2"]
    assert engine.send(exit_).json()["realized_pnl"] == "201000.00"
    assert rows(db_config, "SELECT closed_equity FROM pm.portfolio_state") == [(D("5201000.00"),)]
    assert rows(db_config, "SELECT processing_status, count(*) FROM pm.signal_log GROUP BY 1") == [("executed", 3)]


def test_rejections_write_nothing(db_config: DatabaseConfig, engines: list[EngineProcess]) -> None:
    engine = EngineProcess(db_config)
    engines.append(engine)
    entry = sequence()[0]
    assert httpx.post(engine.url + "/webhook", json=entry).status_code == 401
    assert httpx.post(engine.url + "/webhook?token=wrong", json=entry).status_code == 401
    bad = engine.send({**entry, "price": "lots"})
    assert bad.status_code == 422 and bad.json()["field"] == "price"
    assert httpx.post(engine.url + "/webhook", content=b"not json", headers={"X-PM-Secret": SECRET}).status_code == 400
    assert rows(db_config, "SELECT count(*) FROM pm.signal_log") == [(0,)]
    ok = httpx.post(engine.url + f"/webhook?token={SECRET}", json=entry)
    assert ok.json()["outcome"] == "executed"  # the corrected alert for the same bar still goes through
    assert SECRET not in httpx.get(engine.url + "/status").text
    assert httpx.get(engine.url + "/ready").status_code == 200
    newest = migration_files()[-1].name  # the newest migration, whichever branch added it
    assert httpx.get(engine.url + "/db/status").json()["schema_version"] == newest
    assert "/webhook" in httpx.get(engine.url + "/openapi.json").json()["paths"]


def test_restart_recovers_identical_state(db_config: DatabaseConfig, engines: list[EngineProcess]) -> None:
    engine = EngineProcess(db_config)
    engines.append(engine)
    for body in sequence()[:2]:
        engine.send(body)
    before = httpx.get(engine.url + "/status").json()
    engine.stop()
    again = EngineProcess(db_config)
    engines.append(again)
    after = httpx.get(again.url + "/status").json()
    for key in ("closed_equity", "open_equity", "blended_equity", "positions", "margin_used"):
        assert after[key] == before[key]
    assert again.send(sequence()[2]).json()["realized_pnl"] == "201000.00"


def test_sigkill_mid_stream_then_continue(db_config: DatabaseConfig, engines: list[EngineProcess]) -> None:
    engine = EngineProcess(db_config)
    engines.append(engine)
    entry, pyramid, exit_ = sequence()
    assert engine.send(entry).json()["outcome"] == "executed"
    engine.kill()
    restarted = EngineProcess(db_config)
    engines.append(restarted)
    assert restarted.send(entry).json()["outcome"] == "duplicate"  # the retried alert is absorbed
    assert restarted.send(pyramid).json()["outcome"] == "executed"
    assert restarted.send(exit_).json()["outcome"] == "executed"
    assert rows(db_config, "SELECT closed_equity FROM pm.portfolio_state") == [(D("5201000.00"),)]


def test_same_webhook_to_two_processes_executes_once(db_config: DatabaseConfig, engines: list[EngineProcess]) -> None:
    a, b = EngineProcess(db_config), EngineProcess(db_config)
    engines.extend([a, b])
    answers: list[str] = []
    bodies = [payload("BASE_ENTRY", name, "Long_1", price, stamp(2), stop=price * 0.99, atr=price * 0.005, er=0.9)
              for name, price in (("BANK_NIFTY", 52000), ("GOLD_MINI", 78000), ("COPPER", 800))]
    for body in bodies:
        barrier = threading.Barrier(2)

        def fire(engine: EngineProcess, body: dict[str, Any] = body, barrier: threading.Barrier = barrier) -> None:
            barrier.wait(5)
            answers.append(engine.send(body).json()["outcome"])

        threads = [threading.Thread(target=fire, args=(e,)) for e in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert sorted(answers) == ["duplicate"] * 3 + ["executed"] * 3
    assert rows(db_config, "SELECT count(*) FROM pm.portfolio_positions WHERE status = 'open'") == [(3,)]
    # both instances converge on the same state: each sizes from what the other committed
    assert httpx.get(a.url + "/status").json()["closed_equity"] == "5000000.00"


def test_two_threads_one_stop_one_wins(db_config: DatabaseConfig) -> None:
    from pm_engine.core.errors import StaleVersionError

    seed = TradingEngine(store=Store(db_config))
    seed.process_payload(sequence()[0], check_time=False)
    first, second = (TradingEngine(store=Store(db_config)) for _ in range(2))
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def trail(engine: TradingEngine, price: str) -> None:
        barrier.wait(5)
        try:
            engine.update_stops("BANK_NIFTY", D(price), D("350"))
            outcomes.append(f"saved {price}")
        except StaleVersionError:
            outcomes.append("stale")

    threads = [threading.Thread(target=trail, args=args) for args in ((first, "53000"), (second, "52900"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(outcomes)[-1] == "stale" and len(outcomes) == 2  # exactly one writer won
    winner = outcomes[0] if outcomes[0] != "stale" else outcomes[1]
    stop = {"saved 53000": D("52125.00"), "saved 52900": D("52025.00")}[winner]  # price - 2.5 x 350
    assert rows(db_config, "SELECT current_stop, version FROM pm.portfolio_positions") == [(stop, 2)]


def test_ten_concurrent_saves_no_deadlock(db_config: DatabaseConfig) -> None:
    from pm_engine.core.models import Position
    store = Store(db_config)
    errors: list[Exception] = []

    def save(n: int) -> None:
        try:
            p = Position(f"COPPER_Long_{n}", "COPPER", datetime.now(timezone.utc), D(800), 1, 2500, D(790), D(790),
                         D(800))
            store.book.save_position(p)
            for stop in range(791, 796):
                p.current_stop = D(stop)
                store.book.save_position(p)
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert rows(db_config, "SELECT count(*), min(version), max(version) FROM pm.portfolio_positions") == [(10, 6, 6)]


def test_sigkill_after_commit_before_the_order_is_sent(db_config: DatabaseConfig, engines: list[EngineProcess]) -> None:
    """The worst window: the signal is durable, its order not sent. Restart sends it, exactly once."""
    doomed = EngineProcess(db_config, PM_FAULT_CRASH="after_commit:1")
    engines.append(doomed)
    entry = sequence()[0]
    with pytest.raises(httpx.HTTPError):
        doomed.send(entry)
    assert doomed.proc.wait(5) == -signal.SIGKILL
    assert rows(db_config, "SELECT status, lots FROM pm.broker_orders") == [("queued", 4)]
    restarted = EngineProcess(db_config)
    engines.append(restarted)
    assert rows(db_config, "SELECT status, lots FROM pm.broker_orders") == [("filled", 4)]
    assert restarted.send(entry).json()["outcome"] == "duplicate"  # TradingView's retry: nothing more
    assert rows(db_config, "SELECT count(*) FROM pm.broker_orders") == [(1,)]
    assert [p["lots"] for p in httpx.get(restarted.url + "/status").json()["positions"]] == [4]


def test_database_outage_answers_503_fast_then_recovers(engines: list[EngineProcess]) -> None:
    from pm_engine.store.deploy import deploy
    from pm_engine.ops.cluster import temporary_cluster

    cluster = temporary_cluster(fsync=False)
    try:
        cluster.create_database("pm_outage")
        config = cluster.config("pm_outage")
        deploy(config)
        engine = EngineProcess(config)
        engines.append(engine)
        entry, pyramid, _ = sequence()
        assert engine.send(entry).json()["outcome"] == "executed"
        cluster.stop("immediate")
        started = time.monotonic()
        down = engine.send(pyramid)
        elapsed = time.monotonic() - started
        assert down.status_code == 503 and "resend" in down.json()["error"]
        assert elapsed < 3.0, f"503 took {elapsed:.2f}s"
        assert httpx.get(engine.url + "/ready", timeout=5).status_code == 503
        assert httpx.get(engine.url + "/health").status_code == 200
        cluster.start()
        assert httpx.get(engine.url + "/ready", timeout=5).status_code == 200  # reconnected by itself
        again = engine.send(pyramid).json()
        assert again["outcome"] == "executed", again  # the retried alert, processed once
        assert engine.send(pyramid).json()["outcome"] == "duplicate"
        assert rows(config, "SELECT count(*) FROM pm.signal_log") == [(2,)]
    finally:
        for e in engines:
            e.stop()
        cluster.destroy()
