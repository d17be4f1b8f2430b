"""Issue 28 item 4: which database a command reads, said first on stderr; PM_DB_CONFIG and the default path;
broker settings checked only by commands that talk to the broker; db-deploy as the app role; the embedded
cluster's folder. Every check runs the real CLI as a child process."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from pm_engine.config import DatabaseConfig

PASSWORD = "never-shown-" + secrets.token_hex(6)


def run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("DATABASE_URL", "PM_DB_CONFIG", "PM_VAR_DIR")
            and not k.startswith(("PM_OPENALGO", "PM_BROKER"))}
    return subprocess.run([sys.executable, "-m", "pm_engine", *args], env={**base, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def config_file(path: Path, db_config: DatabaseConfig) -> Path:
    # the test cluster trusts local connections: the password is never needed, and must never be shown
    path.write_text(json.dumps({"local": {"host": db_config.host, "port": db_config.port,
                                          "database": db_config.database, "user": db_config.user,
                                          "password": PASSWORD}}))
    return path


def test_pm_db_config_is_read_named_first_and_needs_no_broker_secrets(db_config: DatabaseConfig,
                                                                      tmp_path: Path) -> None:
    elsewhere = config_file(tmp_path / "real.json", db_config)
    where = f"{db_config.host}:{db_config.port}/{db_config.database}"
    # a broker-backed portfolio's settings, without the broker's URL and key: reads of the book still run
    for command in (["status"], ["capital"], ["orders"]):
        done = run(tmp_path, *command, PM_DB_CONFIG=str(elsewhere), PM_BROKER="openalgo")
        assert done.returncode == 0, done.stderr
        first = done.stderr.splitlines()[0]
        assert where in first and "PM_DB_CONFIG" in first and str(elsewhere) in first, first
        assert PASSWORD not in done.stderr + done.stdout
    # the command that talks to the broker still says what it lacks, in one line
    refused = run(tmp_path, "reconcile", PM_DB_CONFIG=str(elsewhere), PM_BROKER="openalgo")
    assert refused.returncode == 2 and "needs a URL (PM_OPENALGO_URL" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_default_path_and_the_built_in_defaults_are_named(db_config: DatabaseConfig, tmp_path: Path) -> None:
    config_file(tmp_path / "database_config.json", db_config)
    done = run(tmp_path, "status", "--json")
    assert done.returncode == 0, done.stderr
    first = done.stderr.splitlines()[0]
    assert f"{db_config.port}/{db_config.database}" in first and "./database_config.json" in first, first
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = run(empty, "status")  # nothing configured here, no ./var: the defaults, said so
    assert nothing.stderr.splitlines()[0].startswith("pm-engine status: database 127.0.0.1:5432/pm_engine")
    assert "built-in defaults" in nothing.stderr.splitlines()[0]
    assert not (empty / "var").exists()


def test_db_deploy_as_the_app_role_says_deploy_as_the_owner(db_config: DatabaseConfig, pg2: Any,
                                                            tmp_path: Path) -> None:
    role = f"pm_app_{secrets.token_hex(4)}"
    with pg2.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN")
        cur.execute("SELECT pm.grant_app_role(%s)", (role,))
        cur.execute("DELETE FROM pm.schema_migrations WHERE name = '95_statistics.sql'")  # an upgrade is pending
    url = f"postgresql://{role}@{db_config.host}:{db_config.port}/{db_config.database}"
    done = run(tmp_path, "db-deploy", DATABASE_URL=url)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2 and "DATABASE_URL" in lines[0], done.stderr  # the database, then the one-line answer
    assert lines[1].startswith("pm-engine db-deploy: error: deploy as the owner: " + role), lines[1]
    assert "Traceback" not in done.stderr and "psycopg2" not in done.stderr


def test_the_embedded_folder_is_the_current_directory_s_var_or_pm_var_dir(tmp_path: Path) -> None:
    show = "from pm_engine.ops.embedded import var_dir; print(var_dir())"
    base = {k: v for k, v in os.environ.items() if k != "PM_VAR_DIR"}
    here = subprocess.run([sys.executable, "-c", show], cwd=tmp_path, env=base, capture_output=True, text=True,
                          timeout=30, check=True)
    assert here.stdout.strip() == str(tmp_path / "var")  # not the package's location
    chosen = subprocess.run([sys.executable, "-c", show], cwd=tmp_path, env={**base, "PM_VAR_DIR": "/srv/pm"},
                            capture_output=True, text=True, timeout=30, check=True)
    assert chosen.stdout.strip() == "/srv/pm"
