"""Issue 28 item 5: labels that said the wrong thing, checked through the real CLI, the real engine process and
the database: a cleanly stopped instance, a lock with no end, the default trading mode, the rollover plan's
lots and quantities."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from typing import Any

from pm_engine.config import DatabaseConfig
from pm_engine.core.engine import TradingEngine
from pm_engine.store.gateway import Store
from pm_engine.tools.children import EngineProcess
from tests.helpers import payload, rows


def cli(db_config: DatabaseConfig, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_config.url(hide_password=False)}
    return subprocess.run([sys.executable, "-m", "pm_engine", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_a_cleanly_stopped_instance_is_stopped_not_crashed(db_config: DatabaseConfig) -> None:
    server = EngineProcess(db_config, "labels-secret-0123456789abcdef").start()
    try:
        assert server.wait_ready(30)
    finally:
        server.stop()  # SIGTERM: a clean shutdown
    assert rows(db_config, "SELECT status, is_leader FROM pm.instance_metadata") == [("stopped", False)]
    # the sweep (a leader's job) never turns it into a crash, and the dashboard's list does not call it stale
    assert rows(db_config, "SELECT pm.sweep_stale_instances(interval '1 microsecond')") == [(0,)]
    assert rows(db_config, "SELECT status, stale FROM pm.list_instances(interval '1 microsecond')") == [
        ("stopped", False)]


def test_a_lock_with_no_end_and_the_default_mode_read_as_a_user_would(db_config: DatabaseConfig, pg2: Any) -> None:
    with pg2.cursor() as cur:
        cur.execute("SELECT pm.lock_instrument('GOLD_MINI', 'infinity', 'book and broker differ', 'reconcile')")
    done = cli(db_config, "mode")
    assert done.returncode == 0, done.stderr
    assert "trading mode: active, the default (never changed)" in done.stdout
    assert "migration 004" not in done.stdout
    assert "GOLD_MINI locked until unlocked: book and broker differ" in done.stdout
    assert "9999" not in done.stdout
    paused = cli(db_config, "pause", "--reason", "lunch")
    assert paused.returncode == 0 and "set by cli:" in paused.stdout  # a real change still names who


def test_rollover_dry_run_prints_each_layer_s_lots_and_quantities(db_config: DatabaseConfig) -> None:
    store = Store(db_config)
    try:
        engine = TradingEngine(store=store, max_signal_age=None)
        now = datetime.now(timezone.utc).isoformat()  # the contract held today, not one already expired
        result = engine.process_payload(payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 75000, now,
                                                stop=74300, atr=400, er=0.8), check_time=False)
        assert result.outcome.value == "executed"
        lots = result.details["lots"]
    finally:
        store.close()
    done = cli(db_config, "rollover", "--all", "--force", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "would roll GOLD_MINI" in done.stdout
    assert f"GOLD_MINI_Long_1: close {lots} lots (" in done.stdout and " units of lot " in done.stdout
    assert f"open {lots} lots" in done.stdout, done.stdout
    assert rows(db_config, "SELECT count(*) FROM pm.rolls") == [(0,)]  # and changed nothing
