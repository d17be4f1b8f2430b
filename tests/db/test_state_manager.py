"""Store against a real PostgreSQL (a fresh deployed database per test)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D
from typing import Any, Iterator

import psycopg2
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.engine import TradingEngine
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.core.models import Duplicate, Position
from pm_engine.core.signals import parse_signal
from pm_engine.store.errors import (DatabaseUnavailableError, InvalidArgumentError, PositionAlreadyOpenError,
                                    StaleVersionError)
from pm_engine.store.gateway import Store
from tests.helpers import payload

T0 = datetime(2026, 10, 30, 5, 0, tzinfo=timezone.utc)


def fingerprint_of(body: dict[str, Any]) -> str:
    return parse_signal(body, DEFAULT_INSTRUMENTS).fingerprint


@pytest.fixture
def store(db_config: DatabaseConfig) -> Iterator[Store]:
    gateway = Store(db_config)
    yield gateway
    gateway.close()


def position(pid: str = "BANK_NIFTY_Long_1", **extra: Any) -> Position:
    values: dict[str, Any] = dict(position_id=pid, instrument="BANK_NIFTY", entry_timestamp=T0,
                                  entry_price=D("52000.00"), lots=4, quantity=120, initial_stop=D("51650.00"),
                                  current_stop=D("51650.00"), highest_close=D("52000.00"), atr=D("350.00"),
                                  is_base_position=True, limiter="risk", risk_contribution=D("0.8400"))
    values.update(extra)
    return Position(**values)


def test_connection_pool_initialization(store: Store, db_config: DatabaseConfig) -> None:
    assert store.pool.minconn == db_config.minconn and store.pool.maxconn == db_config.maxconn
    assert store.ping() > 0


def test_connection_retry_on_failure() -> None:
    delays: list[float] = []
    with pytest.raises(DatabaseUnavailableError, match=r"after 3 attempt\(s\)"):
        Store(DatabaseConfig(port=1, database="x", connect_timeout=1), sleep=delays.append)
    assert delays == [1.0, 2.0]  # 1 s, 2 s between the three attempts


def test_get_connection_context_manager(store: Store) -> None:
    with store.get_connection() as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT 41 + 1")
            assert cur.fetchone()[0] == 42


def test_transaction_commits(store: Store) -> None:
    with store.transaction() as cur:
        cur.execute("SELECT pm.save_pyramiding_state('COPPER', 800, NULL)")
    assert store.book.get_pyramiding_state()["COPPER"]["last_pyramid_price"] == D("800.00")


def test_transaction_rollback_on_error(store: Store) -> None:
    with pytest.raises(psycopg2.Error):
        with store.transaction() as cur:
            cur.execute("SELECT pm.save_pyramiding_state('COPPER', 800, NULL)")
            cur.execute("SELECT pm.save_pyramiding_state('COPPER', -1, NULL)")
    assert "COPPER" not in store.book.get_pyramiding_state()


def test_save_position_insert(store: Store) -> None:
    p = position()
    assert store.book.save_position(p) is True and p.version == 1


def test_save_position_update(store: Store) -> None:
    p = position()
    store.book.save_position(p)
    p.current_stop = D("51900.00")
    store.book.save_position(p)
    assert p.version == 2
    store.book.invalidate()
    stored = store.book.get_position(p.position_id)
    assert stored is not None and stored.current_stop == D("51900.00") and stored.version == 2


def test_save_position_optimistic_locking(store: Store, db_config: DatabaseConfig) -> None:
    p = position()
    store.book.save_position(p)
    other = Store(db_config)
    try:
        theirs = other.book.get_position(p.position_id)
        assert theirs is not None
        theirs.current_stop = D("51800.00")
        other.book.save_position(theirs)
    finally:
        other.close()
    p.current_stop = D("51900.00")
    with pytest.raises(StaleVersionError, match="expected 1, found 2"):
        store.book.save_position(p)


def test_save_position_twice_as_new_refused(store: Store) -> None:
    store.book.save_position(position())
    with pytest.raises(PositionAlreadyOpenError):
        store.book.save_position(position())


def test_save_position_bad_value_typed(store: Store) -> None:
    with pytest.raises(InvalidArgumentError):
        store.book.save_position(position(lots=-1))


def test_get_position_cache_hit(store: Store) -> None:
    store.book.save_position(position())
    before = store.round_trips
    cached = store.book.get_position("BANK_NIFTY_Long_1")
    assert cached is not None and cached.version == 1 and store.round_trips == before


def test_get_position_cache_miss(store: Store) -> None:
    store.book.save_position(position())
    store.book.invalidate()
    before = store.round_trips
    assert store.book.get_position("BANK_NIFTY_Long_1") is not None and store.round_trips == before + 1
    assert store.book.get_position("BANK_NIFTY_Long_1") is not None and store.round_trips == before + 1


def test_get_position_not_found(store: Store) -> None:
    assert store.book.get_position("NOPE") is None


def test_get_all_open_positions(store: Store) -> None:
    store.book.save_position(position())
    store.book.save_position(position("GOLD_MINI_Long_1", instrument="GOLD_MINI"))
    closed = position("COPPER_Long_1", instrument="COPPER")
    store.book.save_position(closed)
    closed.status = "closed"
    store.book.save_position(closed)
    assert sorted(store.book.get_all_open_positions()) == ["BANK_NIFTY_Long_1", "GOLD_MINI_Long_1"]


def test_position_serialization_is_base_position(store: Store) -> None:
    p = position(is_base_position=True, rollover_status="pending", expiry="2025-12-31", strike=52000,
                 pe_symbol="BANKNIFTY25DEC52000PE", pe_entry_price=D("310.50"), rollover_count=1)
    store.book.save_position(p)
    store.book.invalidate()
    stored = store.book.get_position(p.position_id)
    assert stored == p
    assert stored is not None and stored.entry_timestamp.tzinfo is not None
    assert isinstance(stored.entry_price, D) and stored.is_base_position is True and stored.original_expiry is None


def test_save_portfolio_state(store: Store) -> None:
    assert store.book.save_portfolio_state({"closed_equity": D("5180000"), "margin_used": D("1080000")}) == 2
    with store.transaction() as cur:
        cur.execute("SELECT closed_equity, margin_used, equity_high FROM pm.portfolio_state")
        assert cur.fetchone() == {"closed_equity": D("5180000.00"), "margin_used": D("1080000.00"),
                                  "equity_high": D("5180000.00")}  # the high follows closed equity up


def test_get_portfolio_state(store: Store) -> None:
    state = store.book.get_portfolio_state()
    assert state is not None and state["closed_equity"] == D("5000000.00") and state["version"] == 1
    assert state["initial_capital"] == D("5000000.00")
    before = store.round_trips
    assert store.book.get_portfolio_state() == state and store.round_trips == before  # cached


def test_portfolio_state_version_increment(store: Store) -> None:
    assert store.book.save_portfolio_state({"closed_equity": D("5180000")}) == 2
    assert store.book.save_portfolio_state({"closed_equity": D("5190000")}) == 3
    state = store.book.get_portfolio_state()
    assert state is not None and state["closed_equity"] == D("5190000.00") and state["version"] == 3
    with pytest.raises(StaleVersionError, match="expected 1, found 3"):
        store.book.save_portfolio_state({"closed_equity": D("1")}, expected_version=1)


def test_save_pyramiding_state(store: Store) -> None:
    store.book.save_position(position())
    store.book.save_pyramiding_state("BANK_NIFTY", D("52800"), "BANK_NIFTY_Long_1")
    store.book.save_pyramiding_state("BANK_NIFTY", D("53300"), "BANK_NIFTY_Long_1")  # an upsert, not a second row
    assert store.book.get_pyramiding_state()["BANK_NIFTY"]["last_pyramid_price"] == D("53300.00")
    with pytest.raises(InvalidArgumentError):
        store.book.save_pyramiding_state("GOLD_MINI", D("1"), "MISSING")  # the base must exist (FK)


def test_get_pyramiding_state(store: Store) -> None:
    assert store.book.get_pyramiding_state() == {}
    store.book.save_position(position())
    store.book.save_pyramiding_state("BANK_NIFTY", D("52800"), "BANK_NIFTY_Long_1")
    state = store.book.get_pyramiding_state()
    assert state == {"BANK_NIFTY": {"instrument": "BANK_NIFTY", "last_pyramid_price": D("52800.00"),
                                    "base_position_id": "BANK_NIFTY_Long_1",
                                    "updated_at": state["BANK_NIFTY"]["updated_at"]}}


def test_base_position_id_nullable(store: Store) -> None:
    store.book.save_pyramiding_state("COPPER", None, None)
    assert store.book.get_pyramiding_state()["COPPER"]["base_position_id"] is None
    store.book.save_position(position("COPPER_Long_1", instrument="COPPER"))
    store.book.save_pyramiding_state("COPPER", D("800"), "COPPER_Long_1")
    with store.transaction() as cur:  # deleting the base sets the reference to NULL (ON DELETE SET NULL)
        cur.execute("DELETE FROM pm.portfolio_positions WHERE position_id = 'COPPER_Long_1'")
    assert store.book.get_pyramiding_state()["COPPER"]["base_position_id"] is None


def signal(**extra: Any) -> Any:
    body = payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30", stop=51650, atr=350,
                   er=0.85, **extra)
    return parse_signal(body, DEFAULT_INSTRUMENTS, now=None)


def test_check_duplicate_signal_exists(store: Store) -> None:
    s = signal()
    store.signals.log_signal(s, "executed", "ok")
    assert store.signals.check_duplicate_signal(s.fingerprint) is True


def test_check_duplicate_signal_not_exists(store: Store) -> None:
    assert store.signals.check_duplicate_signal(signal().fingerprint) is False
    assert store.signals.check_duplicate_signal("0" * 64) is False


def test_log_signal_insert(store: Store) -> None:
    s = signal()
    assert store.signals.log_signal(s, "executed", "entered 4 lots", "inst-1") is True
    with store.transaction() as cur:
        cur.execute("SELECT instrument, signal_type, position, processing_status, processed_by_instance, "
                    "payload ->> 'instrument' AS sent FROM pm.signal_log")
        assert cur.fetchall() == [{"instrument": "BANK_NIFTY", "signal_type": "BASE_ENTRY", "position": "Long_1",
                                   "processing_status": "executed", "processed_by_instance": "inst-1",
                                   "sent": "BANK_NIFTY"}]


def test_log_signal_duplicate_detection(store: Store) -> None:
    s = signal()
    assert store.signals.log_signal(s, "executed", "entered", "inst-1") is True
    assert store.signals.log_signal(s, "blocked", "again", "inst-2") is False
    assert store.signals.signal_outcomes() == {"executed": 1}


def test_engine_signal_round_trips(store: Store) -> None:
    """Counted, not estimated: 1 atomic call per signal, plus 1 paper-broker fill when it orders."""
    engine = TradingEngine(store=store)
    entry = payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30", stop=51650, atr=350,
                    er=0.85)
    before = store.round_trips
    assert engine.process_payload(entry, check_time=False).outcome.value == "executed"
    assert store.round_trips - before == 2  # pm.apply_signal (claim + effects + outbox) + pm.fill_paper_orders
    before = store.round_trips
    assert engine.process_payload(entry, check_time=False).outcome.value == "duplicate"
    assert store.round_trips - before == 0  # this process saw it committed: answered from memory
    other = Store(store.config)
    try:
        second = TradingEngine(store=other)
        before = other.round_trips
        assert second.process_payload(entry, check_time=False).outcome.value == "duplicate"
        assert other.round_trips - before == 1  # another instance: the claim fails, nothing written or ordered
    finally:
        other.close()
    before = store.round_trips
    blocked = engine.process_payload(payload("PYRAMID", "BANK_NIFTY", "Long_2", 52100, "2026-10-30T11:30:00+05:30",
                                             stop=51700, atr=360), check_time=False)
    assert blocked.outcome.value == "blocked" and store.round_trips - before == 1
    before = store.round_trips
    engine.process_payload(payload("PYRAMID", "BANK_NIFTY", "Long_2", 52800, "2026-10-30T12:30:00+05:30",
                                   stop=52300, atr=360), check_time=False)
    assert store.round_trips - before == 2
    assert [o["status"] for o in store.orders.orders_for_signal(fingerprint_of(entry))] == ["filled"]


def test_cache_never_serves_an_older_version(store: Store) -> None:
    p = position()
    store.book.save_position(p)
    p.current_stop = D("51900.00")
    store.book.save_position(p)  # version 2 seen committed
    stale = position(version=1)
    store.book._remember(stale)  # an older copy (e.g. a slow read) must lose
    cached = store.book.get_position(p.position_id)
    assert cached is not None and cached.version == 2 and cached.current_stop == D("51900.00")


def test_stop_update_persists(store: Store, db_config: DatabaseConfig) -> None:
    engine = TradingEngine(store=store)
    engine.process_payload(payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30",
                                   stop=51650, atr=350, er=0.85), check_time=False)
    assert engine.update_stops("BANK_NIFTY", D("53000"), D("350")) == ["BANK_NIFTY_Long_1"]
    fresh = TradingEngine(store=Store(db_config))
    assert fresh.portfolio.positions["BANK_NIFTY_Long_1"].current_stop == D("52125.00")  # 53,000 - 2.5 x 350
    assert fresh.portfolio.marks["BANK_NIFTY"] == D("53000")


def test_book_loads_equity_and_saves_every_close(store: Store,
                                                 db_config: DatabaseConfig) -> None:
    from pm_engine.core.portfolio import Book

    engine = TradingEngine(store=store)
    engine.process_payload(payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30",
                                   stop=51650, atr=350, er=0.85), check_time=False)
    book = Book(store=Store(db_config).book)
    assert book.positions["BANK_NIFTY_Long_1"].is_base_position is True
    realized = book.close_position("BANK_NIFTY_Long_1", D("52500"), T0, "MANUAL")  # 500 x 4 x 30
    assert realized == D("60000")
    reloaded = Book(store=Store(db_config).book)
    assert reloaded.closed_equity == D("5060000.00") and reloaded.positions == {}
    assert reloaded.pyramiding == {}


def test_stale_decision_is_redecided_from_the_returned_state(store: Store,
                                                             db_config: DatabaseConfig) -> None:
    """Another instance moved the portfolio: refused, nothing written, re-decided without a reload trip."""
    behind = TradingEngine(store=store)  # loads version 1
    ahead = TradingEngine(store=Store(db_config))
    ahead.process_payload(payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30",
                                  stop=51650, atr=350, er=0.85), check_time=False)
    before = store.round_trips
    result = behind.process_payload(payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52100, "2026-10-30T10:45:00+05:30",
                                            stop=51750, atr=350, er=0.85), check_time=False)
    assert result.outcome.value == "blocked" and "already open" in result.reason  # decided on the fresh state
    assert store.round_trips - before == 3  # the refused call (carrying the state), then lock + apply-and-commit
    assert behind.portfolio.version == ahead.portfolio.version + 1
    with store.transaction() as cur:
        cur.execute("SELECT processing_status, count(*) AS n FROM pm.signal_log GROUP BY 1 ORDER BY 1")
        assert [(r["processing_status"], r["n"]) for r in cur.fetchall()] == [("blocked", 1), ("executed", 1)]
    # a signal another instance has logged: duplicate even when decided from an old version
    third = TradingEngine(store=Store(db_config))
    ahead.process_payload(payload("EXIT", "BANK_NIFTY", "ALL", 52500, "2026-10-30T11:00:00+05:30", reason="SIGNAL"),
                          check_time=False)  # third is now behind
    repeat = third.process_payload(payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52100, "2026-10-30T10:45:00+05:30",
                                           stop=51750, atr=350, er=0.85), check_time=False)
    assert repeat.outcome.value == "duplicate"


def test_stopped_out_and_reentered_in_one_signal(store: Store, db_config: DatabaseConfig) -> None:
    """A base entry below the open base's stop closes it (STOP_LOSS) and re-opens the same id: both written."""
    engine = TradingEngine(store=store)
    engine.process_payload(payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30",
                                   stop=51650, atr=350, er=0.85), check_time=False)
    again = engine.process_payload(payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 51600, "2026-10-30T11:30:00+05:30",
                                           stop=51250, atr=350, er=0.85), check_time=False)
    assert again.outcome.value == "executed" and again.details["stopped_out"] == ["BANK_NIFTY_Long_1"]
    with store.transaction() as cur:
        cur.execute("SELECT position_id, status, entry_price, realized_pnl FROM pm.portfolio_positions "
                    "ORDER BY status DESC")
        rows = cur.fetchall()
    assert [(r["position_id"], r["status"], r["entry_price"]) for r in rows] == [
        ("BANK_NIFTY_Long_1", "open", D("51600.00")), ("BANK_NIFTY_Long_1@20261030T050000Z", "closed", D("52000.00"))]
    assert rows[1]["realized_pnl"] == D("-48000.00")  # (51,600 - 52,000) x 4 x 30
    fresh = TradingEngine(store=Store(db_config))
    assert fresh.portfolio.closed_equity == D("4952000.00") and list(fresh.portfolio.positions) == ["BANK_NIFTY_Long_1"]


