"""The executor: the one way Python sends a named query (pool, retry, SQLSTATE mapping, round trips).

Every facade of the store (``store.book``, ``store.signals``, ``store.orders`` …) sends its queries
through these public calls, by name (``pm_engine/store/queries.sql``), with values as parameters:
``run(name, *args)`` answers the rows as dicts, ``scalar`` the first column of the first row,
``first`` the first row. Nothing outside this module touches the pool or a cursor directly,
except ``transaction()`` (a RealDictCursor in BEGIN … COMMIT, for tests and tools) and
``in_transaction`` (two statements on one connection: the signal commit's retry).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional, TypeVar

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from pm_engine.core.errors import DatabaseUnavailableError
from pm_engine.store.codec import loads
from pm_engine.store.connection import DatabaseConfig
from pm_engine.store.errors import error_for
from pm_engine.store.queries import QUERIES

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE = {"40001", "40P01"}  # serialization failure, deadlock
READ_ONLY = "25006"  # read_only_sql_transaction: this connection's node is no longer the primary
CONNECT_ATTEMPTS = 3
TRANSACTION_ATTEMPTS = 3
RETRY_BUDGET_S = 1.0  # how long one call may spend retrying lost connections before answering "unavailable"


def _mapped(exc: psycopg2.Error) -> Exception:
    """The typed exception of a database error (by its SQLSTATE; PMnnn codes name the refusal)."""
    return error_for(exc.pgcode, (exc.diag.message_primary or str(exc)).strip())


class Step:
    """A cursor inside an open transaction: the second and later statements of ``in_transaction``."""

    def __init__(self, executor: "Executor", cur: Any) -> None:
        self._executor, self._cur = executor, cur

    def send(self, name: str, *args: Any) -> None:
        """Send a named statement on this transaction's connection (one round trip)."""
        self._executor.round_trips += 1
        self._cur.execute(QUERIES[name], args)

    def rollback(self) -> None:
        """End the transaction writing nothing (not counted: it rides on the answer just read)."""
        self._cur.execute(QUERIES["rollback"])


