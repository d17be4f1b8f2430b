"""`pip install .` (not editable) into a new virtual environment gives a pm-engine that deploys and runs.

The wheel must declare what pm-engine imports (pyproject's dependencies) and carry the SQL of the
top-level ``db/`` (setup.py maps it to ``pm_engine/schema``): the installed copy is run from a folder
outside the source tree, so nothing of the checkout can stand in for what the wheel lacks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg2
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.ops.cluster import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that would point the child at the checkout or its settings."""
    drop = ("PYTHONPATH", "DATABASE_URL", "PM_WEBHOOK_SECRET", "PM_READ_TOKEN", "VIRTUAL_ENV", "PM_DB_CONFIG")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("COV_CORE")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with the built wheel and its declared dependencies (the pinned versions, as constraints)."""
    where = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(where / "dist"), str(ROOT)], check=True, cwd=where, env=_clean_env(), timeout=300)
    wheel = next((where / "dist").glob("pm_engine-*.whl"))
    venv = where / "venv"
    subprocess.run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", str(venv)], check=True,
                   timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    "-c", str(ROOT / "requirements.txt"), str(wheel)], check=True, cwd=where, env=_clean_env(),
                   timeout=900)
    return venv


def test_the_wheel_carries_the_sql_and_declares_its_dependencies(installed: Path) -> None:
    shown = subprocess.run([str(installed / "bin" / "python"), "-c",
                            "import pm_engine, pm_engine.store.deploy as d; print(pm_engine.__file__); "
                            "print(d.DB_DIR); print(len(d.migration_files()), len(d.function_files()))"],
                           capture_output=True, text=True, check=True, cwd=installed, env=_clean_env())
    package, db_dir, counts = shown.stdout.split("\n")[:3]
    assert str(ROOT) not in package and package.startswith(str(installed))  # the installed copy, not the tree
    assert db_dir.endswith("pm_engine/schema") and db_dir.startswith(str(installed))
    assert counts.split() == [str(len(list((ROOT / "db" / "migrations").glob("*.sql")))),
                              str(len(list((ROOT / "db" / "functions").glob("*.sql"))))]
    check = subprocess.run([str(installed / "bin" / "pip"), "check"], capture_output=True, text=True,
                           env=_clean_env())
    assert check.returncode == 0, check.stdout


def test_the_installed_engine_deploys_a_new_database_and_runs(installed: Path, pg2: Any, db_config: DatabaseConfig,
                                                              tmp_path: Path) -> None:
    with pg2.cursor() as cur:
        cur.execute("CREATE DATABASE pm_from_wheel")
    url = f"postgresql://{db_config.user}@{db_config.host}:{db_config.port}/pm_from_wheel"
    deployed = subprocess.run([str(installed / "bin" / "pm-engine"), "db-deploy"], capture_output=True, text=True,
                              cwd=tmp_path, env=_clean_env(DATABASE_URL=url), timeout=120)
    assert deployed.returncode == 0, deployed.stderr
    assert "applied migrations" in deployed.stdout
    conn = psycopg2.connect(host=db_config.host, port=db_config.port, user=db_config.user, dbname="pm_from_wheel")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM pm.schema_migrations WHERE kind = 'migration'")
            assert cur.fetchone()[0] == len(list((ROOT / "db" / "migrations").glob("*.sql")))
    finally:
        conn.close()

    port = free_port()
    proc = subprocess.Popen([str(installed / "bin" / "pm-engine"), "run", "--port", str(port)], cwd=tmp_path,
                            env=_clean_env(PM_VAR_DIR=str(tmp_path / "var"), PM_EMBEDDED="installed"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, answered, lines = time.monotonic() + 120, None, []
        assert proc.stdout is not None
        while time.monotonic() < deadline and answered is None:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            while "serving http" in line and time.monotonic() < deadline and answered is None:
                try:
                    answered = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                except httpx.TransportError:
                    time.sleep(0.1)
        assert answered is not None and answered.status_code == 200, "".join(lines)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0
