"""Issue 20 in the engine: every position records its contract, pyramids use the base's, orders name what a broker
needs, sizing follows the contract's lot size, and the status shows the contract and a due roll."""

from __future__ import annotations

from datetime import date
from decimal import Decimal as D
from typing import Any

from pm_engine.core.engine import TradingEngine
from pm_engine.core.status import render_status
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS, BANK_NIFTY_CONTRACT, PortfolioConfig, with_lot_size
from pm_engine.core.models import Outcome
from pm_engine.core.orders import PaperBroker
from pm_engine.core.sizing import size_base_entry
from tests.helpers import payload

BASE = {"stop": 51650, "atr": 350, "er": 0.85}
PYRAMID = {"stop": 52700, "atr": 350, "er": 0.85}


def engine(**kwargs: Any) -> TradingEngine:
    return TradingEngine(max_signal_age=None, **kwargs)


def send(e: TradingEngine, kind: str, position: str, price: float, when: str, instrument: str = "BANK_NIFTY",
         **extra: Any) -> Any:
    reason = "SIGNAL" if kind == "EXIT" else None
    return e.process_payload(payload(kind, instrument, position, price, when, reason=reason, **extra),
                             check_time=False)


def orders(e: TradingEngine) -> list[Any]:
    assert isinstance(e.broker, PaperBroker)
    return list(e.broker.orders.values())


def test_a_base_entry_records_its_contract_and_orders_it_by_symbol() -> None:
    e = engine()
    result = send(e, "BASE_ENTRY", "Long_1", 52000, "2026-12-01T10:30:00+05:30", **BASE)
    assert result.outcome is Outcome.EXECUTED
    assert result.reason == "entered 4 lots of BANK_NIFTY (BANKNIFTY29DEC26FUT) at 52000.00, limited by risk"
    assert result.details["contract"] == "BANKNIFTY29DEC26FUT" and "contract_warning" not in result.details
    base = e.portfolio.positions["BANK_NIFTY_Long_1"]
    assert (base.futures_symbol, base.expiry, base.contract_month, base.quantity) == (
        "BANKNIFTY29DEC26FUT", "2026-12-29", "2026-12", 120)
    assert base.strike is None and base.ce_symbol is None and base.pe_symbol is None  # futures execution
    [order] = orders(e)
    assert (order.exchange, order.symbol, order.side, order.lots, order.quantity, order.product, order.leg) == (
        "NFO", "BANKNIFTY29DEC26FUT", "BUY", 4, 120, "NRML", "FUT")  # NFO: units
    assert order.price == D("52000.00")  # the paper broker fills at the signal price


def test_mcx_orders_are_in_lots_by_default_or_units_by_the_broker_setting() -> None:
    for unit, expected in (("lots", 2), ("units", 200)):
        e = engine(mcx_quantity=unit)
        result = send(e, "BASE_ENTRY", "Long_1", 78000, "2026-12-01T10:30:00+05:30", instrument="GOLD_MINI",
                      stop=77000, atr=600, er=0.5)
        assert result.outcome is Outcome.EXECUTED, result.reason
        position = e.portfolio.positions["GOLD_MINI_Long_1"]
        assert position.futures_symbol == "GOLDM05JAN27FUT"  # December's contract is inside its roll window
        assert "2027 expiries are computed from the rules" in result.details["contract_warning"]
        [order] = orders(e)
        assert position.lots == 2 and (order.exchange, order.symbol, order.quantity) == (
            "MCX", "GOLDM05JAN27FUT", expected)


def test_a_replay_of_2025_alerts_sizes_bank_nifty_with_that_contracts_lot_size() -> None:
    then, now = engine(), engine()
    old = send(then, "BASE_ENTRY", "Long_1", 52000, "2025-11-28T10:30:00+05:30", **BASE)
    new = send(now, "BASE_ENTRY", "Long_1", 52000, "2026-10-30T10:30:00+05:30", **BASE)
    dec_2025 = with_lot_size(DEFAULT_INSTRUMENTS["BANK_NIFTY"], 35)
    expected = size_base_entry(D(52000), D(51650), D(350), D("0.85"), D(5000000), D(0), dec_2025, PortfolioConfig())
    assert (old.details["lots"], new.details["lots"]) == (expected.lots, 4) == (3, 4)  # 42,500 / 12,250 and / 10,500
    held = then.portfolio.positions["BANK_NIFTY_Long_1"]
    assert (held.futures_symbol, held.quantity) == ("BANKNIFTY30DEC25FUT", 3 * 35)
    assert held.initial_risk == D(350) * 3 * 35
    assert then.portfolio.metrics().margin_used == 3 * D(315000)  # 270,000 per 30 units, per 35-unit lot
    closed = send(then, "EXIT", "ALL", 52400, "2025-11-28T14:30:00+05:30")
    assert D(closed.details["realized_pnl"]) == D(400) * 3 * 35
    assert [o.quantity for o in orders(then)] == [105, 105]