def test_dropped_connection_is_replaced_transparently(store: Store, pg2: Any) -> None:
    assert store.ping() > 0
    with pg2.cursor() as cur:  # kill every backend of this store, as a server restart would
        cur.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = 'pm-engine' AND pid <> pg_backend_pid()")
    assert store.book.get_portfolio_state() is not None  # dead pooled connections dropped, a new one made


def test_unreachable_database_answers_unavailable_within_the_budget(store: Store) -> None:
    import psycopg2.pool

    slept: list[float] = []
    store._sleep = slept.append
    store.pool = psycopg2.pool.ThreadedConnectionPool(0, 2, host="127.0.0.1", port=1, dbname="x", connect_timeout=1)
    with pytest.raises(DatabaseUnavailableError, match="database connection lost"):
        store.ping()
    assert slept and sum(slept) <= 1.0  # backs off, but never past the 1 s budget


def test_locked_commit_duplicate_and_errors_write_nothing(store: Store) -> None:
    engine = TradingEngine(store=store)
    s = signal()
    engine.process_signal(s)
    decided: list[Any] = []
    assert store.book._commit_locked(s, engine.portfolio.version, decided.append, "inst") == Duplicate()  # current
    assert decided == []  # never asked to decide

    other = parse_signal(payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 78000, "2026-10-30T11:30:00+05:30", stop=77000,
                                 atr=400, er=0.8), DEFAULT_INSTRUMENTS)

    def broken(state: Any) -> Any:
        work = engine.portfolio.clone()
        result = engine._decide(other, work)
        work.positions["GOLD_MINI_Long_1"].lots = -1  # a value the table's CHECK refuses
        return result, work
    with pytest.raises(InvalidArgumentError):
        store.book._commit_locked(other, engine.portfolio.version, broken, "inst")

    def failing(state: Any) -> Any:
        raise RuntimeError("decision failed")
    with pytest.raises(RuntimeError):
        store.book._commit_locked(other, engine.portfolio.version, failing, "inst")
    assert store.signals.check_duplicate_signal(other.fingerprint) is False  # nothing of either attempt was written
    assert store.ping() > 0  # and the connection went back to the pool usable (no transaction left open)
    with store.transaction() as cur:
        cur.execute("SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'idle in transaction'")
        assert cur.fetchone()["n"] == 0