class Executor:
    """Pooled, retrying execution of named queries; SQLSTATEs become the typed errors of core.errors."""

    def __init__(self, config: DatabaseConfig, connect_backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep, connect_attempts: int = CONNECT_ATTEMPTS) -> None:
        self.config = config
        self._sleep = sleep
        self._backoff = connect_backoff
        self._attempts = connect_attempts
        self.round_trips = 0  # statements sent (the bench and the tests count them per signal)
        self.pool = self._connect_pool()

    # -- connections ---------------------------------------------------------------------------
    def _connect_pool(self) -> psycopg2.pool.ThreadedConnectionPool:
        """Open the pool: 3 attempts with exponential backoff (1, 2 s by default), then a clear error."""
        last: Optional[Exception] = None
        for attempt in range(self._attempts):
            try:
                return psycopg2.pool.ThreadedConnectionPool(self.config.minconn, self.config.maxconn,
                                                            **self.config.dsn_kwargs())
            except psycopg2.OperationalError as exc:
                last = exc
                if attempt < self._attempts - 1:
                    delay = self._backoff * 2 ** attempt
                    log.warning("database %s unreachable (attempt %d), retrying in %.1fs", self.config.url(),
                                attempt + 1, delay)
                    self._sleep(delay)
        raise DatabaseUnavailableError(f"cannot connect to {self.config.url()} after {self._attempts} attempt(s): "
                                       f"{str(last).strip()}")

    def close(self) -> None:
        self.pool.closeall()

    def pool_in_use(self) -> int:
        """Connections handed out by the pool right now."""
        return len(getattr(self.pool, "_used", {}))

    @contextmanager
    def get_connection(self) -> Iterator[Any]:
        """A pooled connection; a broken one is discarded instead of returned to the pool."""
        try:
            conn = self.pool.getconn()
        except (psycopg2.OperationalError, psycopg2.pool.PoolError) as exc:
            raise DatabaseUnavailableError(f"no database connection: {str(exc).strip()}") from exc
        broken = False
        try:
            if conn.closed:
                raise psycopg2.InterfaceError("connection already closed")
            psycopg2.extras.register_default_jsonb(conn, loads=loads)
            yield conn
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            broken = True
            raise
        except psycopg2.Error as exc:
            # a node that was primary when this connection was made and is a standby now (a failover):
            # drop the connection, so the next one is made to whichever node is primary
            broken = exc.pgcode == READ_ONLY
            raise
        finally:
            if not broken and conn.closed == 0 and conn.status != psycopg2.extensions.STATUS_READY:
                conn.rollback()
            self.pool.putconn(conn, close=broken or bool(conn.closed))

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        """A cursor inside BEGIN … COMMIT (rolled back on any error)."""
        with self.get_connection() as conn:
            conn.autocommit = False
            try:
                with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                    yield cur
                conn.commit()
            except BaseException:
                if not conn.closed:
                    conn.rollback()
                raise

    # -- named queries -------------------------------------------------------------------------
    def _retrying(self, work: Callable[[Any], T]) -> T:
        """Run ``work(cursor)`` in autocommit (one statement = one transaction), retrying what is safe.

        A dropped connection is discarded and the call retried on another, for at most
        ``RETRY_BUDGET_S`` in all (so a webhook answers 503 well inside TradingView's 3 s when the
        database is down, and a restarted database's dead pooled connections are flushed in one
        call). Serialization failures and deadlocks are retried up to 3 times with backoff; any
        other database error is mapped to its typed exception. Every statement sent through
        ``run`` is idempotent or version-checked, which is what makes the retry safe.
        """
        started = time.monotonic()
        failures = 0
        waited = 0.0
        for attempt in range(self.config.maxconn + TRANSACTION_ATTEMPTS):
            try:
                with self.get_connection() as conn:
                    conn.autocommit = True
                    with conn.cursor() as cur:  # plain tuples, zipped into dicts: ~3x faster than RealDictCursor
                        return work(cur)
            except (psycopg2.OperationalError, psycopg2.InterfaceError, DatabaseUnavailableError) as exc:
                pause = 0.05 * 2 ** (failures + 1) if isinstance(exc, DatabaseUnavailableError) else 0.0
                if max(time.monotonic() - started, waited) + pause > RETRY_BUDGET_S:
                    raise DatabaseUnavailableError(f"database connection lost: {str(exc).strip()}") from exc
                if pause:  # no connection could be made at all: back off before the next try
                    failures += 1
                    waited += pause
                    self._sleep(pause)
                continue
            except psycopg2.Error as exc:
                if exc.pgcode == READ_ONLY and time.monotonic() - started < RETRY_BUDGET_S:
                    continue  # the connection was to a demoted node (dropped): retry on a new one
                if exc.pgcode not in RETRYABLE or attempt >= TRANSACTION_ATTEMPTS - 1:
                    raise _mapped(exc) from exc
            self._sleep(0.05 * 2 ** attempt)
        raise DatabaseUnavailableError("database connection lost: no working connection after "
                                       f"{self.config.maxconn + TRANSACTION_ATTEMPTS} attempts")

    def _rows(self, cur: Any, name: str, args: tuple[Any, ...]) -> list[dict[str, Any]]:
        self.round_trips += 1
        cur.execute(QUERIES[name], args)
        if not cur.description:
            return []
        names = [column.name for column in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def run(self, name: str, *args: Any) -> list[dict[str, Any]]:
        """The rows of named query ``name`` (dicts by column), retried where safe."""
        return self._retrying(lambda cur: self._rows(cur, name, args))

    def first(self, name: str, *args: Any) -> dict[str, Any]:
        """The first row of a query that always answers one (a state-machine call, pm.replica_lag …)."""
        return self.run(name, *args)[0]

    def scalar(self, name: str, *args: Any) -> Any:
        """The first column of the first row (None when there is no row)."""
        rows = self.run(name, *args)
        return next(iter(rows[0].values())) if rows else None

    def scalar_once(self, name: str, *args: Any, lost: str = "",
                    codes: Optional[Mapping[str, Callable[[], Exception]]] = None) -> Any:
        """``scalar`` without the retry, for a statement that is not idempotent (a capital flow).

        A lost connection answers DatabaseUnavailableError with ``lost`` appended (it may have
        committed); ``codes`` maps SQLSTATEs the caller names better than the generic mapping.
        """
        try:
            with self.get_connection() as conn:  # it discards a broken connection
                conn.autocommit = True
                with conn.cursor() as cur:
                    self.round_trips += 1
                    cur.execute(QUERIES[name], args)
                    return cur.fetchone()[0]
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            raise DatabaseUnavailableError(f"database connection lost: {str(exc).strip()}{lost}") from exc
        except psycopg2.Error as exc:
            if codes and exc.pgcode in codes:
                raise codes[exc.pgcode]() from exc
            raise _mapped(exc) from exc

    def in_transaction(self, first: str, args: tuple[Any, ...], handle: Callable[[Step, Any], T]) -> T:
        """Send ``first`` (a statement that opens a transaction) and let ``handle`` finish it on one connection.

        ``handle`` gets a Step (to send the next statements, ending in COMMIT or ROLLBACK) and the
        first column of ``first``'s row. Any error rolls the transaction back, so a failure never
        leaves a lock held or half a signal written; connection errors become
        DatabaseUnavailableError, others their typed errors. Not retried: the caller owns the retry.
        """
        with self.get_connection() as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                try:
                    self.round_trips += 1
                    cur.execute(QUERIES[first], args)
                    return handle(Step(self, cur), cur.fetchone()[0])
                except psycopg2.Error as exc:
                    if not conn.closed:
                        try:
                            cur.execute(QUERIES["rollback"])
                        except psycopg2.Error:  # pragma: no cover - the connection is gone; discarded below
                            pass
                    if exc.pgcode == READ_ONLY and not conn.closed:
                        conn.close()  # a demoted node: the pool drops this connection
                    if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
                        raise DatabaseUnavailableError(f"database connection lost: {str(exc).strip()}") from exc
                    raise _mapped(exc) from exc
                except BaseException:
                    if not conn.closed:
                        cur.execute(QUERIES["rollback"])
                    raise

    def ping(self) -> float:
        """One ``SELECT 1`` round trip; returns its latency in milliseconds."""
        start = time.perf_counter()
        self.run("ping")
        return (time.perf_counter() - start) * 1000

    def schema_version(self) -> Optional[str]:
        value = self.scalar("schema_version")
        return str(value) if value is not None else None
