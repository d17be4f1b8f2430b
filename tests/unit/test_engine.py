"""BASE_ENTRY -> PYRAMID -> EXIT for each reference instrument, in memory, with the arithmetic shown."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from pm_engine.core.engine import TradingEngine
from pm_engine.core.models import Outcome
from pm_engine.core.orders import PaperBroker, client_order_id
from tests.helpers import payload


def run(engine: TradingEngine, body: dict[str, Any]) -> Any:
    return engine.process_payload(body, check_time=False)


def test_bank_nifty_sequence() -> None:
    engine = TradingEngine()
    r = run(engine, payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30", stop=51650,
                            atr=350, er=0.85))
    assert r.outcome is Outcome.EXECUTED and r.details["lots"] == 4 and r.details["limiter"] == "risk"
    base = engine.portfolio.positions["BANK_NIFTY_Long_1"]
    assert (base.quantity, base.is_base_position, base.risk_contribution) == (120, True, D("0.84"))
    r = run(engine, payload("PYRAMID", "BANK_NIFTY", "Long_2", 52800, "2026-10-30T11:30:00+05:30", stop=52300,
                            atr=360))
    assert (r.outcome, r.details["lots"], r.details["limiter"]) == (Outcome.EXECUTED, 1, "risk_budget")
    # the base trailed first: 52,800 - 2.5 x 360 = 51,900
    assert engine.portfolio.positions["BANK_NIFTY_Long_1"].current_stop == D(51900)
    pyramid = engine.portfolio.positions["BANK_NIFTY_Long_2"]
    assert (pyramid.current_stop, pyramid.highest_close, pyramid.is_base_position) == (D(52300), D(52800), False)
    assert engine.portfolio.pyramiding["BANK_NIFTY"].last_pyramid_price == D(52800)
    r = run(engine, payload("EXIT", "BANK_NIFTY", "ALL", 53500, "2026-10-30T12:30:00+05:30", reason="SIGNAL"))
    # base 1,500 x 4 x 30 = 180,000; pyramid 700 x 1 x 30 = 21,000
    assert r.outcome is Outcome.EXECUTED and D(r.details["realized_pnl"]) == D(201_000)
    assert engine.portfolio.closed_equity == D(5_201_000)
    assert engine.portfolio.positions == {} and "BANK_NIFTY" not in engine.portfolio.pyramiding


def test_gold_mini_sequence() -> None:
    engine = TradingEngine()
    run(engine, payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 78000, "2026-10-30T10:30:00Z", stop=77880, atr=600,
                        er=0.12))
    assert engine.portfolio.positions["GOLD_MINI_Long_1"].lots == 5  # exactly 5, not 4
    # PYRAMID at 78,600 (stop 78,400, atr 600): trail 78,600 - 2 x 600 = 77,400 < 77,880, stop unchanged.
    # equity 5,000,000 + 0.5 x 600 x 5 x 10 = 5,015,000; A = floor((3,009,000 - 525,000) / 105,000) = 23
    # B = floor(5 x 0.5) = 2; C = floor(0.5 x (30,000 - 6,000) / (200 x 10)) = 6 -> 2 lots, geometric
    r = run(engine, payload("PYRAMID", "GOLD_MINI", "Long_2", 78600, "2026-10-30T11:30:00Z", stop=78400, atr=600))
    assert (r.details["lots"], r.details["limiter"]) == (2, "geometric")
    assert r.details["constraints"] == {"margin": "23.0000", "geometric": "2.0000", "risk_budget": "6.0000"}
    assert engine.portfolio.positions["GOLD_MINI_Long_1"].current_stop == D(77880)
    run(engine, payload("EXIT", "GOLD_MINI", "ALL", 79000, "2026-10-30T12:30:00Z", reason="SIGNAL"))
    # base 1,000 x 5 x 10 = 50,000; pyramid 400 x 2 x 10 = 8,000
    assert engine.portfolio.closed_equity == D(5_058_000)


def test_silver_mini_sequence_with_blocked_pyramid_and_layer_exits() -> None:
    engine = TradingEngine()
    run(engine, payload("BASE_ENTRY", "SILVER_MINI", "Long_1", 90000, "2026-10-30T10:30:00Z", stop=88000, atr=1000,
                        er=0.5))
    assert engine.portfolio.positions["SILVER_MINI_Long_1"].lots == 2  # floor(2.5)
    # at 93,000: profit 3,000 x 2 x 5 = 30,000, base risk 2,000 x 2 x 5 = 20,000
    # C = floor(0.5 x 10,000 / (1,500 x 5)) = 0 -> blocked
    r = run(engine, payload("PYRAMID", "SILVER_MINI", "Long_2", 93000, "2026-10-30T11:00:00Z", stop=91500, atr=1000))
    assert r.outcome is Outcome.BLOCKED and r.reason == "zero lots, limited by risk_budget"
    assert engine.portfolio.positions["SILVER_MINI_Long_1"].current_stop == D(90000)  # trailed: 93,000 - 3 x 1,000
    # at 95,000: C = floor(0.5 x 30,000 / 7,500) = 2; B = floor(2 x 0.5) = 1; A = 5 -> 1 lot, geometric
    r = run(engine, payload("PYRAMID", "SILVER_MINI", "Long_2", 95000, "2026-10-30T11:30:00Z", stop=93500, atr=1000))
    assert (r.outcome, r.details["lots"], r.details["limiter"]) == (Outcome.EXECUTED, 1, "geometric")
    r = run(engine, payload("EXIT", "SILVER_MINI", "Long_2", 94000, "2026-10-30T12:00:00Z", reason="SIGNAL"))
    assert D(r.details["realized_pnl"]) == D(-5000)  # (94,000 - 95,000) x 1 x 5
    assert engine.portfolio.pyramiding["SILVER_MINI"].base_position_id == "SILVER_MINI_Long_1"
    again = run(engine, payload("EXIT", "SILVER_MINI", "Long_2", 93000, "2026-10-30T12:15:00Z", reason="SIGNAL"))
    assert again.outcome is Outcome.EXECUTED and again.reason.startswith("no-op")  # never a second P&L
    run(engine, payload("EXIT", "SILVER_MINI", "Long_1", 94000, "2026-10-30T12:30:00Z", reason="SIGNAL"))
    # base (94,000 - 90,000) x 2 x 5 = 40,000; total 5,000,000 - 5,000 + 40,000
    assert engine.portfolio.closed_equity == D(5_035_000)
    assert "SILVER_MINI" not in engine.portfolio.pyramiding


def test_copper_sequence_with_a_loss() -> None:
    engine = TradingEngine()
    run(engine, payload("BASE_ENTRY", "COPPER", "Long_1", 800, "2026-10-30T10:30:00Z", stop=795, atr=2, er=0.9))
    assert engine.portfolio.positions["COPPER_Long_1"].quantity == 7500  # 3 lots x 2,500
    # at 812: trail 812 - 5 x 2 = 802; equity 5,000,000 + 0.5 x 90,000; A = floor((3,027,000 - 900,000)/300,000) = 7
    # B = floor(3 x 0.5) = 1; C = floor(0.5 x (90,000 - 37,500) / (6 x 2,500)) = 1: tie -> geometric (listed first)
    r = run(engine, payload("PYRAMID", "COPPER", "Long_2", 812, "2026-10-30T11:30:00Z", stop=806, atr=2))
    assert (r.details["lots"], r.details["limiter"]) == (1, "geometric")
    assert engine.portfolio.positions["COPPER_Long_1"].current_stop == D(802)
    r = run(engine, payload("EXIT", "COPPER", "ALL", 790, "2026-10-30T12:30:00Z", reason="STOP_LOSS"))
    # base (790 - 800) x 3 x 2,500 = -75,000; pyramid (790 - 812) x 1 x 2,500 = -55,000
    assert D(r.details["realized_pnl"]) == D(-130_000)
    assert engine.portfolio.closed_equity == D(4_870_000) and engine.portfolio.equity_high == D(5_000_000)


def test_duplicates_and_blocks() -> None:
    broker = PaperBroker()
    engine = TradingEngine(broker=broker)
    entry = payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30", stop=51650, atr=350,
                    er=0.85)
    first = run(engine, entry)
    assert run(engine, entry).outcome is Outcome.DUPLICATE
    assert len(broker.fills) == 1
    assert client_order_id(first.fingerprint, "BANK_NIFTY_Long_1") in broker.fills
    second = run(engine, {**entry, "timestamp": "2026-10-30T10:45:00+05:30"})
    assert second.outcome is Outcome.BLOCKED and "base position already open" in second.reason
    missing = run(engine, payload("EXIT", "GOLD_MINI", "Long_1", 1, "2026-10-30T10:30:00Z", reason="SIGNAL"))
    assert missing.outcome is Outcome.BLOCKED and missing.reason.startswith("position not found")
    orphan = run(engine, payload("PYRAMID", "GOLD_MINI", "Long_2", 79000, "2026-10-30T10:30:00Z", stop=78000, atr=5))
    assert orphan.outcome is Outcome.BLOCKED and orphan.reason == "no open base position for GOLD_MINI"
    zero = run(engine, payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 78000, "2026-10-30T10:30:00Z", stop=77000,
                               atr=600, er=0.01))
    # what one lot needed (issue 28): 1,000 points × ₹10 = ₹10,000 of risk; at ER 0.01 that is 20 % of 50 L
    assert zero.outcome is Outcome.BLOCKED and zero.reason.startswith("zero lots, limited by risk: ")
    assert "1 lot needs ₹10,000.00 of risk: 20.00 % of equity at ER 0.01, above the" in zero.reason, zero.reason
    assert engine.outcomes == {"executed": 1, "duplicate": 1, "blocked": 4}


def test_stop_hit_closes_on_a_later_signal() -> None:
    engine = TradingEngine()
    run(engine, payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30", stop=51650,
                        atr=350, er=0.85))
    r = run(engine, payload("PYRAMID", "BANK_NIFTY", "Long_2", 51600, "2026-10-30T11:30:00+05:30", stop=51000,
                            atr=350))
    assert r.details["stopped_out"] == ["BANK_NIFTY_Long_1"]
    closed = engine.portfolio.closed["BANK_NIFTY_Long_1"]
    assert closed.exit_reason == "STOP_LOSS" and closed.realized_pnl == D(-48000)  # -400 x 4 x 30
    assert r.outcome is Outcome.BLOCKED


@pytest.mark.parametrize("instrument", ["BANK_NIFTY", "GOLD_MINI", "SILVER_MINI", "COPPER"])
def test_status_lists_positions(instrument: str) -> None:
    engine = TradingEngine()
    price = {"BANK_NIFTY": 52000, "GOLD_MINI": 78000, "SILVER_MINI": 90000, "COPPER": 800}[instrument]
    run(engine, payload("BASE_ENTRY", instrument, "Long_1", price, "2026-10-30T10:30:00Z", stop=price * 0.99,
                        atr=price * 0.005, er=0.9))
    status = engine.status()
    assert status["closed_equity"] == "5000000.00" and status["positions"][0]["position_id"] == f"{instrument}_Long_1"
    assert set(status["positions"][0]) >= {"position_id", "instrument", "status", "lots", "entry_price", "current_stop"}
