"""The least-privilege role of docs/security.md runs the whole engine; it cannot write a row except through
the functions, nor drop, truncate or alter anything."""

from __future__ import annotations

import secrets

import psycopg2
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.engine import TradingEngine
from pm_engine.ops.jobs import BackgroundJobs, JobSettings
from pm_engine.store.gateway import Store
from tests.helpers import payload


def test_app_role_runs_the_engine_and_cannot_drop_tables(db_config: DatabaseConfig, pg2: object) -> None:
    role = f"pm_app_{secrets.token_hex(4)}"
    with pg2.cursor() as cur:  # type: ignore[attr-defined]
        cur.execute(f"CREATE ROLE {role} LOGIN")
        cur.execute("SELECT pm.grant_app_role(%s)", (role,))
    app = DatabaseConfig(host=db_config.host, port=db_config.port, database=db_config.database, user=role)
    store = Store(app)
    try:
        store.instances.register_instance("inst-app", "host", 8080, "test")
        engine = TradingEngine(store=store, instance_id="inst-app")
        entry = payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30", stop=51650,
                        atr=350, er=0.85)
        assert engine.process_payload(entry, check_time=False).outcome.value == "executed"
        assert engine.update_stops("BANK_NIFTY", 53000, 350) == ["BANK_NIFTY_Long_1"]  # type: ignore[arg-type]
        exit_ = payload("EXIT", "BANK_NIFTY", "ALL", 53500, "2026-10-30T11:30:00+05:30", reason="SIGNAL")
        assert engine.process_payload(exit_, check_time=False).outcome.value == "executed"
        jobs = BackgroundJobs(engine, JobSettings(heartbeat_s=60))
        jobs.tick()
        assert jobs.is_leader and jobs.runs["cleanup"] == 1 and jobs.runs["sweep"] == 1
        jobs.stop()
        assert store.schema_version() is not None and store.signals.signal_outcomes() == {"executed": 2}
        assert store.history.trade_stats()["trades"] == 1  # history reads work for the role
        assert len(store.history.equity_curve()) == 4
        conn = psycopg2.connect(**app.dsn_kwargs())
        try:
            for statement in ("DROP TABLE pm.signal_log", "TRUNCATE pm.portfolio_positions",
                              "ALTER TABLE pm.portfolio_state DROP CONSTRAINT portfolio_state_single_row_check",
                              "DROP FUNCTION pm.apply_signal", "UPDATE pm.portfolio_state SET closed_equity = 0",
                              "DELETE FROM pm.signal_log", "UPDATE pm.portfolio_positions SET lots = 99",
                              "SELECT pm.grant_app_role('postgres')", "UPDATE pm.position_history SET version = 1",
                              "DELETE FROM pm.portfolio_history", "TRUNCATE pm.pyramiding_history",
                              "INSERT INTO pm.portfolio_history (recorded_at, version, closed_equity, unrealized_pnl, "
                              "open_equity, blended_equity, row_data) VALUES (now(), 1, 0, 0, 0, 0, '{}')"):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    with conn.cursor() as cur:
                        cur.execute(statement)
                conn.rollback()
        finally:
            conn.close()
    finally:
        store.close()
