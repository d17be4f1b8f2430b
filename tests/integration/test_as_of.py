"""Issue 18: the time a signal was processed, pasted into ``status --as-of``, shows that signal's effect.

Two real engine processes on one PostgreSQL take a 20-signal stream in turn; after every answer the
book is read from the instance that answered (its /status, proven current in the same round trip).
Then ``pm-engine signals --json`` lists the signals, and for each one ``pm-engine status --as-of
<its processed_at, exactly as printed> --json`` must equal the book right after it; one microsecond
earlier, the book right before it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import httpx
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.tools.children import EngineProcess
from pm_engine.tools.samples import generate_signals

SECRET = "as-of-instant-secret-0123456789"
NOT_HISTORY = {"outcomes", "instance_id", "as_of", "version", "signals"}


@pytest.fixture
def pair(db_config: DatabaseConfig) -> Iterator[list[EngineProcess]]:
    engines = [EngineProcess(db_config, SECRET, env={"PM_MAX_SIGNAL_AGE_S": "0"}).start() for _ in range(2)]
    try:
        for engine in engines:
            assert engine.wait_ready(30), "engine did not start"
        yield engines
    finally:
        for engine in engines:
            engine.stop()


def book(status: dict[str, Any], keys: Any = None) -> dict[str, Any]:
    """What history answers: the keys ``status --as-of`` prints (those of /status that are the book)."""
    return {k: v for k, v in status.items() if k not in NOT_HISTORY and (keys is None or k in keys)}


def cli(db_config: DatabaseConfig, *args: str) -> Any:
    env = {**os.environ, "DATABASE_URL": db_config.url(hide_password=False)}
    done = subprocess.run([sys.executable, "-m", "pm_engine", *args], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_status_as_of_each_signals_processed_at_is_the_book_right_after_it(
        db_config: DatabaseConfig, pair: list[EngineProcess]) -> None:
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    stream = generate_signals(20, seed=18, start=start, step=timedelta(minutes=1))
    before_each: list[dict[str, Any]] = []
    after_each: list[dict[str, Any]] = []
    previous = book(httpx.get(f"http://127.0.0.1:{pair[0].port}/status", timeout=10).json())
    for i, body in enumerate(stream):
        engine = pair[i % 2]
        answer = httpx.post(f"http://127.0.0.1:{engine.port}/webhook", json={**body, "secret": SECRET}, timeout=10)
        assert answer.status_code == 200, answer.text
        shown = httpx.get(f"http://127.0.0.1:{engine.port}/status", timeout=10)
        assert shown.status_code == 200
        before_each.append(previous)
        previous = book(shown.json())
        after_each.append(previous)

    listed = cli(db_config, "signals", "--json", "--limit", "100")
    assert len(listed) == len(stream)
    listed.reverse()  # newest first: the stream's order is oldest first
    assert [(s["instrument"], s["type"], s["layer"]) for s in listed] == [
        (b["instrument"], b["type"], b["position"]) for b in stream]
    assert len({s["instance"] for s in listed}) == 2, "both instances processed signals"
    changed = 0
    for i, signal in enumerate(listed):
        then = cli(db_config, "status", "--as-of", signal["processed_at"], "--json")
        keys = set(book(then))
        assert {"closed_equity", "open_equity", "positions", "pyramiding"} <= keys
        assert book(then) == book(after_each[i], keys), f"signal {i}: as of its processed_at, not the book after it"
        if book(after_each[i], keys) != book(before_each[i], keys):
            changed += 1
            just_before = datetime.fromisoformat(signal["processed_at"]) - timedelta(microseconds=1)
            earlier = cli(db_config, "status", "--as-of", just_before.isoformat(), "--json")
            assert book(earlier) == book(before_each[i], keys), f"signal {i}: 1 µs before it shows its effect"
    assert changed >= 10, "the stream moved the book"
    assert cli(db_config, "signals", "--json", "--since", listed[-1]["processed_at"]) == [listed[-1]]
