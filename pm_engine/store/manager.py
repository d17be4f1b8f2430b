"""DatabaseStateManager: the engine's thin wrapper over pm-engine's SQL functions (psycopg2).

Integrity lives in PostgreSQL (versions, fingerprint claims, checks); this module pools
connections, retries what is safe to retry, maps SQLSTATEs to typed exceptions, converts rows to
records, and keeps an L1 cache whose entries carry their version and never go backwards.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, TypeVar

import psycopg2
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool

from pm_engine.core.capital import InvalidAmountError
from pm_engine.core.errors import DatabaseUnavailableError, StaleVersionError
from pm_engine.core.models import Blocked, Duplicate, Position, Signal, SignalResult
from pm_engine.core.orders import Order
from pm_engine.core.state_store import Decide, Decided
from pm_engine.store.connection import DatabaseConfig
from pm_engine.store.errors import error_for
from pm_engine.store.outbox import DatabasePaperBroker, order_document
from pm_engine.store.queries import QUERIES

if TYPE_CHECKING:  # pragma: no cover
    from pm_engine.core.portfolio import PortfolioStateManager

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE = {"40001", "40P01"}  # serialization failure, deadlock
READ_ONLY = "25006"  # read_only_sql_transaction: this connection's node is no longer the primary
NUMERIC_OUT_OF_RANGE = "22003"
POSITION_FIELDS = [f.name for f in fields(Position)]
TIME_FIELDS = ("entry_timestamp", "exit_timestamp", "rollover_timestamp")
DECIMAL_FIELDS = tuple(f.name for f in fields(Position) if "Decimal" in str(f.type))
CONNECT_ATTEMPTS = 3
TRANSACTION_ATTEMPTS = 3
RETRY_BUDGET_S = 1.0  # how long one call may spend retrying lost connections before answering "unavailable"


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def _loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def position_to_doc(position: Position) -> dict[str, Any]:
    """A position as the document pm.save_position takes (version excluded: the database owns it)."""
    return {name: getattr(position, name) for name in POSITION_FIELDS if name != "version"}


def position_from_row(row: dict[str, Any]) -> Position:
    """A position from a row (or its JSON form): numerics as Decimal, times as aware datetimes.

    Rows from psycopg2 are already typed; only the JSON form (pm.load_state) needs converting.
    """
    values = {name: row[name] for name in POSITION_FIELDS if name in row}
    for name in TIME_FIELDS:
        if isinstance(values.get(name), str):
            values[name] = datetime.fromisoformat(values[name])
    for name in DECIMAL_FIELDS:
        value = values.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[name] = Decimal(str(value))
    return Position(**values)


def _changes(position: Position, origin: Optional[Position]) -> dict[str, Any]:
    """The document to save: for an update of a row read at the same version, only the changed fields.

    pm.save_position merges a document into the locked current row, so a partial document is a
    full update; it is just smaller to send and to parse (typically 3 keys instead of 44).
    """
    if not position.version or origin is None or origin.version != position.version:
        return position_to_doc(position)
    doc = {name: value for name in POSITION_FIELDS if name != "version"
           and (value := getattr(position, name)) != getattr(origin, name)}
    doc["position_id"] = position.position_id
    return doc


def _next_versions(positions: list[dict[str, Any]]) -> dict[str, int]:
    """Each saved position's version after a successful save: expected + 1, or 1 when inserted.

    The same rule pm.apply_signal answers with; a reopened id appears twice, and its insert (last) wins.
    """
    return {p["doc"]["position_id"]: (p["expected_version"] or 0) + 1 for p in positions}


class DatabaseStateManager:
    """Pooled, retrying access to the pm schema with a version-aware L1 cache."""

    def __init__(self, config: DatabaseConfig, connect_backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep, connect_attempts: int = CONNECT_ATTEMPTS) -> None:
        self.config = config
        self._sleep = sleep
        self._backoff = connect_backoff
        self._attempts = connect_attempts
        self._lock = threading.RLock()
        self._positions: dict[str, Position] = {}
        self._portfolio: Optional[dict[str, Any]] = None
        self._max_seen: dict[str, int] = {}  # highest committed version seen per position id
        self.round_trips = 0
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
            psycopg2.extras.register_default_jsonb(conn, loads=_loads)
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

    def _run(self, work: Callable[[Any], T]) -> T:
        """Run ``work(cursor)`` in autocommit (one statement = one transaction), retrying what is safe.

        A dropped connection is discarded and the call retried on another, for at most
        ``RETRY_BUDGET_S`` in all (so a webhook answers 503 well inside TradingView's 3 s when the
        database is down, and a restarted database's dead pooled connections are flushed in one
        call). Serialization failures and deadlocks are retried up to 3 times with backoff; any
        other database error is mapped to its typed exception. Every statement sent here is
        idempotent or version-checked, which is what makes the retry safe.
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
                    raise error_for(exc.pgcode, (exc.diag.message_primary or str(exc)).strip()) from exc
            self._sleep(0.05 * 2 ** attempt)
        raise DatabaseUnavailableError("database connection lost: no working connection after "
                                       f"{self.config.maxconn + TRANSACTION_ATTEMPTS} attempts")

    def _execute(self, name: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        def work(cur: Any) -> list[dict[str, Any]]:
            self.round_trips += 1
            cur.execute(QUERIES[name], params)
            if not cur.description:
                return []
            names = [column.name for column in cur.description]
            return [dict(zip(names, row)) for row in cur.fetchall()]
        return self._run(work)

    def _scalar(self, name: str, params: tuple[Any, ...] = ()) -> Any:
        rows = self._execute(name, params)
        return next(iter(rows[0].values())) if rows else None

    # -- cache ---------------------------------------------------------------------------------
    def _remember(self, position: Position) -> None:
        """Cache a committed position unless this process has already seen a newer version of it."""
        with self._lock:
            if position.version >= self._max_seen.get(position.position_id, 0):
                self._max_seen[position.position_id] = position.version
                self._positions[position.position_id] = position

    def invalidate(self) -> None:
        with self._lock:
            self._positions.clear()
            self._portfolio = None

    # -- positions -----------------------------------------------------------------------------
    def save_position(self, position: Position) -> bool:
        """Insert (version 0) or version-checked update; sets ``position.version``. StaleVersionError if stale."""
        expected = position.version or None
        version = self._scalar("save_position", (dumps(position_to_doc(position)), expected))
        position.version = int(version)
        self._remember(_copy(position))
        return True

    def get_position(self, position_id: str) -> Optional[Position]:
        """Cache first, then the database (and cache it)."""
        with self._lock:
            cached = self._positions.get(position_id)
        if cached is not None:
            return _copy(cached)
        rows = self._execute("get_position", (position_id,))
        if not rows:
            return None
        position = position_from_row(rows[0])
        self._remember(position)
        return _copy(position)

    def get_all_open_positions(self) -> dict[str, Position]:
        """Every open position from the database (all cached)."""
        positions = {row["position_id"]: position_from_row(row) for row in self._execute("get_open_positions")}
        for position in positions.values():
            self._remember(_copy(position))
        return positions

    # -- portfolio and pyramiding --------------------------------------------------------------
    def get_portfolio_state(self) -> Optional[dict[str, Any]]:
        """Cache first; the row as a dict."""
        with self._lock:
            if self._portfolio is not None:
                return dict(self._portfolio)
        rows = self._execute("get_portfolio_state")
        if not rows:
            return None
        self._set_portfolio(dict(rows[0]))
        return dict(rows[0])

    def _set_portfolio(self, state: dict[str, Any]) -> None:
        with self._lock:
            if self._portfolio is None or int(state["version"]) >= int(self._portfolio["version"]):
                self._portfolio = state

    def save_portfolio_state(self, state: dict[str, Any], expected_version: Optional[int] = None) -> int:
        """Version-checked update (the cached version when none is given); returns the new version."""
        if expected_version is None:
            current = self.get_portfolio_state()
            expected_version = int(current["version"]) if current else 1
        version = int(self._scalar("save_portfolio_state", (dumps(state), expected_version)))
        with self._lock:
            self._portfolio = None
        return version

    def save_pyramiding_state(self, instrument: str, last_pyramid_price: Optional[Decimal],
                              base_position_id: Optional[str]) -> None:
        self._execute("save_pyramiding_state", (instrument, last_pyramid_price, base_position_id))

    def get_pyramiding_state(self) -> dict[str, dict[str, Any]]:
        return {row["instrument"]: dict(row) for row in self._execute("get_pyramiding_state")}

    # -- signals -------------------------------------------------------------------------------
    def check_duplicate_signal(self, fingerprint: str) -> bool:
        return bool(self._scalar("is_duplicate_signal", (fingerprint,)))

    def log_signal(self, signal: Signal, status: str, reason: Optional[str] = None,
                   instance_id: Optional[str] = None) -> bool:
        """Record a signal with its outcome; False (and nothing changed) when the fingerprint was known."""
        return bool(self._scalar("log_signal", (
            signal.fingerprint, signal.instrument, signal.type.value, signal.position, signal.timestamp, status,
            reason, dumps(signal.payload), instance_id)))

    def commit_signal(self, signal: Signal, result: SignalResult, work: "PortfolioStateManager",
                      instance_id: str) -> Optional[Duplicate | Blocked]:
        """Claim the fingerprint and write the signal's effects in one call; None when applied.

        A duplicate answers ``Duplicate`` (with the fresh state if the portfolio moved), a signal the
        trading controls refuse ``Blocked`` (logged, nothing else written); a stale decision raises
        StaleVersionError carrying the fresh state.
        """
        sig = self._signal_document(signal, result, work, instance_id)
        positions, pyramiding, portfolio = self._effects(work)
        answer = self._scalar("apply_signal", (dumps(sig), dumps(positions), dumps(pyramiding), dumps(portfolio),
                                               work.version))
        if not answer["new"]:
            return self._duplicate(answer)
        if answer.get("blocked"):
            return Blocked(answer["reason"])
        if answer.get("stale"):
            error = StaleVersionError(f"portfolio moved to version {answer['portfolio_version']} since version "
                                      f"{work.version}; decide again", "PM001")
            error.state = self._recovered(answer["state"])
            raise error
        self._absorb(work, answer)
        return None

    def _duplicate(self, answer: dict[str, Any]) -> Duplicate:
        return Duplicate(self._recovered(answer["state"]) if "state" in answer else None)

    def state_if_moved(self, known_version: int) -> Optional[dict[str, Any]]:
        """The committed state if the portfolio moved past ``known_version``, else None (one round trip)."""
        answer = self._scalar("state_if_moved", (known_version,))
        return self._recovered(answer["state"]) if "state" in answer else None

    def commit_signal_locked(self, signal: Signal, known_version: int, decide: Decide,
                             instance_id: str) -> Decided | Duplicate | Blocked:
        """Decide under the portfolio's row lock and commit: the retry after a stale decision.

        Two round trips on one connection: ``BEGIN; pm.lock_for_decision`` (the lock, and the fresh
        state if the portfolio moved), then ``pm.apply_signal; COMMIT``. Holding the lock, nobody
        else can commit in between, so this attempt cannot go stale. ``decide(state)`` gets the
        fresh state (None when unchanged) and returns the result and its working copy. Answers
        ``Duplicate`` for a duplicate (nothing written).
        """
        def handle(cur: Any, answer: dict[str, Any]) -> Decided | Duplicate | Blocked:
            if answer["duplicate"]:
                cur.execute(QUERIES["rollback"])
                return self._duplicate(answer)
            if answer.get("blocked"):  # the controls refuse it under this lock: log it blocked, nothing else
                self.round_trips += 1
                cur.execute(QUERIES["apply_signal_and_commit"], (
                    dumps(self._control_document(signal) | {"processing_status": "blocked", "reason": answer["blocked"],
                                                            "payload": signal.payload, "instance": instance_id}),
                    "[]", "[]", "{}", int(answer["portfolio_version"])))
                return Blocked(answer["blocked"])
            result, work = decide(self._recovered(answer["state"]) if "state" in answer else None)
            return self._apply_and_commit(cur, signal, result, work, instance_id)
        return self._two_steps("lock_for_decision", (signal.fingerprint, known_version,
                                                     dumps(self._control_document(signal))), handle)

    def commit_signal_guarded(self, signal: Signal, result: SignalResult, work: "PortfolioStateManager",
                              decide: Decide, instance_id: str) -> Decided | Duplicate | Blocked:
        """The decision applied inside an open transaction: never more than two round trips.

        ``BEGIN; pm.apply_signal`` applies it if the portfolio has not moved (then ``COMMIT``);
        if it has, pm.apply_signal has written nothing but holds the portfolio's row lock and sent
        the fresh state, so the engine decides again and ``pm.apply_signal; COMMIT`` cannot go
        stale. Used while other instances are committing (see LiveTradingEngine).
        """
        def handle(cur: Any, answer: dict[str, Any]) -> Decided | Duplicate | Blocked:
            if not answer["new"]:
                cur.execute(QUERIES["rollback"])
                return self._duplicate(answer)
            if answer.get("blocked"):
                self.round_trips += 1
                cur.execute(QUERIES["commit"])
                return Blocked(answer["reason"])
            if answer.get("stale"):
                again, redone = decide(self._recovered(answer["state"]))
                return self._apply_and_commit(cur, signal, again, redone, instance_id)
            self.round_trips += 1
            cur.execute(QUERIES["commit"])
            self._absorb(work, answer)
            return result, work
        positions, pyramiding, portfolio = self._effects(work)
        params = (dumps(self._signal_document(signal, result, work, instance_id)), dumps(positions),
                  dumps(pyramiding), dumps(portfolio), work.version)
        return self._two_steps("begin_apply_signal", params, handle)

    def _apply_and_commit(self, cur: Any, signal: Signal, result: SignalResult, work: "PortfolioStateManager",
                          instance_id: str) -> tuple[SignalResult, "PortfolioStateManager"]:
        """Second step under the row lock: apply and commit in one round trip (nothing can be stale)."""
        positions, pyramiding, portfolio = self._effects(work)
        self.round_trips += 1
        cur.execute(QUERIES["apply_signal_and_commit"], (
            dumps(self._signal_document(signal, result, work, instance_id)), dumps(positions), dumps(pyramiding),
            dumps(portfolio), work.version))
        self._absorb(work, {"portfolio_version": work.version + 1, "versions": _next_versions(positions)})
        return result, work

    def _two_steps(self, first: str, params: tuple[Any, ...],
                   handle: Callable[[Any, dict[str, Any]], Decided | Duplicate | Blocked]
                   ) -> Decided | Duplicate | Blocked:
        """Run ``first`` (which opens a transaction) and ``handle`` its answer on one connection.

        Any error rolls the transaction back, so a failure never leaves a lock held or half a
        signal written; connection errors become DatabaseUnavailableError, others typed errors.
        """
        with self.get_connection() as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                try:
                    self.round_trips += 1
                    cur.execute(QUERIES[first], params)
                    return handle(cur, cur.fetchone()[0])
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
                    raise error_for(exc.pgcode, (exc.diag.message_primary or str(exc)).strip()) from exc
                except BaseException:
                    if not conn.closed:
                        cur.execute(QUERIES["rollback"])
                    raise

    def save_positions(self, work: "PortfolioStateManager") -> None:
        """Write a working copy's changed positions and metrics (stop updates), version-checked."""
        positions, pyramiding, portfolio = self._effects(work)
        version = self._scalar("apply_state", (dumps(positions), dumps(pyramiding), dumps(portfolio), work.version))
        self._absorb(work, {"portfolio_version": version, "versions": _next_versions(positions)})

    @staticmethod
    def _control_document(signal: Signal) -> dict[str, Any]:
        """What the trading controls look at: the signal's identity, instrument, type and bar time."""
        return {"fingerprint": signal.fingerprint, "instrument": signal.instrument, "signal_type": signal.type.value,
                "position": signal.position, "signal_timestamp": signal.timestamp}

    @classmethod
    def _signal_document(cls, signal: Signal, result: SignalResult, work: "PortfolioStateManager",
                         instance_id: str) -> dict[str, Any]:
        doc = cls._control_document(signal) | {
            "processing_status": result.outcome.value, "reason": result.reason, "payload": signal.payload,
            "instance": instance_id, "orders": [order_document(o) for o in work.orders]}
        if "anomaly" in result.details:
            doc["anomaly"] = result.details["anomaly"]
        return doc

    @staticmethod
    def _effects(work: "PortfolioStateManager") -> tuple[list[Any], list[Any], dict[str, Any]]:
        # a row closed and reopened under the same id in one decision: the close first, then the insert
        # (which archives the closed row), so the answer's version for that id is the new row's; every close
        # before any insert, so a new base on the next contract never meets a stopped-out layer still open
        # on the old one (PM030, one contract per instrument)
        dirty = list(work.dirty_positions.values())
        ordered = [*work.dirty_closed, *(p for p in dirty if p.status == "closed"),
                   *(p for p in dirty if p.status != "closed")]
        positions = [{"doc": _changes(p, work.origin.get(p.position_id)), "expected_version": p.version or None}
                     for p in ordered]
        pyramiding = []
        for instrument in sorted(work.dirty_pyramiding):
            state = work.pyramiding.get(instrument)
            pyramiding.append({"instrument": instrument, "clear": True} if state is None else
                              {"instrument": instrument, "last_pyramid_price": state.last_pyramid_price,
                               "base_position_id": state.base_position_id, "clear": False})
        return positions, pyramiding, work.state_document()

    def _absorb(self, work: "PortfolioStateManager", answer: dict[str, Any]) -> None:
        """Adopt the versions the database assigned and refresh the cache with them."""
        work.version = int(answer["portfolio_version"])
        for position_id, version in answer["versions"].items():
            position = work.dirty_positions.get(position_id)
            if position is not None:
                position.version = int(version)
                self._remember(_copy(position))
        with self._lock:
            self._portfolio = None

    def load_state(self) -> dict[str, Any]:
        """Portfolio row, open positions and pyramiding state in one round trip (start-up recovery)."""
        return self._recovered(self._scalar("load_state"))

    def _recovered(self, state: dict[str, Any]) -> dict[str, Any]:
        """A pm.load_state() document with its positions as records (and cached)."""
        state["positions"] = {row["position_id"]: position_from_row(row) for row in state["positions"]}
        for position in state["positions"].values():
            self._remember(_copy(position))
        return dict(state)

    # -- history and statistics (migration 003) ---------------------------------------------------
    def state_as_of(self, when: datetime) -> dict[str, Any]:
        """The book as committed at or before ``when`` (pm.load_state's shape, positions as records).

        Not cached: history is read on request. HistoryUnavailableError (PM006) before history began.
        """
        state = self._scalar("state_as_of", (when,))
        state["positions"] = {row["position_id"]: position_from_row(row) for row in state["positions"]}
        return dict(state)

    def equity_curve(self, start: Optional[datetime] = None, end: Optional[datetime] = None) -> list[dict[str, Any]]:
        """One point per committed portfolio version: recorded_at, closed/open/blended equity, fingerprint."""
        return self._execute("equity_curve", (start, end))

    def trades(self, start: Optional[datetime] = None, end: Optional[datetime] = None) -> list[dict[str, Any]]:
        """Closed positions exiting in the range, in exit order (pm.trades)."""
        return self._execute("trades", (start, end))

    def pnl_by_period(self, period: str, start: Optional[datetime] = None,
                      end: Optional[datetime] = None) -> list[dict[str, Any]]:
        """Realized P&L, trades and closing equity per IST day, week or month."""
        return self._execute("pnl_by_period", (period, start, end))

    def trade_stats(self, start: Optional[datetime] = None, end: Optional[datetime] = None) -> dict[str, Any]:
        """pm.trade_stats: the statistics of docs/domain.md#history-and-statistics (Decimal; None if undefined)."""
        return dict(self._scalar("trade_stats", (start, end)))

    # -- trading controls and audit (migration 004) -----------------------------------------------
    def trading_mode(self) -> dict[str, Any]:
        """The mode every instance obeys: mode, reason, changed_by, changed_at, version."""
        return dict(self._scalar("get_trading_mode"))

    def set_trading_mode(self, mode: str, reason: Optional[str], changed_by: str) -> dict[str, Any]:
        """Pause (``exits_only``, ``halted``) or resume (``active``); InvalidArgumentError names what is wrong."""
        return dict(self._scalar("set_trading_mode", (mode, reason, changed_by)))

    def trading_mode_history(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._execute("trading_mode_history", (limit,))

    def breakers(self) -> dict[str, Any]:
        return dict(self._scalar("get_breakers"))

    def set_breakers(self, settings: dict[str, Any], updated_by: str) -> dict[str, Any]:
        """Change the settings given (None switches a breaker off); returns all of them."""
        return dict(self._scalar("set_breakers", (dumps(settings), updated_by)))

    def lock_instrument(self, instrument: str, until: datetime, reason: str, source: str) -> int:
        return int(self._scalar("lock_instrument", (instrument, until, reason, source)))

    def unlock_instrument(self, instrument: str, released_by: str) -> int:
        return int(self._scalar("unlock_instrument", (instrument, released_by)))

    def active_locks(self) -> list[dict[str, Any]]:
        return self._execute("active_locks")

    def log_refusals(self, rows: list[dict[str, Any]]) -> int:
        """Append refused requests in one round trip (the audit writer's batch)."""
        return int(self._scalar("log_refusals", (dumps(rows),)))

    def refusals(self, since: Optional[datetime] = None, limit: int = 1000) -> list[dict[str, Any]]:
        return self._execute("refusals", (since, limit))

    def cleanup_request_log(self, retention: str = "30 days") -> int:
        return int(self._scalar("cleanup_request_log", (retention,)))

    def audit_usage(self, days: int = 7) -> list[dict[str, Any]]:
        """Per UTC day: refusal rows and bytes written, rows counted instead, and the budget (pm.audit_budget)."""
        return self._execute("audit_usage", (days,))

    # sessions: the web layer's SessionStore (web/access.py) ---------------------------------------
    def create_session(self, digest: str, expires_at: datetime, source: str) -> None:
        self._scalar("create_session", (digest, expires_at, source))

    def session_active(self, digest: str) -> bool:
        return bool(self._scalar("session_active", (digest,)))

    def revoke_session(self, digest: str) -> bool:
        return bool(self._scalar("revoke_session", (digest,)))

    def equity_curve_sampled(self, start: Optional[datetime], end: Optional[datetime],
                             buckets: int) -> list[dict[str, Any]]:
        """The equity curve cut to about 2 × ``buckets`` points, each bucket's low and high kept (the dashboard)."""
        return self._execute("equity_curve_sampled", (start, end, buckets))

    def anomalies(self, since: Optional[datetime] = None, limit: Optional[int] = None) -> list[dict[str, Any]]:
        """Anomalies since ``since`` (default 24 h), newest first; only the latest ``limit`` when given."""
        if limit is not None:
            return self._execute("anomalies_latest", (since, max(0, limit)))
        return self._execute("anomalies", (since,))

    def anomaly_counts(self, since: Optional[datetime] = None) -> dict[str, int]:
        return {k: int(v) for k, v in self._scalar("anomaly_counts", (since,)).items()}

    # -- observability ---------------------------------------------------------------------------
    def recent_signals(self, limit: int = 50, since: Optional[datetime] = None) -> list[dict[str, Any]]:
        """The signal log, newest first; each ``processed_at`` is that signal's instant (``--as-of`` it)."""
        return self._execute("recent_signals", (limit, since))

    def list_instances(self) -> list[dict[str, Any]]:
        return self._execute("list_instances")

    def metrics_snapshot(self) -> dict[str, Any]:
        """Mode, anomaly counts, pending orders, last signal time, open positions: one round trip."""
        return dict(self._scalar("metrics_snapshot"))

    def replica_lag(self) -> dict[str, Any]:
        """{"lag_s": seconds behind the primary (0 on a primary), "standby": bool} for the node this store reads."""
        return self._execute("replica_lag")[0]

    def pool_in_use(self) -> int:
        """Connections handed out by the pool right now."""
        return len(getattr(self.pool, "_used", {}))

    # -- broker orders (the outbox) -------------------------------------------------------------
    def paper_broker(self) -> DatabasePaperBroker:
        """The paper broker of a live engine: it fills this store's outbox rows."""
        return DatabasePaperBroker(self)

    def fill_paper_orders(self, client_order_ids: list[str]) -> list[dict[str, Any]]:
        """The paper broker's fill of outbox orders (idempotent); the filled rows."""
        return self._execute("fill_paper_orders", (client_order_ids,))

    def pending_orders(self, min_age_s: float = 0) -> list[Order]:
        """Committed orders never sent, at least ``min_age_s`` old, oldest first."""
        return [Order(r["client_order_id"], r["instrument"], r["side"], int(r["lots"]), r["price"], r["fingerprint"],
                      r["position_id"], r["created_at"], exchange=r.get("exchange"), symbol=r.get("symbol"),
                      quantity=r.get("quantity"), product=r.get("product") or "NRML", leg=r.get("leg"))
                for r in self._execute("queued_orders", (f"{min_age_s} seconds",))]

    def orders_for_signal(self, fingerprint: str) -> list[dict[str, Any]]:
        return self._execute("orders_for_signal", (fingerprint,))

    # -- instances and jobs --------------------------------------------------------------------
    def register_instance(self, instance_id: str, hostname: Optional[str], port: Optional[int],
                          version: Optional[str]) -> None:
        self._execute("register_instance", (instance_id, hostname, port, version))

    def stop_instance(self, instance_id: str) -> None:
        """A clean shutdown: shown as stopped, never swept to crashed."""
        self._execute("stop_instance", (instance_id,))

    def heartbeat(self, instance_id: str, last_signal: Optional[datetime] = None) -> None:
        """Record a heartbeat (and when this instance last processed a signal, if it has)."""
        self._execute("heartbeat_instance", (instance_id, last_signal))

    def claim_leadership(self, instance_id: str) -> None:
        self._execute("claim_leadership", (instance_id,))

    def cleanup_signal_log(self, retention: str = "7 days") -> int:
        return int(self._scalar("cleanup_signal_log", (retention,)))

    def sweep_stale_instances(self, timeout: str = "30 seconds") -> int:
        return int(self._scalar("sweep_stale_instances", (timeout,)))

    def ping(self) -> float:
        """One ``SELECT 1`` round trip; returns its latency in milliseconds."""
        start = time.perf_counter()
        self._execute("ping")
        return (time.perf_counter() - start) * 1000

    def schema_version(self) -> Optional[str]:
        value = self._scalar("schema_version")
        return str(value) if value is not None else None

    def signal_outcomes(self) -> dict[str, int]:
        return {row["processing_status"]: int(row["count"]) for row in self._execute("signal_outcomes")}

    # -- capital in and out (migration 009) ---------------------------------------------------------
    def record_capital_flow(self, kind: str, amount: Decimal, note: Optional[str], recorded_by: str) -> dict[str, Any]:
        """Record a deposit or withdrawal, moving closed equity and equity_high with it in one transaction.

        Answers the ledger row (with ``equity_high`` after it). Refusals write nothing and raise
        InvalidAmountError (PM060), WithdrawalRefusedError (PM061 below the margin in use, PM062
        below zero), InvalidNoteError (PM063, a long note) or InvalidArgumentError (an unknown kind,
        no ``recorded_by``).
        Not retried after a lost connection (a flow is not idempotent): DatabaseUnavailableError
        then means it may have committed, and the ledger says whether it did.
        """
        try:
            with self.get_connection() as conn:  # it discards a broken connection
                conn.autocommit = True
                with conn.cursor() as cur:
                    self.round_trips += 1
                    cur.execute(QUERIES["record_capital_flow"], (kind, amount, note, recorded_by))
                    flow = dict(cur.fetchone()[0])
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            raise DatabaseUnavailableError(f"database connection lost: {str(exc).strip()}; check the ledger "
                                           "(pm-engine capital) before recording the flow again") from exc
        except psycopg2.Error as exc:
            if exc.pgcode == NUMERIC_OUT_OF_RANGE:  # numeric(15,2): closed equity or equity high past 10^13
                raise InvalidAmountError(f"amount {amount} would take the book's equity past 10^13 rupees "
                                         "(numeric(15,2)); nothing recorded", "PM060") from exc
            raise error_for(exc.pgcode, (exc.diag.message_primary or str(exc)).strip()) from exc
        with self._lock:
            self._portfolio = None  # the cached row is stale now
        return flow

    def capital_ledger(self, limit: Optional[int] = None, offset: int = 0) -> list[dict[str, Any]]:
        """The latest capital flows, newest first; with ``offset``, a page: ``limit`` flows after the newest
        ``offset`` (the caller bounds both)."""
        if offset:
            return self._execute("capital_ledger_page", ((limit or 0) + offset, offset))
        return self._execute("capital_ledger", (limit,))

    def capital_totals(self, start: Optional[datetime] = None, end: Optional[datetime] = None) -> dict[str, Any]:
        """{"deposits", "withdrawals", "net_flows"} recorded in the range."""
        return dict(self._scalar("capital_totals", (start, end)))

    # -- notifications (migration 010, issue 24) -------------------------------------------------
    def notify_take(self, targets: list[dict[str, str]], kinds: list[str], instance_id: str, lease_s: float,
                    limit: int, burst: int, give_up_hours: float) -> list[dict[str, Any]]:
        """Claim the deliveries due now (pm.notify_take); their data documents decoded."""
        rows = self._execute("notify_take", (dumps(targets), kinds, instance_id, f"{lease_s} seconds", limit, burst,
                                             f"{give_up_hours} hours"))
        for row in rows:
            if isinstance(row["data"], str):
                row["data"] = _loads(row["data"])
        return rows

    def notify_done(self, results: list[dict[str, Any]], instance_id: str, retry_s: float, retry_max_s: float) -> int:
        return int(self._scalar("notify_done", (dumps(results), instance_id, f"{retry_s} seconds",
                                                f"{retry_max_s} seconds")))

    def record_notification(self, kind: str, data: dict[str, Any], dedup_key: Optional[str] = None) -> Optional[int]:
        value = self._scalar("record_notification", (kind, dumps(data), dedup_key))
        return None if value is None else int(value)

    def notification_log(self, since: Optional[datetime] = None, limit: int = 200) -> list[dict[str, Any]]:
        return self._execute("notification_log", (since, limit))

    def notification_counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._scalar("notification_counts").items()}

    def cleanup_notifications(self, retention: str = "30 days") -> int:
        return int(self._scalar("cleanup_notifications", (retention,)))

    def server_node(self) -> dict[str, Any]:
        """{address, started, standby} of the node this store reaches."""
        return self._execute("server_node")[0]

    def signal_outcomes_between(self, start: datetime, end: datetime) -> dict[str, int]:
        return {row["processing_status"]: int(row["count"])
                for row in self._execute("signal_outcomes_between", (start, end))}


def _copy(position: Position) -> Position:
    from copy import copy
    return copy(position)