def test_a_pyramid_trades_its_base_contract_even_past_the_roll_date() -> None:
    e = engine()
    send(e, "BASE_ENTRY", "Long_1", 52000, "2025-12-20T10:30:00+05:30", **BASE)  # Dec 2025 (35 units)
    result = send(e, "PYRAMID", "Long_2", 53000, "2025-12-29T10:30:00+05:30", **PYRAMID)  # after its 23 Dec roll date
    assert result.outcome is Outcome.EXECUTED, result.reason
    assert result.details["contract"] == "BANKNIFTY30DEC25FUT"
    pyramid = e.portfolio.positions["BANK_NIFTY_Long_2"]
    assert (pyramid.futures_symbol, pyramid.expiry, pyramid.contract_month) == (
        "BANKNIFTY30DEC25FUT", "2025-12-30", "2025-12")
    assert pyramid.quantity == pyramid.lots * 35  # the base contract's lot size, not January's 30
    assert {o.symbol for o in orders(e)} == {"BANKNIFTY30DEC25FUT"}


def test_layers_left_without_their_base_keep_the_instrument_on_their_contract() -> None:
    e = engine()
    send(e, "BASE_ENTRY", "Long_1", 52000, "2026-12-10T10:30:00+05:30", **BASE)
    send(e, "PYRAMID", "Long_2", 53000, "2026-12-14T10:30:00+05:30", **PYRAMID)
    send(e, "EXIT", "Long_1", 53100, "2026-12-15T10:30:00+05:30")
    again = send(e, "BASE_ENTRY", "Long_1", 53200, "2026-12-23T10:30:00+05:30", stop=52900, atr=350, er=0.85)
    assert again.outcome is Outcome.EXECUTED, again.reason
    assert {p.futures_symbol for p in e.portfolio.positions.values()} == {"BANKNIFTY29DEC26FUT"}  # not JAN27
    fresh = engine()
    send(fresh, "BASE_ENTRY", "Long_1", 53200, "2026-12-23T10:30:00+05:30", stop=52900, atr=350, er=0.85)
    assert fresh.portfolio.positions["BANK_NIFTY_Long_1"].futures_symbol == "BANKNIFTY25JAN27FUT"


def test_a_synthetic_entry_and_exit_are_two_leg_orders_of_one_decision() -> None:
    instruments = dict(DEFAULT_INSTRUMENTS)
    from dataclasses import replace

    instruments["BANK_NIFTY"] = replace(instruments["BANK_NIFTY"],
                                        contract=replace(BANK_NIFTY_CONTRACT, execution="synthetic"))
    e = engine(instruments=instruments)
    entered = send(e, "BASE_ENTRY", "Long_1", 52049.5, "2026-12-01T10:30:00+05:30", stop=51699.5, atr=350, er=0.85)
    position = e.portfolio.positions["BANK_NIFTY_Long_1"]
    assert (position.strike, position.ce_symbol, position.pe_symbol, position.futures_symbol) == (
        52000, "BANKNIFTY29DEC2652000CE", "BANKNIFTY29DEC2652000PE", "BANKNIFTY29DEC26FUT")
    fingerprint = entered.fingerprint[:24]
    assert [(o.client_order_id, o.leg, o.side, o.symbol, o.quantity) for o in orders(e)] == [
        (f"pm-{fingerprint}-Long_1-CE", "CE", "BUY", "BANKNIFTY29DEC2652000CE", 120),
        (f"pm-{fingerprint}-Long_1-PE", "PE", "SELL", "BANKNIFTY29DEC2652000PE", 120)]
    send(e, "EXIT", "ALL", 53010, "2026-12-02T10:30:00+05:30")  # the stored legs, whatever the price is now
    assert [(o.leg, o.side, o.symbol) for o in orders(e)][2:] == [
        ("CE", "SELL", "BANKNIFTY29DEC2652000CE"), ("PE", "BUY", "BANKNIFTY29DEC2652000PE")]
    assert len({o.fingerprint for o in orders(e)[2:]}) == 1


def test_status_shows_each_contract_days_to_expiry_and_a_due_roll() -> None:
    e = engine()
    send(e, "BASE_ENTRY", "Long_1", 52000, "2026-12-01T10:30:00+05:30", **BASE)
    before = render_status(e.portfolio, on=date(2026, 12, 21))["positions"][0]
    assert {k: before[k] for k in ("contract", "exchange", "expiry", "days_to_expiry", "roll_date", "days_to_roll",
                                   "roll_due", "quantity")} == {
        "contract": "BANKNIFTY29DEC26FUT", "exchange": "NFO", "expiry": "2026-12-29", "days_to_expiry": 8,
        "roll_date": "2026-12-22", "days_to_roll": 1, "roll_due": False, "quantity": 120}
    assert render_status(e.portfolio, on=date(2026, 12, 22))["positions"][0]["roll_due"] is True
    assert "ce_symbol" not in before


# -- on PostgreSQL ---------------------------------------------------------------------------------
