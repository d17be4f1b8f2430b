"""Issue 22 in the core: a group's roll plan (next contract, whole lots of its size rounded down, order units, the
synthetic strike) and the in-memory roll's accounting (old P&L realized, stops shifted by the basis)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D
from pathlib import Path
from typing import Any

import pytest

from pm_engine.core.contracts import ContractCalendar
from pm_engine.core.engine import TradingEngine
from pm_engine.core.replay.rollover import roll_in_memory
from pm_engine.core.rollover import RollPlanError, plan_roll, resized_lots
from tests.helpers import payload
from tests.unit.test_contracts import load_instruments_from

WHEN = "2026-12-01T11:00:00+05:30"


def engine(**kwargs: Any) -> TradingEngine:
    return TradingEngine(max_signal_age=None, **kwargs)


def enter(e: TradingEngine, instrument: str, price: float, stop: float, atr: float) -> None:
    result = e.process_payload(payload("BASE_ENTRY", instrument, "Long_1", price, WHEN, stop=stop, atr=atr, er=0.85),
                               check_time=False)
    assert result.outcome.value == "executed", result


@pytest.mark.parametrize("lots, size, new, expected",
                         [(3, 100, 150, 2), (7, 35, 30, 8), (1, 30, 35, 0), (4, 30, 30, 4)])
def test_a_lot_size_change_resizes_to_whole_lots_rounded_down(lots: int, size: int, new: int, expected: int) -> None:
    assert resized_lots(lots, size, new) == expected
    assert resized_lots(lots, size, new) * new <= lots * size


def test_plan_moves_the_group_into_the_next_contract_in_the_order_unit() -> None:
    e = engine()
    enter(e, "BANK_NIFTY", 52000, 51650, 350)
    enter(e, "GOLD_MINI", 75000, 74300, 400)
    bank = plan_roll(e.portfolio, e.contracts, "BANK_NIFTY")
    [layer] = bank.layers
    p = e.portfolio.positions[layer.position_id]
    assert (bank.from_symbol, bank.to.symbol) == ("BANKNIFTY29DEC26FUT", "BANKNIFTY25JAN27FUT")
    assert (layer.close_quantity, layer.open_quantity) == (p.quantity, p.quantity)  # NFO: units
    assert layer.point_value == layer.new_point_value and layer.price == D("52000.00")
    gold = plan_roll(e.portfolio, e.contracts, "GOLD_MINI")
    assert (gold.from_symbol, gold.to.symbol) == ("GOLDM05JAN27FUT", "GOLDM05FEB27FUT")
    assert gold.layers[0].close_quantity == e.portfolio.positions[gold.layers[0].position_id].lots  # MCX: lots
    units = plan_roll(e.portfolio, e.contracts, "GOLD_MINI", mcx_quantity="units")
    assert units.layers[0].close_quantity == e.portfolio.positions[gold.layers[0].position_id].quantity
    assert not bank.due(bank.roll_date.replace(day=21)) and bank.due(bank.roll_date) and not bank.expired(bank.expiry)
    with pytest.raises(RollPlanError, match="no open COPPER"):
        plan_roll(e.portfolio, e.contracts, "COPPER")


def test_a_synthetic_layer_plans_the_new_strike_from_the_current_price(tmp_path: Path) -> None:
    table = load_instruments_from({"BANK_NIFTY": {"contract": {"execution": "synthetic", "strike_step": 500}}},
                                  tmp_path)
    e = engine(instruments=table, contracts=ContractCalendar(table))
    enter(e, "BANK_NIFTY", 52000, 51650, 350)
    [layer] = plan_roll(e.portfolio, e.contracts, "BANK_NIFTY", mark=D("53260")).layers
    assert (layer.to_strike, layer.to_ce_symbol, layer.to_pe_symbol) == \
        (53500, "BANKNIFTY25JAN2753500CE", "BANKNIFTY25JAN2753500PE")


def test_the_in_memory_roll_realizes_the_old_pnl_and_shifts_the_stops() -> None:
    e = engine()
    enter(e, "GOLD_MINI", 75000, 74300, 400)
    plan = plan_roll(e.portfolio, e.contracts, "GOLD_MINI")
    [layer] = plan.layers
    p = e.portfolio.positions[layer.position_id]
    before = (e.portfolio.closed_equity, p.initial_stop, p.current_stop, p.highest_close, p.lots)
    at = datetime(2026, 12, 28, 6, 0, tzinfo=timezone.utc)
    [done] = roll_in_memory(e.portfolio, plan, D("75600"), D("75850"), at)
    pnl = (D(600) * before[4] * layer.point_value).quantize(D("0.01"))
    assert done["close_pnl"] == pnl and done["basis"] == D(250)
    assert e.portfolio.closed_equity == before[0] + pnl and p.rollover_pnl == pnl
    assert (p.initial_stop, p.current_stop, p.highest_close) == tuple(x + 250 for x in before[1:4])
    assert (p.entry_price, p.original_entry_price, p.futures_symbol, p.rollover_count, p.rollover_timestamp) == \
        (D(75850), D(75000), "GOLDM05FEB27FUT", 1, at)
    assert p.original_expiry == "2027-01-05" and p.expiry == "2027-02-05"


def test_the_in_memory_roll_drops_the_old_signal_price_and_enters_a_synthetics_legs(tmp_path: Path) -> None:
    """As pm.roll_move_layer: the old contract's alert price is no reference for the new fill (a book loaded from
    the database holds one), and a synthetic layer's call and put are entered at their paper prices."""
    e = engine()
    enter(e, "GOLD_MINI", 75000, 74300, 400)
    plan = plan_roll(e.portfolio, e.contracts, "GOLD_MINI")
    p = e.portfolio.positions[plan.layers[0].position_id]
    p.signal_price = D("74990")
    roll_in_memory(e.portfolio, plan, D("75600"), D("75850"), datetime(2026, 12, 28, 6, 0, tzinfo=timezone.utc))
    assert (p.signal_price, p.ce_entry_price, p.pe_entry_price) == (None, None, None)

    table = load_instruments_from({"BANK_NIFTY": {"contract": {"execution": "synthetic", "strike_step": 500}}},
                                  tmp_path)
    s = engine(instruments=table, contracts=ContractCalendar(table))
    enter(s, "BANK_NIFTY", 52000, 51650, 350)
    plan = plan_roll(s.portfolio, s.contracts, "BANK_NIFTY", mark=D("53260"))
    q = s.portfolio.positions[plan.layers[0].position_id]
    roll_in_memory(s.portfolio, plan, D("53260"), D("53310"), datetime(2026, 12, 28, 6, 0, tzinfo=timezone.utc))
    assert (q.strike, q.ce_entry_price, q.pe_entry_price) == (53500, D("100.00"), D("290.00"))
    assert q.strike + q.ce_entry_price - q.pe_entry_price == q.entry_price == D("53310")
