"""``db-deploy``: apply pending migrations, then the function files, idempotently.

Migrations (``db/migrations/NNN_name.sql``) run once each, in order, and are recorded with a
SHA-256 checksum in ``pm.schema_migrations``; an applied migration whose file has since changed is
refused (write a new migration instead). Function files (``db/functions/*.sql``, all
``CREATE OR REPLACE``) are recorded the same way and re-run only when their text changed, so a
second deploy changes nothing and says so. The whole deploy is one transaction under an advisory
lock: two deploys at once serialize, and a failing file leaves nothing half-applied.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import psycopg2
import psycopg2.errors

from pm_engine.store.connection import DatabaseConfig
from pm_engine.store.errors import DeployError
from pm_engine.store.queries import QUERIES


def _db_dir() -> Path:
    """Where the SQL is: inside the installed package (a wheel carries ``db/`` as ``pm_engine/schema``,
    see setup.py), else the source tree's top-level ``db/`` (an editable install, a checkout)."""
    package = Path(__file__).resolve().parents[1]
    shipped = package / "schema"
    return shipped if (shipped / "migrations").is_dir() else package.parent / "db"


DB_DIR = _db_dir()
MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


@dataclass
class DeployReport:
    """What a deploy did."""

    applied_migrations: list[str] = field(default_factory=list)
    applied_functions: list[str] = field(default_factory=list)
    unchanged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.applied_migrations or self.applied_functions)

    def summary(self) -> str:
        if not self.changed:
            return f"nothing to do: database is up to date ({self.unchanged} files unchanged)"
        parts = []
        if self.applied_migrations:
            parts.append(f"applied migrations: {', '.join(self.applied_migrations)}")
        if self.applied_functions:
            parts.append(f"deployed functions: {', '.join(self.applied_functions)}")
        return "; ".join(parts)


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def migration_files(db_dir: Path = DB_DIR) -> list[Path]:
    """Migration files in order; a badly named file is an error, not silently skipped."""
    files = sorted((db_dir / "migrations").glob("*.sql"))
    for path in files:
        if not MIGRATION_NAME.match(path.name):
            raise DeployError(f"migration file {path.name} is not named NNN_lowercase_name.sql")
    return files


def function_files(db_dir: Path = DB_DIR) -> list[Path]:
    return sorted((db_dir / "functions").glob("*.sql"))


def deploy_connection(conn: Any, db_dir: Path = DB_DIR) -> DeployReport:
    """Deploy through an open psycopg2 connection, in one transaction (committed here)."""
    report = DeployReport()
    try:
        with conn.cursor() as cur:
            cur.execute(QUERIES["deploy_lock"])
            cur.execute(QUERIES["deploy_bootstrap"])
            cur.execute(QUERIES["deploy_applied"])
            applied = {(kind, name): checksum for kind, name, checksum in cur.fetchall()}
            for kind, files in (("migration", migration_files(db_dir)), ("functions", function_files(db_dir))):
                for path in files:
                    text = path.read_text()
                    checksum = _checksum(text)
                    known = applied.get((kind, path.name))
                    if known == checksum:
                        report.unchanged += 1
                        continue
                    if known is not None and kind == "migration":
                        raise DeployError(
                            f"migration {path.name} was edited after it was applied (checksum {known[:12]} in "
                            f"the database, {checksum[:12]} on disk); restore it and add a new migration instead")
                    try:
                        cur.execute(text)
                    except psycopg2.errors.InsufficientPrivilege as exc:
                        raise _not_the_owner(conn, exc, path.name) from None
                    except psycopg2.Error as exc:
                        raise DeployError(f"{path.name}: {str(exc).strip()}") from exc
                    cur.execute(QUERIES["deploy_record"], (kind, path.name, checksum))
                    (report.applied_migrations if kind == "migration" else report.applied_functions).append(path.name)
        conn.commit()
    except psycopg2.errors.InsufficientPrivilege as exc:  # the bookkeeping before the files (the app role's URL)
        conn.rollback()
        raise _not_the_owner(conn, exc, None) from None
    except BaseException:
        conn.rollback()
        raise
    return report


def _not_the_owner(conn: Any, exc: Exception, where: Optional[str]) -> DeployError:
    """The one-line answer to a deploy by a role that may not change the schema (the app role, a read-only role)."""
    user = getattr(getattr(conn, "info", None), "user", None) or "this role"
    detail = (str(exc).strip().splitlines() or ["permission denied"])[0]
    return DeployError(f"deploy as the owner: {user} may not change the schema ({(where + ': ') if where else ''}"
                       f"{detail}); run db-deploy with the owner's URL (DATABASE_URL=postgresql://OWNER@host/db), "
                       "not the app role's; see DATABASE_SETUP.md")


def deploy(config: DatabaseConfig, db_dir: Path = DB_DIR) -> DeployReport:
    """Connect with the given settings and deploy."""
    try:
        conn = psycopg2.connect(**config.dsn_kwargs())
    except psycopg2.OperationalError as exc:
        raise DeployError(f"cannot connect to {config.url()}: {str(exc).strip()}") from exc
    try:
        return deploy_connection(conn, db_dir)
    finally:
        conn.close()


def schema_version(conn: Any) -> Optional[str]:
    """The newest applied migration's name, or None before the first deploy."""
    with conn.cursor() as cur:
        cur.execute(QUERIES["schema_version"])
        row = cur.fetchone()
    return row[0] if row else None
