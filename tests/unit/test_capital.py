"""Capital flows in memory (core/replay/capital.py, the twin of pm.record_capital_flow) and their statistics."""

from __future__ import annotations

from decimal import Decimal as D
from typing import Any

import pytest

from pm_engine.core.capital import InvalidAmountError, InvalidNoteError, WithdrawalRefusedError, parse_amount
from pm_engine.core.engine import TradingEngine
from pm_engine.core.replay.capital import check_amount
from pm_engine.core.replay.statistics import time_weighted_return, trade_stats
from tests.helpers import payload

GOLD = payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 78000, "2026-10-30T10:30:00+05:30", stop=77880, atr=600, er=0.12)
BANK = payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:00:00+05:30", stop=51650, atr=350, er=0.85)


@pytest.mark.parametrize("text, amount", [("1000000", D("1000000")), ("1,000,000.50", D("1000000.50")),
                                          ("1e6", D("1000000")), (250000, D("250000")), (D("0.01"), D("0.01")),
                                          (12.5, D("12.5"))])
def test_parse_amount_reads_exactly(text: Any, amount: D) -> None:
    assert parse_amount(text) == amount and str(parse_amount(text)) == str(amount)


@pytest.mark.parametrize("value", ["ten", "", None, True, [], "1.2.3"])
def test_parse_amount_refuses_what_is_not_a_number(value: Any) -> None:
    with pytest.raises(InvalidAmountError) as caught:
        parse_amount(value)
    assert caught.value.field == "amount" and caught.value.pgcode == "PM060"


@pytest.mark.parametrize("amount", ["0", "-1", "0.001", "100.005", "NaN", "Infinity", "1e13", "10000000000000"])
def test_check_amount_refuses_at_the_thresholds(amount: str) -> None:
    with pytest.raises(InvalidAmountError, match="positive number of rupees with at most two decimals"):
        check_amount(D(amount))


@pytest.mark.parametrize("amount", ["0.01", "100.50", "9999999999999.99"])
def test_check_amount_accepts(amount: str) -> None:
    check_amount(D(amount))


def test_a_deposit_in_memory_sizes_the_next_entry_and_moves_equity_high() -> None:
    engine = TradingEngine(max_signal_age=None)
    assert engine.process_payload(BANK, check_time=False).details["lots"] == 4
    version = engine.portfolio.version
    flow = engine.capital_flow("deposit", D("1000000"), "  savings ")
    assert (flow.closed_equity, flow.note, flow.signed_amount) == (D("6000000.00"), "savings", D("1000000"))
    assert engine.portfolio.equity_high == D("6000000") and engine.portfolio.version == version + 1
    assert engine.process_payload(GOLD, check_time=False).details["lots"] == 6  # 60,000 / 1,200 x 0.12


def test_withdrawals_in_memory_at_the_margin_in_use_and_at_zero() -> None:
    engine = TradingEngine(max_signal_age=None)
    engine.process_payload(BANK, check_time=False)  # margin in use 4 x 270,000 = 1,080,000
    with pytest.raises(WithdrawalRefusedError, match="would leave closed equity 1079999.99 below the margin in use "
                                                     "1080000.00") as caught:
        engine.capital_flow("withdrawal", D("3920000.01"))
    assert caught.value.pgcode == "PM061" and engine.portfolio.closed_equity == D("5000000")
    assert engine.capital_flow("withdrawal", D("3920000.00")).closed_equity == D("1080000.00")
    assert engine.portfolio.equity_high == D("1080000")

    empty = TradingEngine(max_signal_age=None)
    with pytest.raises(WithdrawalRefusedError, match="below zero") as zero:
        empty.capital_flow("withdrawal", D("5000000.01"))
    assert zero.value.pgcode == "PM062"
    with pytest.raises(InvalidNoteError) as long_note:
        empty.capital_flow("deposit", D("1"), "x" * 501)
    assert long_note.value.field == "note"
    with pytest.raises(ValueError):
        empty.capital_flow("gift", D("1"))
    assert empty.capital_flow("withdrawal", D("5000000")).closed_equity == 0
    assert empty.status()["total_risk_percent"] == "0.0000"  # a book at zero equity still renders


def test_time_weighted_return_chains_the_sub_periods() -> None:
    points = [(D(100), D(0)), (D(110), D(0)), (D(160), D(50)), (D(80), D(-100)), (D(88), D(0))]
    assert time_weighted_return(points) == D("36.1250")  # 110/100 x 180/160 x 88/80 - 1
    assert time_weighted_return([(D(100), D(40))]) == D("0.0000")  # the first point's flow is before the range
    assert time_weighted_return([]) is None
    assert time_weighted_return([(D(0), D(0)), (D(10), D(10))]) is None  # a sub-period starting at zero


def test_trade_stats_measure_drawdown_on_the_trading_curve() -> None:
    curve = [(D(5_000_000), D(5_000_000), D(0)), (D(6_000_000), D(6_000_000), D(1_000_000)),
             (D(5_800_000), D(5_700_000), D(0)), (D(1_000_000), D(1_000_000), D(-4_800_000))]
    stats = trade_stats([], curve, D(5_000_000))
    assert (stats["max_drawdown"], stats["max_drawdown_pct"]) == (D("200000.00"), D("4.0000"))
    assert stats["max_open_drawdown"] == D("300000.00")
    assert (stats["deposits"], stats["withdrawals"], stats["net_flows"]) == (D("1000000.00"), D("4800000.00"),
                                                                             D("-3800000.00"))
    assert stats["time_weighted_return"] == D("-3.3333") and stats["net_pnl"] == D("0.00")
    assert trade_stats([], [(D(1), D(1))], D(1))["deposits"] == D("0.00")  # (closed, open) points: no flows
