"""Issue 20 with the database: contracts kept across a stop-out and re-entry, a restart and recovery."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

from pm_engine.config import DatabaseConfig
from pm_engine.core.errors import DatabaseUnavailableError
from pm_engine.core.models import Outcome
from pm_engine.core.portfolio import Book
from pm_engine.store.gateway import Store
from tests.helpers import rows
from tests.unit.test_engine_contracts import BASE, PYRAMID, engine, send


def test_stopped_out_on_the_old_contract_and_reentered_on_the_next_in_one_signal(db_config: DatabaseConfig) -> None:
    """The closes are written before the new base: the database never sees two contracts open at once (PM030)."""
    store = Store(db_config)
    try:
        e = engine(store=store)
        send(e, "BASE_ENTRY", "Long_1", 52000, "2026-12-10T10:30:00+05:30", **BASE)
        send(e, "PYRAMID", "Long_2", 53000, "2026-12-14T10:30:00+05:30", **PYRAMID)
        again = send(e, "BASE_ENTRY", "Long_1", 51500, "2026-12-23T10:30:00+05:30", stop=51150, atr=350, er=0.85)
        assert again.outcome is Outcome.EXECUTED, again.reason
        assert sorted(again.details["stopped_out"]) == ["BANK_NIFTY_Long_1", "BANK_NIFTY_Long_2"]
        assert rows(db_config, "SELECT position_id, status, futures_symbol FROM pm.portfolio_positions "
                               "ORDER BY status DESC, position_id") == [
            ("BANK_NIFTY_Long_1", "open", "BANKNIFTY25JAN27FUT"),
            ("BANK_NIFTY_Long_1@20261210T050000Z", "closed", "BANKNIFTY29DEC26FUT"),
            ("BANK_NIFTY_Long_2", "closed", "BANKNIFTY29DEC26FUT")]
        fp = again.fingerprint[:24]
        orders = store.orders.orders_for_signal(again.fingerprint)
        assert [(o["client_order_id"], o["side"], o["symbol"]) for o in orders] == [
            (f"pm-{fp}-Long_1", "BUY", "BANKNIFTY25JAN27FUT"),  # the new base's order is not lost to the stop-out's
            (f"pm-{fp}-Long_1-SL", "SELL", "BANKNIFTY29DEC26FUT"),
            (f"pm-{fp}-Long_2-SL", "SELL", "BANKNIFTY29DEC26FUT")]
        reloaded = Book(store=store.book)  # what a restart recovers: the contract is in the row
        assert reloaded.positions["BANK_NIFTY_Long_1"].expiry == "2027-01-25"
    finally:
        store.close()


def test_a_2025_position_keeps_its_35_unit_lots_across_a_restart(db_config: DatabaseConfig) -> None:
    store = Store(db_config)
    try:
        e = engine(store=store)
        send(e, "BASE_ENTRY", "Long_1", 52000, "2025-11-28T10:30:00+05:30", **BASE)
        send(e, "BASE_ENTRY", "Long_1", 78000, "2025-11-28T10:35:00+05:30", instrument="GOLD_MINI", stop=77000,
             atr=600, er=0.5)
        e.send_queued()
        again = Book(store=store.book)
        held = again.positions["BANK_NIFTY_Long_1"]
        assert (held.lots, held.quantity, held.futures_symbol) == (3, 105, "BANKNIFTY30DEC25FUT")
        assert again.metrics().margin_used == e.portfolio.metrics().margin_used == 3 * D(315000) + 2 * D(105000)
        again.update_unrealized_pnl("BANK_NIFTY", D(52100))
        assert held.unrealized_pnl == D(100) * 3 * 35
        assert rows(db_config, "SELECT symbol, quantity, product FROM pm.queued_orders() ORDER BY 1") == []
        assert rows(db_config, "SELECT symbol, lots, quantity, leg FROM pm.broker_orders ORDER BY symbol") == [
            ("BANKNIFTY30DEC25FUT", 3, 105, "FUT"), ("GOLDM05JAN26FUT", 2, 2, "FUT")]
    finally:
        store.close()


def test_pending_orders_keep_their_contract_through_recovery(db_config: DatabaseConfig) -> None:
    store = Store(db_config)
    try:
        class Down:
            def place_orders(self, orders: list[Any]) -> list[Any]:
                raise DatabaseUnavailableError("broker down")

        e = engine(store=store, broker=Down())
        send(e, "BASE_ENTRY", "Long_1", 52000, "2026-12-01T10:30:00+05:30", **BASE)
        [pending] = store.orders.queued()
        assert (pending.exchange, pending.symbol, pending.quantity, pending.product, pending.leg) == (
            "NFO", "BANKNIFTY29DEC26FUT", 120, "NRML", "FUT")
    finally:
        store.close()
