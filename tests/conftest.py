"""Shared fixtures: one throw-away PostgreSQL cluster per test session, handed to pytest-postgresql.

The cluster is started by pm_engine.cluster (as the ``postgres`` user when we are root, since
initdb/postgres refuse root) on a free port; pytest-postgresql's ``postgresql_noproc`` fixture
then builds a template database with the schema deployed and pgTAP installed, and its
``postgresql`` client fixture clones a fresh database from it for every test.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from pytest_postgresql import factories

from pm_engine.config import DatabaseConfig
from pm_engine.ops.cluster import LocalCluster, temporary_cluster
from pm_engine.store.deploy import deploy

PGTAP_STATS = pytest.StashKey[dict[str, int]]()
OWN_BASETEMP = pytest.StashKey[str]()
FOLDER_MARKERS = ("unit", "db", "integration", "browser", "ha", "layout")


def load_schema(host: str, port: int, user: str, dbname: str, password: Any = None, **_: Any) -> None:
    """pytest-postgresql loader: deploy pm-engine and install pgTAP into the template database."""
    config = DatabaseConfig(host=host, port=int(port), database=dbname, user=user, password=password)
    deploy(config)
    conn = psycopg2.connect(**config.dsn_kwargs())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("CREATE EXTENSION IF NOT EXISTS pgtap")
            # each test's database is a copy of this template (another OID): the restore guard would take it for
            # a restored database, so the template records none and each copy records itself at its first check
            cur.execute("DELETE FROM pm.database_identity")
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


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Count pgTAP results; give the run a private temporary root.

    A private ``--basetemp`` (unless one is given) keeps parallel workers apart: with the default root
    (/tmp/pytest-of-root) each xdist worker makes that folder private again when it first asks for a
    temporary path, which takes away the search permission another worker's cluster (run as the
    ``postgres`` user) needs on it. Workers get their own folder below the controller's.
    """
    config.stash[PGTAP_STATS] = {"files": 0, "assertions": 0, "failed": 0}
    if config.option.basetemp is None and not hasattr(config, "workerinput"):
        config.option.basetemp = tempfile.mkdtemp(prefix="pm-engine-tests-")
        config.stash[OWN_BASETEMP] = config.option.basetemp


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test is marked by what it needs, its folder: unit (nothing), db (a PostgreSQL), integration (real
    child processes and HTTP), browser (Chromium), ha (pg_auto_failover), layout (the source tree): so
    ``-m "not browser"`` and the like pick by need."""
    for item in items:
        folder = item.path.parent.name
        if folder in FOLDER_MARKERS:
            item.add_marker(folder)


def pytest_unconfigure(config: pytest.Config) -> None:
    own = config.stash.get(OWN_BASETEMP, None)
    if own:
        shutil.rmtree(own, ignore_errors=True)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A worker hands its pgTAP counts to the controller (pytest-xdist's workeroutput)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["pgtap"] = dict(session.config.stash[PGTAP_STATS])


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """The controller adds up the pgTAP counts of every worker."""
    counts = getattr(node, "workeroutput", {}).get("pgtap")
    if counts:
        total = node.config.stash[PGTAP_STATS]
        for key, value in counts.items():
            total[key] += value


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    stats = config.stash.get(PGTAP_STATS, None)
    if stats and stats["files"]:
        terminalreporter.write_line(
            f"pgTAP: {stats['assertions']} assertions in {stats['files']} files, "
            f"{stats['assertions'] - stats['failed']} passed, {stats['failed']} failed")


@pytest.fixture
def hook() -> Iterator[Any]:
    """A local JSON notification receiver (tests/receivers.py), stopped after the test."""
    from tests.receivers import JsonReceiver

    receiver = JsonReceiver().start()
    yield receiver
    receiver.stop()
