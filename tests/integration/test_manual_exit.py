"""Issue 28 item 1: ``pm-engine exit`` from a shell goes the way the running engine sends orders.

The broker simulator runs for real (a child process), the engine is a real ``live`` process sending to it, and
the CLI is run as a shell would run it (only DATABASE_URL: no broker settings at all). A layer traded at the
broker is never paper-filled: the exit is queued, and reaches the simulator exactly once — sent by the running
engine's broker sender, or, with no engine running, by the next one to start. A layer traded on paper is still
filled on paper by the CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pm_engine.config import DatabaseConfig
from tests.brokersim import Sim, sim, sim_process  # noqa: F401 - fixtures
from tests.helpers import payload, rows
from tests.integration.test_broker_orders import GOLD, broker, engines, entry, filled, start, stamp  # noqa: F401
from tests.integration.test_broker_orders import Engine, wait_for


def exit_cli(db_config: DatabaseConfig, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PM_")}  # a shell with no broker configured
    env["DATABASE_URL"] = db_config.url(hide_password=False)
    return subprocess.run([sys.executable, "-m", "pm_engine", "exit", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def silent_for_an_hour(db_config: DatabaseConfig) -> None:
    """The stopped engine's heartbeat an hour old, as it is once the engine has been stopped a while."""
    import psycopg2

    conn = psycopg2.connect(**db_config.dsn_kwargs())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE pm.instance_metadata SET last_heartbeat = now() - interval '1 hour'")
    finally:
        conn.close()


def sells(sim: Sim) -> list[dict[str, object]]:  # noqa: F811 - a parameter, not the fixture
    return [o for o in sim.state()["orders"] if o["action"] == "SELL"]


def test_cli_exit_of_a_broker_layer_is_sent_once_by_the_engine_never_paper_filled(
        db_config: DatabaseConfig, broker: Sim, tmp_path: Path, engines: list[Engine]) -> None:  # noqa: F811
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75000"})
    engine = start(db_config, broker, tmp_path, engines)
    assert engine.send(entry())["outcome"] == "executed"
    wait_for(lambda: filled(db_config))

    # no engine running: the exit is decided and queued, and the CLI says it goes when an engine starts
    engine.stop()
    silent_for_an_hour(db_config)
    done = exit_cli(db_config, "GOLD_MINI", "--reason", "by hand, no engine")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("executed: closed GOLD_MINI_Long_1"), done.stdout
    assert "queued for the broker, not filled on paper" in done.stdout
    assert "no engine is running: it is sent when one starts" in done.stdout, done.stdout
    [(status, broker_id)] = rows(db_config, "SELECT status, broker_order_id FROM pm.broker_orders WHERE side = 'SELL'")
    assert (status, broker_id) == ("queued", None)  # the old CLI filled it here as paper-1
    assert sells(broker) == []

    # an engine starts: its sender sends the exit, once, and the book takes the broker's fill
    engine = start(db_config, broker, tmp_path, engines)
    wait_for(lambda: rows(db_config, "SELECT status FROM pm.broker_orders WHERE side = 'SELL'") == [("filled",)])
    [sent] = sells(broker)
    assert rows(db_config, "SELECT broker_order_id FROM pm.broker_orders WHERE side = 'SELL'") == [(sent["orderid"],)]

    # with the engine running: the CLI's exit of a new entry is sent by it, once
    assert engine.send(payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 75000, stamp(), stop=74300, atr=400,
                               er=0.8))["outcome"] == "executed"
    wait_for(lambda: rows(db_config, "SELECT count(*) FROM pm.broker_orders WHERE status = 'filled'") == [(3,)])
    done = exit_cli(db_config, "GOLD_MINI", "--layer", "Long_1", "--reason", "by hand, engine running")
    assert done.returncode == 0 and "the running engine's broker sender sends it" in done.stdout, done.stdout
    wait_for(lambda: rows(db_config, "SELECT count(*) FROM pm.broker_orders WHERE status = 'filled'") == [(4,)])
    assert len(sells(broker)) == 2 and len(broker.state()["orders"]) == 4  # each order at the broker once
    assert rows(db_config, "SELECT count(*) FROM pm.broker_orders WHERE broker_order_id LIKE 'paper-%'") == [(0,)]
    assert rows(db_config, "SELECT count(*) FROM pm.portfolio_positions WHERE status = 'open'") == [(0,)]


def test_cli_exit_of_a_paper_layer_is_filled_on_paper(db_config: DatabaseConfig) -> None:
    from pm_engine.core.engine import TradingEngine
    from pm_engine.store.gateway import Store

    store = Store(db_config)
    try:
        engine = TradingEngine(store=store, max_signal_age=None)  # the paper broker: fills in the database
        assert engine.process_payload(entry(), check_time=False).outcome.value == "executed"
    finally:
        store.close()
    done = exit_cli(db_config, "GOLD_MINI", "--reason", "by hand on paper")
    assert done.returncode == 0 and "queued for the broker" not in done.stdout, done.stdout
    assert rows(db_config, "SELECT side, status, broker_order_id LIKE 'paper-%' FROM pm.broker_orders ORDER BY side") \
        == [("BUY", "filled", True), ("SELL", "filled", True)]