def test_documents_round_trip_through_json() -> None:
    from pm_engine.store.codec import dumps, position_from_row

    with pytest.raises(TypeError, match="cannot serialise object"):
        dumps(object())
    row = {"position_id": "COPPER_Long_1", "instrument": "COPPER", "entry_timestamp": "2026-10-30T05:00:00+00:00",
           "entry_price": 800.5, "lots": 3, "quantity": 7500, "initial_stop": 790, "current_stop": 790,
           "highest_close": 800.5}
    p = position_from_row(row)
    assert p.entry_price == D("800.5") and isinstance(p.initial_stop, D) and p.entry_timestamp.tzinfo is not None


def test_two_instances_alternating_stay_within_two_round_trips(store: Store,
                                                               db_config: DatabaseConfig) -> None:
    """Once an instance has met a stale decision it commits in guarded transactions: ≤ 2 round trips each."""
    from pm_engine.store.outbox import DatabasePaperBroker
    from pm_engine.tools.samples import mixed_stream

    other_db, fills = Store(db_config), Store(db_config)
    # fills through their own store, so the count is the signal path's alone
    engines = [TradingEngine(store=m, broker=DatabasePaperBroker(fills.orders)) for m in (store, other_db)]
    reference = TradingEngine()
    trips: list[int] = []
    try:
        for i, body in enumerate(mixed_stream(40, seed=5, duplicate_ratio=0.0)):
            engine = engines[i % 2]
            gateway = engine.store
            assert gateway is not None
            before = gateway.round_trips
            got = engine.process_payload(body, check_time=False)
            trips.append(gateway.round_trips - before)
            want = reference.process_payload(body, check_time=False)
            assert (got.outcome, got.reason) == (want.outcome, want.reason), i
        assert max(trips[:3]) == 3  # the first stale decision of each instance: refused + lock + apply
        assert max(trips[3:]) <= 2  # from then on, guarded: never more than two
        fresh = TradingEngine(store=Store(db_config))
        assert fresh.portfolio.closed_equity == reference.portfolio.closed_equity
        assert sorted(fresh.portfolio.positions) == sorted(reference.portfolio.positions)
    finally:
        other_db.close()
        fills.close()


