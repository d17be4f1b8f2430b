"""Every db/tests/*.sql pgTAP file, each assertion reported as its own pytest subtest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pm_engine.ops.cluster import LocalCluster
from tests.conftest import PGTAP_STATS
from tests.pgtap import run_pgtap

PGTAP_DIR = Path(__file__).resolve().parents[2] / "db" / "tests"
PGTAP_FILES = sorted(PGTAP_DIR.glob("*.sql"))


def test_there_are_pgtap_files() -> None:
    assert len(PGTAP_FILES) >= 6, PGTAP_FILES


@pytest.mark.parametrize("sql_file", PGTAP_FILES, ids=[p.name for p in PGTAP_FILES])
def test_pgtap(sql_file: Path, postgresql: Any, pg_cluster: LocalCluster, subtests: Any,
               request: pytest.FixtureRequest) -> None:
    assert pg_cluster.bindir is not None
    info = postgresql.info
    result = run_pgtap(sql_file, pg_cluster.bindir / "psql", info.host, info.port, info.user, info.dbname)
    stats = request.config.stash[PGTAP_STATS]
    stats["files"] += 1
    stats["assertions"] += len(result.assertions)
    stats["failed"] += sum(not a.ok for a in result.assertions)
    for assertion in result.assertions:
        with subtests.test(msg=f"{sql_file.name} #{assertion.number} {assertion.description}"):
            assert assertion.ok, "\n".join(assertion.diagnostics) or "not ok"
    assert not result.problems, f"{sql_file.name}: " + "; ".join(result.problems)
