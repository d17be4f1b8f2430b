"""The database's concurrency rules, proven with two (or more) real psycopg2 connections."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg2
import pytest

from pm_engine.config import DatabaseConfig

POSITION = {
    "position_id": "BANK_NIFTY_Long_1", "instrument": "BANK_NIFTY", "entry_timestamp": "2026-10-30T05:00:00Z",
    "entry_price": 52000, "lots": 4, "quantity": 120, "initial_stop": 51650, "current_stop": 51650,
    "highest_close": 52000,
}


def connect(config: DatabaseConfig) -> Any:
    return psycopg2.connect(**config.dsn_kwargs())


def test_two_updates_from_one_version_one_wins(db_config: DatabaseConfig, pg2: Any) -> None:
    with pg2.cursor() as cur:
        cur.execute("SELECT pm.save_position(%s)", (json.dumps(POSITION),))
    first, second = connect(db_config), connect(db_config)
    outcome: dict[str, Any] = {}
    try:
        with first.cursor() as cur:  # first writer holds its update uncommitted
            cur.execute("SELECT pm.save_position(%s, 1)", (json.dumps({**POSITION, "current_stop": 51900}),))
            outcome["first"] = cur.fetchone()[0]

        def late_writer() -> None:
            try:
                with second.cursor() as cur:
                    cur.execute("SELECT pm.save_position(%s, 1)", (json.dumps({**POSITION, "current_stop": 51800}),))
                    outcome["second"] = cur.fetchone()[0]
                second.commit()
            except psycopg2.Error as exc:
                second.rollback()
                outcome["second_error"] = exc.pgcode

        thread = threading.Thread(target=late_writer)
        thread.start()
        thread.join(0.3)
        assert thread.is_alive(), "the second writer must wait for the first one's row lock"
        first.commit()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        first.close()
        second.close()
    assert outcome == {"first": 2, "second_error": "PM001"}
    with pg2.cursor() as cur:
        cur.execute("SELECT current_stop, version FROM pm.get_position('BANK_NIFTY_Long_1')")
        assert cur.fetchone() == (51900, 2)


@pytest.mark.parametrize("writers", [2, 8])
def test_concurrent_log_signal_exactly_one_new(db_config: DatabaseConfig, pg2: Any, writers: int) -> None:
    barrier = threading.Barrier(writers)
    results: list[bool] = []
    lock = threading.Lock()

    def log(n: int) -> None:
        conn = connect(db_config)
        try:
            with conn, conn.cursor() as cur:
                barrier.wait(5)
                cur.execute("SELECT pm.log_signal(%s, 'GOLD_MINI', 'BASE_ENTRY', 'Long_1', now(), 'executed', %s)",
                            ("f" * 64, f"writer {n}"))
                new = cur.fetchone()[0]
            with lock:
                results.append(new)
        finally:
            conn.close()

    threads = [threading.Thread(target=log, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(results) == [False] * (writers - 1) + [True]
    with pg2.cursor() as cur:
        cur.execute("SELECT count(*) FROM pm.signal_log WHERE fingerprint = %s", ("f" * 64,))
        assert cur.fetchone()[0] == 1


def test_log_signal_waits_for_an_uncommitted_claim(db_config: DatabaseConfig) -> None:
    """The second claimant blocks on the first's uncommitted row and sees it as taken once it commits."""
    first, second = connect(db_config), connect(db_config)
    call = "SELECT pm.log_signal(%s, 'COPPER', 'EXIT', 'ALL', now(), 'executed')"
    got: list[bool] = []
    try:
        with first.cursor() as cur:
            cur.execute(call, ("e" * 64,))
            assert cur.fetchone()[0] is True

        def claim() -> None:
            with second.cursor() as cur:
                cur.execute(call, ("e" * 64,))
                got.append(cur.fetchone()[0])
            second.commit()

        thread = threading.Thread(target=claim)
        thread.start()
        thread.join(0.3)
        assert thread.is_alive() and not got
        first.commit()
        thread.join(10)
    finally:
        first.close()
        second.close()
    assert got == [False]
