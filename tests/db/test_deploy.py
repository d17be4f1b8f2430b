"""``db-deploy``: idempotent, refuses edited migrations, all-or-nothing, usable from the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg2
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.ops.cluster import LocalCluster
from pm_engine.store.deploy import DB_DIR, deploy
from pm_engine.store.errors import DeployError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def empty_db(pg_cluster: LocalCluster) -> DatabaseConfig:
    name = "deploy_" + uuid.uuid4().hex[:8]
    pg_cluster.create_database(name)
    return pg_cluster.config(name)


def psql(cluster: LocalCluster, config: DatabaseConfig, command: str) -> str:
    assert cluster.bindir is not None
    return subprocess.run([str(cluster.bindir / "psql"), "-X", "-h", config.host, "-p", str(config.port), "-U",
                           config.user, "-d", config.database, "-c", command],
                          capture_output=True, text=True, check=True).stdout


def test_deploy_creates_everything_then_does_nothing(empty_db: DatabaseConfig, pg_cluster: LocalCluster) -> None:
    first = deploy(empty_db)
    assert first.applied_migrations == sorted(p.name for p in (DB_DIR / "migrations").glob("*.sql"))
    assert len(first.applied_functions) == len(list((DB_DIR / "functions").glob("*.sql")))
    second = deploy(empty_db)
    assert not second.changed
    assert second.summary().startswith("nothing to do")
    tables = psql(pg_cluster, empty_db, r"\dt pm.*")
    for table in ("portfolio_positions", "portfolio_state", "pyramiding_state", "signal_log", "instance_metadata"):
        assert table in tables
    indexes = psql(pg_cluster, empty_db, r"\di pm.*")
    for index in ("portfolio_positions_instrument_status_idx", "portfolio_positions_rollover_idx",
                  "signal_log_fingerprint_key", "signal_log_processed_at_idx", "instance_metadata_heartbeat_idx"):
        assert index in indexes


def test_edited_migration_is_refused(empty_db: DatabaseConfig, tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    shutil.copytree(DB_DIR, db_dir)
    deploy(empty_db, db_dir)
    migration = db_dir / "migrations" / "001_initial_schema.sql"
    migration.write_text(migration.read_text() + "\n-- an edit\n")
    with pytest.raises(DeployError, match="001_initial_schema.sql was edited after it was applied"):
        deploy(empty_db, db_dir)


def test_changed_function_file_is_redeployed_alone(empty_db: DatabaseConfig, tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    shutil.copytree(DB_DIR, db_dir)
    deploy(empty_db, db_dir)
    functions = db_dir / "functions" / "40_signal_log.sql"
    functions.write_text(functions.read_text() + "\n-- a comment\n")
    report = deploy(empty_db, db_dir)
    assert report.applied_functions == ["40_signal_log.sql"] and not report.applied_migrations


def test_failed_deploy_leaves_nothing(empty_db: DatabaseConfig, tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    shutil.copytree(DB_DIR, db_dir)
    (db_dir / "functions" / "99_broken.sql").write_text("CREATE OR REPLACE FUNCTION pm.broken() RETURNS int AS 'x';")
    with pytest.raises(DeployError, match="99_broken.sql"):
        deploy(empty_db, db_dir)
    conn = psycopg2.connect(**empty_db.dsn_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('pm.portfolio_positions'), to_regclass('pm.schema_migrations')")
            assert cur.fetchone() == (None, None)
    finally:
        conn.close()


def test_badly_named_migration_is_an_error(empty_db: DatabaseConfig, tmp_path: Path) -> None:
    db_dir = tmp_path / "db"
    shutil.copytree(DB_DIR, db_dir)
    (db_dir / "migrations" / "2_Oops.sql").write_text("SELECT 1;")
    with pytest.raises(DeployError, match="2_Oops.sql is not named"):
        deploy(empty_db, db_dir)


def test_unreachable_database_is_a_clear_error() -> None:
    config = DatabaseConfig(port=1, database="nowhere", connect_timeout=1)
    with pytest.raises(DeployError, match="cannot connect to postgresql://postgres@127.0.0.1:1/nowhere"):
        deploy(config)


@pytest.mark.parametrize("command", [[str(ROOT / ".venv" / "bin" / "pm-engine")], [sys.executable, "-m", "pm_engine"]],
                         ids=["console-script", "python-m"])
def test_cli_db_deploy(empty_db: DatabaseConfig, command: list[str]) -> None:
    env = {**os.environ, "DATABASE_URL": empty_db.url()}
    first = subprocess.run([*command, "db-deploy"], env=env, capture_output=True, text=True, check=True)
    assert "applied migrations: 001_initial_schema.sql, 002_broker_orders.sql" in first.stdout
    second = subprocess.run([*command, "db-deploy"], env=env, capture_output=True, text=True, check=True)
    assert "nothing to do" in second.stdout
    bad = subprocess.run([*command, "db-deploy"], env={**env, "DATABASE_URL": "mysql://x/y"},
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "DATABASE_URL must start with postgresql://" in bad.stderr
