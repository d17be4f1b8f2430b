"""tests/unit needs no PostgreSQL: a unit test that asks for a database fixture is refused at collection, so the
quick loop (``make test-fast``) stays quick and a database test is put where it belongs (tests/db)."""

from __future__ import annotations

import pytest

DATABASE_FIXTURES = {"postgresql", "pg_server", "pg_cluster", "pm_template", "db_config", "pg2"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = __file__.rsplit("/", 1)[0]
    wrong = [item.nodeid for item in items if str(item.path).startswith(here + "/")
             and DATABASE_FIXTURES & set(getattr(item, "fixturenames", ()))]
    if wrong:
        raise pytest.UsageError(f"tests/unit must not start PostgreSQL (move these to tests/db): {wrong}")
