"""Issue 10: whatever instance answers GET /status shows the book the database has committed.

Two real engine processes on one PostgreSQL; every signal goes to A, to B or to both at once (a
fixed random order, as TradingView alerts delivered to several instances arrive), and after every
answer both instances' /status must equal the database's own state.
"""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import httpx
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.tools.children import EngineProcess, committed_book, served_book
from pm_engine.tools.samples import generate_signals

SECRET = "read-consistency-secret-012345"


@pytest.fixture
def pair(db_config: DatabaseConfig) -> Iterator[list[EngineProcess]]:
    engines = [EngineProcess(db_config, SECRET, env={"PM_MAX_SIGNAL_AGE_S": "0"}).start()
               for _ in range(2)]
    try:
        for engine in engines:
            assert engine.wait_ready(30), "engine did not start"
        yield engines
    finally:
        for engine in engines:
            engine.stop()


def post(engine: EngineProcess, body: dict[str, Any], out: list[str]) -> None:
    answer = httpx.post(f"http://127.0.0.1:{engine.port}/webhook", json={**body, "secret": SECRET}, timeout=10)
    assert answer.status_code == 200, answer.text
    out.append(answer.json()["outcome"])


def test_status_on_every_instance_equals_the_database_after_every_answer(
        db_config: DatabaseConfig, pair: list[EngineProcess]) -> None:
    a, b = pair
    rng = random.Random(10)
    start = datetime.now(timezone.utc) - timedelta(days=1)
    stream = generate_signals(60, seed=10, start=start, step=timedelta(minutes=1))
    outcomes: list[str] = []
    routes: list[str] = []
    for i, body in enumerate(stream):
        route = rng.choice(["A", "B", "both"])
        routes.append(route)
        if route == "both":
            threads = [threading.Thread(target=post, args=(e, body, outcomes)) for e in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(15)
        else:
            post(a if route == "A" else b, body, outcomes)
        book = committed_book(db_config)
        for name, engine in (("A", a), ("B", b)):
            shown = httpx.get(f"http://127.0.0.1:{engine.port}/status", timeout=10)
            assert shown.status_code == 200
            assert served_book(shown.json()) == book, f"signal {i} ({route}): /status on {name} differs"
    # the run exercised what matters: both routes alone, both at once, and cross-instance duplicates
    assert {"A", "B", "both"} <= set(routes)
    assert outcomes.count("duplicate") == routes.count("both")
    assert outcomes.count("executed") > 20
    assert committed_book(db_config)["closed_equity"] != 5_000_000  # the book moved (trades were closed)
