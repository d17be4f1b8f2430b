"""Backup and restore with positions open (docs/operations.md, "Backup and restore").

A real engine trades through the broker simulator: a Gold Mini base is filled at the broker, then the broker's
session expires and a Silver Mini base stays ``queued`` (not sent: the broker refuses every call). ``pg_dump``
takes the database as it is, while the engine runs; the machine then dies (SIGKILL). The dump is restored into
a fresh cluster, and:

* the book is the original's, in the database (``load_state``) and as ``pm-engine status --json`` prints it;
* an engine started on the restored database resumes: it answers the next alert and its order reaches the
  broker once;
* the entry queued in the dump is not sent late: it is older than ``max_order_age`` by then, so it expires
  (its position removed, its signal ``rejected``), and the broker never sees it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import psycopg2
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.contracts import ContractCalendar
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.ops.cluster import LocalCluster, find_bindir, temporary_cluster
from pm_engine.tools import children
from tests.brokersim import Sim, sim, sim_process  # noqa: F401 - fixtures
from tests.helpers import payload, rows

SECRET = "backup-restore-webhook-secret-0123456789"
CALENDAR = ContractCalendar(DEFAULT_INSTRUMENTS)
GOLD = CALENDAR.on("GOLD_MINI", date.today())
SILVER = CALENDAR.on("SILVER_MINI", date.today())
assert GOLD is not None and SILVER is not None


def stamp() -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=5)).isoformat()


def engine(config: DatabaseConfig, broker: Sim, log: Path, **env: str) -> children.EngineProcess:
    process = children.EngineProcess(config, SECRET, log=log, env={
        "PM_BROKER": "openalgo", "PM_OPENALGO_URL": broker.url, "PM_OPENALGO_API_KEY": broker.api_key,
        "PM_MARKET_HOURS": "always", "PM_OPENALGO_TIMEOUT_S": "2", **env}).start()
    assert process.wait_ready(30), log.read_text()[-2000:]
    return process


def alert(process: children.EngineProcess, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(f"http://127.0.0.1:{process.port}/webhook", json={**body, "secret": SECRET}, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def orders(config: DatabaseConfig) -> dict[str, str]:
    return {str(symbol): str(status) for symbol, status in rows(config, "SELECT symbol, status FROM pm.broker_orders")}


def status_json(config: DatabaseConfig) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "pm_engine", "status", "--json"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "DATABASE_URL": config.url(hide_password=False)})
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def the_book(status: dict[str, Any]) -> dict[str, Any]:
    """What must survive a restore: equity and every open position as ``status --json`` shows them."""
    positions = [(p["position_id"], p["lots"], p["entry_price"], p["current_stop"], p.get("symbol"))
                 for p in status["positions"]]
    return {"closed_equity": status["closed_equity"], "positions": sorted(positions)}


def pg_tool(name: str, *args: str) -> None:
    bindir = find_bindir()
    assert bindir is not None
    done = subprocess.run([str(bindir / name), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def take_dump(config: DatabaseConfig, dump: Path) -> None:
    pg_tool("pg_dump", "-Fc", "-h", config.host, "-p", str(config.port), "-U", config.user, "-d", config.database,
            "-f", str(dump))


def restore(dump: Path, cluster: LocalCluster) -> DatabaseConfig:
    """The dump restored into a new database of another cluster, as a trader moving to a new server would."""
    conn = psycopg2.connect(**cluster.config().dsn_kwargs())
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("CREATE DATABASE pm_restored")
    conn.close()
    pg_tool("pg_restore", "--exit-on-error", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
            "-d", "pm_restored", str(dump))
    return DatabaseConfig(host="127.0.0.1", port=cluster.port, database="pm_restored", user="postgres",
                          password=cluster.password)


@pytest.fixture
def fresh_cluster() -> Iterator[LocalCluster]:
    cluster = temporary_cluster()
    try:
        yield cluster
    finally:
        cluster.destroy()


def test_dump_restored_into_a_fresh_cluster_resumes_and_sends_no_stale_entry(
        db_config: DatabaseConfig, sim: Sim, fresh_cluster: LocalCluster, tmp_path: Path) -> None:  # noqa: F811
    assert GOLD is not None and SILVER is not None
    sim.control("price", {"symbol": GOLD.symbol, "price": "75000"})
    sim.control("price", {"symbol": SILVER.symbol, "price": "90000"})
    original = engine(db_config, sim, tmp_path / "original.log")
    try:
        assert alert(original, payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 75000, stamp(), stop=74300, atr=400,
                                       er=0.8))["outcome"] == "executed"
        wait_for(lambda: orders(db_config).get(GOLD.symbol) == "filled")
        sim.control("faults", {"session_expired": True})
        assert alert(original, payload("BASE_ENTRY", "SILVER_MINI", "Long_1", 90000, stamp(), stop=88500, atr=900,
                                       er=0.8))["outcome"] == "executed"
        time.sleep(1.5)  # the sender tries, the broker refuses: the entry stays queued
        assert orders(db_config)[SILVER.symbol] == "queued"
        dump = tmp_path / "pm_engine.dump"
        take_dump(db_config, dump)
    finally:
        original.kill()  # the machine dies after the backup
    before = status_json(db_config)
    assert {p["instrument"] for p in before["positions"]} == {"GOLD_MINI", "SILVER_MINI"}

    restored = restore(dump, fresh_cluster)

    assert children.committed_book(restored) == children.committed_book(db_config)
    assert the_book(status_json(restored)) == the_book(before)
    assert orders(restored) == {GOLD.symbol: "filled", SILVER.symbol: "queued"}

    sim.control("faults", {"session_expired": False})  # the broker is back; the restored engine starts
    resumed = engine(restored, sim, tmp_path / "restored.log", PM_MAX_ORDER_AGE_S="1")
    try:
        wait_for(lambda: orders(restored).get(SILVER.symbol) == "expired")
        assert [p["instrument"] for p in status_json(restored)["positions"]] == ["GOLD_MINI"]
        assert rows(restored, "SELECT processing_status FROM pm.signal_log WHERE instrument = 'SILVER_MINI'") == \
            [("rejected",)]
        assert alert(resumed, payload("EXIT", "GOLD_MINI", "ALL", 75500, stamp(), reason="SIGNAL"))["outcome"] == \
            "executed"
        wait_for(lambda: rows(restored, "SELECT count(*) FROM pm.broker_orders WHERE status = 'filled'") == [(2,)])
    finally:
        resumed.stop()
    at_broker = [(o["symbol"], o["action"]) for o in sim.state()["orders"]]
    assert at_broker == [(GOLD.symbol, "BUY"), (GOLD.symbol, "SELL")]  # the stale Silver entry never reached it
    assert status_json(restored)["positions"] == []


def test_a_queued_exit_in_a_restored_database_is_held_until_the_trader_releases_it(
        db_config: DatabaseConfig, sim: Sim, fresh_cluster: LocalCluster, tmp_path: Path) -> None:  # noqa: F811
    """An exit queued in the backup may have been sent and filled since: after a restore into another cluster it
    is held (never sent blindly) while new orders go, until ``pm-engine orders release-restored``."""
    assert GOLD is not None and SILVER is not None
    sim.control("price", {"symbol": GOLD.symbol, "price": "75000"})
    sim.control("price", {"symbol": SILVER.symbol, "price": "90000"})
    original = engine(db_config, sim, tmp_path / "original.log")
    try:
        assert alert(original, payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 75000, stamp(), stop=74300, atr=400,
                                       er=0.8))["outcome"] == "executed"
        wait_for(lambda: orders(db_config).get(GOLD.symbol) == "filled")
        sim.control("faults", {"session_expired": True})
        assert alert(original, payload("EXIT", "GOLD_MINI", "ALL", 75500, stamp(), reason="SIGNAL"))["outcome"] == \
            "executed"
        time.sleep(1.5)  # the broker refuses every call: the exit stays queued
        assert rows(db_config, "SELECT side, status FROM pm.broker_orders ORDER BY created_at") == \
            [("BUY", "filled"), ("SELL", "queued")]
        dump = tmp_path / "pm_engine.dump"
        take_dump(db_config, dump)
    finally:
        original.kill()

    restored = restore(dump, fresh_cluster)

    sim.control("faults", {"session_expired": False})
    log = tmp_path / "restored.log"
    resumed = engine(restored, sim, log)
    try:
        wait_for(lambda: "restored from a backup" in log.read_text())
        assert alert(resumed, payload("BASE_ENTRY", "SILVER_MINI", "Long_1", 90000, stamp(), stop=88500, atr=900,
                                      er=0.8))["outcome"] == "executed"
        wait_for(lambda: orders(restored).get(SILVER.symbol) == "filled")  # a new order goes as ever
        time.sleep(1.0)
        assert rows(restored, "SELECT status FROM pm.broker_orders WHERE side = 'SELL'") == [("queued",)]  # held
        assert [(o["symbol"], o["action"]) for o in sim.state()["orders"]] == \
            [(GOLD.symbol, "BUY"), (SILVER.symbol, "BUY")]
        assert rows(restored, "SELECT count(*) FROM pm.anomalies WHERE kind = 'database_restored'") == [(1,)]
        released = subprocess.run([sys.executable, "-m", "pm_engine", "orders", "release-restored"],
                                  capture_output=True, text=True, timeout=60,
                                  env={**os.environ, "DATABASE_URL": restored.url(hide_password=False)})
        assert released.returncode == 0 and "released 1 held order(s)" in released.stdout, released.stderr
        wait_for(lambda: rows(restored, "SELECT status FROM pm.broker_orders WHERE side = 'SELL'") == [("filled",)])
    finally:
        resumed.stop()
    assert [(o["symbol"], o["action"]) for o in sim.state()["orders"]] == \
        [(GOLD.symbol, "BUY"), (SILVER.symbol, "BUY"), (GOLD.symbol, "SELL")]  # the exit once, after the release
    assert log.read_text().count("restored from a backup") == 1
