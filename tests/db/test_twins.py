"""Each rule written twice — in PL/pgSQL, the authority, and in ``pm_engine/core/replay/``, for replays — fed the
same cases on both sides (issue 30): the answers must be equal, to the paisa and to the letter.

- breakers (``62_controls.sql`` / ``replay/controls.py``): short signal streams at each breaker's threshold,
  through pm.apply_signal and through the in-memory engine;
- the roll's accounting (``78_rollover.sql`` / ``replay/rollover.py``): the same group rolled at the same
  fills by the state machine (its legs filled through the order-state functions) and by ``roll_in_memory``;
- statistics (``95_statistics.sql``, ``pm.time_weighted_return`` / ``replay/statistics.py``): the same trade
  lists and series to ``pm.trade_figures``, ``pm.drawdown`` and ``pm.time_weighted_return``;
- the capital rule (``64_capital.sql`` / ``replay/capital.py``): the same amounts to pm.check_capital_amount.

Whole-stream replays of the same pairs are in tests/integration (test_controls, test_history,
test_report_flows, test_capital, test_rollover_replay).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal as D
from typing import Any, Optional

import psycopg2
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.capital import InvalidAmountError
from pm_engine.core.contracts import ContractCalendar
from pm_engine.core.engine import LiveTradingEngine
from pm_engine.core.instruments import BANK_NIFTY_CONTRACT, DEFAULT_INSTRUMENTS
from pm_engine.core.replay.capital import check_amount
from pm_engine.core.replay.controls import BreakerSettings, Controls
from pm_engine.core.replay.rollover import roll_in_memory
from pm_engine.core.replay.statistics import drawdown, time_weighted_return, trade_figures
from pm_engine.core.rollover import plan_roll
from pm_engine.core.signals import IST
from pm_engine.core.statistics import Trade
from pm_engine.store.manager import DatabaseStateManager
from pm_engine.store.orders import OrderStates
from pm_engine.store.rolls import RollStates, committed_book
from tests.helpers import payload, rows

DAY = datetime(2026, 11, 3, tzinfo=IST)  # a Tuesday


def at(hours: float, day: int = 0) -> str:
    return (DAY + timedelta(days=day, hours=hours)).isoformat()


def base(instrument: str, price: float, when: str, stop: float, atr: float) -> dict[str, Any]:
    return payload("BASE_ENTRY", instrument, "Long_1", price, when, stop=stop, atr=atr, er=0.85)


def exit_(instrument: str, price: float, when: str) -> dict[str, Any]:
    return payload("EXIT", instrument, "ALL", price, when, reason="SIGNAL")


def bank(price: float, when: str) -> dict[str, Any]:
    return base("BANK_NIFTY", price, when, stop=price - 350, atr=350)


# -- breakers ----------------------------------------------------------------------------------------------
MAX_ENTRIES = [bank(52000, at(10)), exit_("BANK_NIFTY", 52100, at(10.5)), bank(52000, at(11)),
               exit_("BANK_NIFTY", 52100, at(11.5)),
               bank(52000, at(12)),  # the third entry of the day: locked until the next IST midnight
               base("GOLD_MINI", 75000, at(12.5), stop=74300, atr=400),  # another instrument: free
               bank(52000, at(23.99)),  # still locked
               bank(52000, at(24)),  # midnight IST exactly: the lock has ended, a new day's count
               exit_("BANK_NIFTY", 52100, at(24.5)), bank(52000, at(25))]
COOLING_OFF = [bank(52000, at(10)), exit_("BANK_NIFTY", 51900, at(10.5)), bank(52000, at(11)),
               exit_("BANK_NIFTY", 51900, at(11.5)),
               bank(52000, at(12)),  # two losses in a row, the last 30 min ago: locked until 14:30
               bank(52000, at(14.5)),  # the lock's end exactly: it has ended, and the breaker lets it pass
               exit_("BANK_NIFTY", 52000, at(14.75)),  # a trade of zero P&L breaks the streak
               bank(52000, at(15)), exit_("BANK_NIFTY", 51900, at(15.1)),
               bank(52000, at(15.2))]  # the last two: a loss and a zero: passes
DAILY_LOSS = [bank(52000, at(10)),  # the day's first signal records the day's start equity
              base("GOLD_MINI", 75000, at(10.25), stop=74300, atr=400),
              exit_("BANK_NIFTY", 51000, at(10.5)),  # a loss of 1000 points
              bank(52000, at(11)),  # the breaker compares here
              exit_("GOLD_MINI", 75100, at(11.5)),  # exits pass even in exits_only
              bank(52000, at(12))]


def replay_in_memory(settings: dict[str, Any], stream: list[dict[str, Any]]) -> tuple[list[Any], Controls]:
    controls = Controls(BreakerSettings.from_mapping(settings))
    engine = LiveTradingEngine(max_signal_age=None, controls=controls)
    answers = [engine.process_payload(body, check_time=False) for body in stream]
    return [(a.outcome.value, a.reason) for a in answers], controls


def replay_in_database(config: DatabaseConfig, settings: dict[str, Any], stream: list[dict[str, Any]]) -> list[Any]:
    db = DatabaseStateManager(config)
    try:
        db.set_breakers(settings, "test")
        engine = LiveTradingEngine(db_manager=db, max_signal_age=None)
        answers = [engine.process_payload(body, check_time=False) for body in stream]
    finally:
        db.close()
    return [(a.outcome.value, a.reason) for a in answers]


def the_day_loss_pct() -> D:
    """The fall of open equity at DAILY_LOSS's fourth signal, in % of the day's start (no breaker on)."""
    engine = LiveTradingEngine(max_signal_age=None)
    start = engine.portfolio.open_equity()
    for body in DAILY_LOSS[:3]:
        engine.process_payload(body, check_time=False)
    loss = 100 * (start - engine.portfolio.open_equity()) / start
    assert loss > 0 and loss == loss.quantize(D("0.001")), loss  # exactly a setting: the threshold itself is a case
    return loss


@pytest.mark.parametrize("case", ["max_entries", "cooling_off", "daily_loss_at_the_limit", "daily_loss_past_it",
                                  "all_off"])
def test_breakers_answer_alike_in_the_database_and_in_memory(db_config: DatabaseConfig, case: str) -> None:
    settings: dict[str, Any]
    if case == "max_entries":
        settings, stream = {"max_entries_per_day": 2}, MAX_ENTRIES
    elif case == "cooling_off":
        settings, stream = {"cooling_off_losses": 2, "cooling_off_hours": 3}, COOLING_OFF
    elif case == "all_off":
        settings, stream = {}, MAX_ENTRIES
    else:
        loss = the_day_loss_pct()
        settings = {"daily_loss_pct": str(loss if case == "daily_loss_at_the_limit" else loss - D("0.001"))}
        stream = DAILY_LOSS
    memory, controls = replay_in_memory(settings, stream)
    assert replay_in_database(db_config, settings, stream) == memory
    locks = rows(db_config, "SELECT instrument, locked_until, reason, source FROM pm.instrument_locks ORDER BY id")
    assert locks == [(x.instrument, x.until, x.reason, x.source) for x in controls.locks]
    [(mode, reason, changed_by)] = rows(db_config, "SELECT mode, reason, changed_by FROM pm.trading_control")
    assert (mode, reason) == (controls.mode, controls.reason)
    outcomes = [outcome for outcome, _ in memory]
    reasons = " | ".join(reason for _, reason in memory)
    # each case reaches what it is about (so an equality of two empty answers proves nothing)
    if case == "max_entries":
        assert outcomes == ["executed"] * 4 + ["blocked", "executed", "blocked"] + ["executed"] * 3
        assert "max 2 entries per day reached" in reasons
    elif case == "cooling_off":
        assert outcomes == ["executed"] * 4 + ["blocked"] + ["executed"] * 5
        assert "cooling off after 2 losing trades in a row" in reasons
    elif case == "daily_loss_at_the_limit":
        assert outcomes == ["executed"] * 5 + ["blocked"] and mode == "active"  # at 12:00 the 11:00 base is open
        assert memory[-1][1] == "base position already open for BANK_NIFTY"
    elif case == "daily_loss_past_it":
        assert outcomes == ["executed"] * 3 + ["blocked", "executed", "blocked"]
        assert mode == "exits_only" and changed_by == "breaker:daily_loss" and "daily loss limit" in reasons
    else:  # no breaker: the third entry of the day executes, the next two find its base open
        assert outcomes == ["executed"] * 6 + ["blocked", "blocked", "executed", "executed"] and locks == []
