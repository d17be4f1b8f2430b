"""Shared fixtures: one throw-away PostgreSQL cluster per test session, handed to pytest-postgresql.

The cluster is started by pm_engine.cluster (as the ``postgres`` user when we are root, since
initdb/postgres refuse root) on a free port; pytest-postgresql's ``postgresql_noproc`` fixture
then builds a template database with the schema deployed and pgTAP installed, and its
``postgresql`` client fixture clones a fresh database from it for every test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from pytest_postgresql import factories

from pm_engine.config import DatabaseConfig
from pm_engine.ops.cluster import LocalCluster
from pm_engine.store.deploy import deploy
from pm_engine.tools.clusters import temporary_cluster

PGTAP_STATS = pytest.StashKey[dict[str, int]]()


def load_schema(host: str, port: int, user: str, dbname: str, password: Any = None, **_: Any) -> None:
    """pytest-postgresql loader: deploy pm-engine and install pgTAP into the template database."""
    config = DatabaseConfig(host=host, port=int(port), database=dbname, user=user, password=password)
    deploy(config)
    conn = psycopg2.connect(**config.dsn_kwargs())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pgtap")
    finally:
        conn.close()


pm_template = factories.postgresql_noproc(load=[load_schema])


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[LocalCluster]:
    """The session's private cluster (fsync off: test data is thrown away)."""
    cluster = temporary_cluster(fsync=False)
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_server(pg_cluster: LocalCluster, request: pytest.FixtureRequest) -> Any:
    """Point pytest-postgresql at the private cluster, then build the deployed template database."""
    option = request.config.option
    option.postgresql_host = "127.0.0.1"
    option.postgresql_port = pg_cluster.port
    option.postgresql_user = "postgres"
    option.postgresql_dbname = "pm_test"
    return request.getfixturevalue("pm_template")


postgresql = factories.postgresql("pg_server")


@pytest.fixture
def db_config(postgresql: Any) -> DatabaseConfig:
    """Connection settings of this test's fresh, deployed database."""
    info = postgresql.info
    return DatabaseConfig(host=info.host, port=info.port, database=info.dbname, user=info.user, maxconn=20)


@pytest.fixture
def pg2(db_config: DatabaseConfig) -> Iterator[Any]:
    """A psycopg2 connection (autocommit) to this test's database, as the engine connects."""
    conn = psycopg2.connect(**db_config.dsn_kwargs())
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[PGTAP_STATS] = {"files": 0, "assertions": 0, "failed": 0}


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    stats = config.stash.get(PGTAP_STATS, None)
    if stats and stats["files"]:
        terminalreporter.write_line(
            f"pgTAP: {stats['assertions']} assertions in {stats['files']} files, "
            f"{stats['assertions'] - stats['failed']} passed, {stats['failed']} failed")