def test_a_fractional_point_value_books_every_exit(store: Store) -> None:
    """A point value with more than two decimals (a custom instrument, a lot-size change) gives realized P&L finer
    than a paisa; the database stores closed equity in paise and refuses a figure that disagrees (PM094), so the
    engine keeps the book in paise too and the second exit is booked like the first."""
    from dataclasses import replace

    instruments = {**DEFAULT_INSTRUMENTS, "GOLD_MINI": replace(DEFAULT_INSTRUMENTS["GOLD_MINI"],
                                                               point_value=D(175) / D(3))}
    engine = TradingEngine(instruments=instruments, store=store)
    for n, (entry, exit_) in enumerate([(75000, 75000.05), (75100, 75100.05)]):
        day = f"2026-10-{27 + n}"
        entered = engine.process_payload(payload("BASE_ENTRY", "GOLD_MINI", "Long_1", entry, f"{day}T10:30:00+05:30",
                                                 stop=entry - 300, atr=400, er=0.8), check_time=False)
        assert entered.outcome.value == "executed", entered.reason
        done = engine.process_payload(payload("EXIT", "GOLD_MINI", "Long_1", exit_, f"{day}T14:30:00+05:30",
                                              reason="SIGNAL"), check_time=False)
        assert done.outcome.value == "executed", done.reason
    stored = D(str(store.book.get_portfolio_state()["closed_equity"]))
    assert engine.portfolio.closed_equity == stored and stored == stored.quantize(D("0.01"))
