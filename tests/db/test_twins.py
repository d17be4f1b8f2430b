"""Each rule written twice — in PL/pgSQL, the authority, and in ``pm_engine/core/replay/``, for replays — fed the
same cases on both sides (issue 30): the answers must be equal, to the paisa and to the letter.

- breakers (``62_controls.sql`` / ``replay/controls.py``): short signal streams at each breaker's threshold,
  through pm.apply_signal and through the in-memory engine;
- the roll's accounting (``78_roll_accounting.sql``, ``79_roll_machine.sql`` / ``replay/rollover.py``): the same
  group rolled at the same fills by the state machine (its legs filled through the order-state functions) and by
  ``roll_in_memory``;
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
from pm_engine.core.capital import InvalidAmountError, parse_amount
from pm_engine.core.contracts import ContractCalendar
from pm_engine.core.engine import TradingEngine
from pm_engine.core.instruments import BANK_NIFTY_CONTRACT, DEFAULT_INSTRUMENTS
from pm_engine.core.replay.capital import check_amount
from pm_engine.core.replay.controls import BreakerSettings, Controls
from pm_engine.core.replay.rollover import roll_in_memory
from pm_engine.core.replay.statistics import drawdown, time_weighted_return, trade_figures
from pm_engine.core.rollover import plan_roll
from pm_engine.core.signals import IST
from pm_engine.core.statistics import Trade
from pm_engine.store.gateway import Store
from pm_engine.store.rolls import committed_book
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
    engine = TradingEngine(max_signal_age=None, controls=controls)
    answers = [engine.process_payload(body, check_time=False) for body in stream]
    return [(a.outcome.value, a.reason) for a in answers], controls


def replay_in_database(config: DatabaseConfig, settings: dict[str, Any], stream: list[dict[str, Any]]) -> list[Any]:
    store = Store(config)
    try:
        store.controls.set_breakers(settings, "test")
        engine = TradingEngine(store=store, max_signal_age=None)
        answers = [engine.process_payload(body, check_time=False) for body in stream]
    finally:
        store.close()
    return [(a.outcome.value, a.reason) for a in answers]


def the_day_loss_pct() -> D:
    """The fall of open equity at DAILY_LOSS's fourth signal, in % of the day's start (no breaker on)."""
    engine = TradingEngine(max_signal_age=None)
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


# -- the roll's accounting ---------------------------------------------------------------------------------
POSITION_FIELDS = ("entry_price", "lots", "quantity", "futures_symbol", "expiry", "contract_month", "strike",
                   "ce_symbol", "pe_symbol", "ce_entry_price", "pe_entry_price", "initial_stop", "current_stop",
                   "highest_close", "unrealized_pnl", "rollover_status", "rollover_count", "rollover_pnl",
                   "original_entry_price", "original_expiry", "original_strike", "signal_price", "rollover_timestamp")


def fill_queued(store: Store, config: DatabaseConfig, where: str, price: Any) -> int:
    """Fill every queued order ``where`` selects, as the broker sender records a broker's fill: sending, accepted,
    then the whole quantity at ``price(leg)``. Returns how many."""
    states = store.orders
    orders = rows(config, f"SELECT client_order_id, quantity, leg FROM pm.broker_orders WHERE status = 'queued' "
                          f"AND {where} ORDER BY client_order_id")
    for order_id, quantity, leg in orders:
        states.sending(order_id)
        states.accepted(order_id, f"B-{order_id}")
        states.fill(order_id, f"B-{order_id}", int(quantity), D(price(leg)))
    return len(orders)


def paper_leg(mark: D, strike: Optional[int], leg: str) -> D:
    """A leg's price with ``strike + call − put = mark`` (what pm.roll_leg_price gives a paper fill)."""
    if leg == "CE":
        return max(mark - strike, D(0)) + 100 if strike is not None else mark
    if leg == "PE":
        return max(strike - mark, D(0)) + 100 if strike is not None else mark
    return mark


@pytest.mark.parametrize("instrument, entry_fill, close, open_", [
    ("GOLD_MINI", "75010", "75600", "75850"),  # a gain, a positive basis
    ("GOLD_MINI", "75010.35", "74500.55", "74420.10"),  # a loss, a negative basis, paise
    ("BANK_NIFTY", "52000", "52700", "52760"),  # a synthetic: four legs
])
def test_a_roll_accounts_alike_in_the_database_and_in_memory(db_config: DatabaseConfig, instrument: str,
                                                             entry_fill: str, close: str, open_: str) -> None:
    from pm_engine.adapters.openalgo import OpenAlgoClient
    from pm_engine.core.market_hours import MarketHours
    from pm_engine.ops.sender import OrderSender

    instruments = dict(DEFAULT_INSTRUMENTS)
    instruments["BANK_NIFTY"] = replace(instruments["BANK_NIFTY"],
                                        contract=replace(BANK_NIFTY_CONTRACT, execution="synthetic"))
    calendar = ContractCalendar(instruments)
    store = Store(db_config)
    # a broker that never runs: the entries stay queued for this test to fill at a price other than the signal's
    idle = OrderSender(store, OpenAlgoClient("http://127.0.0.1:9", "unused"), MarketHours(always=True))
    try:
        engine = TradingEngine(store=store, instruments=instruments, contracts=calendar, broker=idle,
                               max_signal_age=None)
        body = (base("GOLD_MINI", 75000, at(10), stop=74300, atr=400) if instrument == "GOLD_MINI" else
                bank(52000, at(10)))
        assert engine.process_payload(body, check_time=False).outcome.value == "executed"
        strike = rows(db_config, "SELECT strike FROM pm.portfolio_positions")[0][0]
        assert fill_queued(store, db_config, "roll_id IS NULL", lambda leg: paper_leg(D(entry_fill), strike, leg))

        memory = committed_book(store, instruments)  # the same book both sides roll
        [held] = memory.positions.values()
        assert held.signal_price == D(body["price"]) and held.entry_price == D(entry_fill)  # the broker's fill
        plan = plan_roll(memory, calendar, instrument, mark=D(close))
        roll = store.rolls.begin(plan, forced=True, reason="twin test")
        store.rolls.send_close(int(roll["roll_id"]))
        held_strike, to_strike = held.strike, plan.layers[0].to_strike
        assert fill_queued(store, db_config, "roll_leg = 'close'", lambda leg: paper_leg(D(close), held_strike, leg))
        assert fill_queued(store, db_config, "roll_leg = 'open'", lambda leg: paper_leg(D(open_), to_strike, leg))
        assert rows(db_config, "SELECT state FROM pm.rolls") == [("rolled",)]

        stored = committed_book(store, instruments)
        [after] = stored.positions.values()
        assert after.rollover_timestamp is not None
        roll_in_memory(memory, plan, D(close), D(open_), after.rollover_timestamp)
        [moved] = memory.positions.values()
        assert {f: getattr(moved, f) for f in POSITION_FIELDS} == {f: getattr(after, f) for f in POSITION_FIELDS}
        assert (memory.closed_equity, memory.equity_high) == (stored.closed_equity, stored.equity_high)
        assert after.rollover_count == 1 and after.signal_price is None and after.entry_price == D(open_)
        assert (after.ce_entry_price is not None) == (instrument == "BANK_NIFTY")
    finally:
        idle.stop()
        store.close()


# -- statistics ---------------------------------------------------------------------------------------------
def sql(pg2: Any, query: str, *args: Any) -> Any:
    with pg2.cursor() as cur:
        cur.execute(query, args)
        return cur.fetchone()[0]


def trade(pnl: str, r: Optional[str] = None, slippage: Optional[str] = None) -> Trade:
    when = DAY.replace(hour=10)
    return Trade("BANK_NIFTY", "BANK_NIFTY_Long_1", "base", when, D(1), when, D(1), 1, D(pnl),
                 None, D(r) if r is not None else None, timedelta(0), None, D(slippage) if slippage else None)


TRADE_LISTS = [
    [],
    [trade("100.00", "1.5")],
    [trade("-0.01", "-0.0033")],
    [trade("0.005"), trade("0.02")],  # half a paisa in the sum: ROUND_HALF_UP as PostgreSQL's round
    [trade("0.025"), trade("0.025")],  # expectancy 0.025: half up on both sides
    [trade("-0.025"), trade("-0.025")],  # and away from zero below it
    [trade("10"), trade("-5"), trade("0")],  # a zero is neither a win nor a loss; win rate 33.33
    [trade("1", "0.3333"), trade("2", "0.3333"), trade("-4", "-0.33335")],  # mean R at its fourth decimal
    [trade("250", "1", "12.5"), trade("-125.55", None, "0.005"), trade("70", "2", None)],  # slippage, R unknown
    [trade(str(p), str(D(p) / 7)) for p in (100, -50, 25, -12.5, 6.25, 3, -1, 7)],  # 8 trades: 12.5 % steps
]


def test_trade_figures_alike(pg2: Any) -> None:
    for trades in TRADE_LISTS:
        same_trade_figures(pg2, trades)
    assert trade_figures(TRADE_LISTS[-1])["win_rate"] == D("62.50")  # 5 of 8: a case with a ratio


def same_trade_figures(pg2: Any, trades: list[Trade]) -> None:
    rows_ = [{"pnl": str(t.pnl), "r": str(t.r_multiple) if t.r_multiple is not None else None,
              "s": str(t.slippage) if t.slippage is not None else None} for t in trades]
    stored = sql(pg2, "SELECT pm.trade_figures(%s::jsonb)", json.dumps(rows_))
    python = trade_figures(trades)
    assert set(stored) == set(python)
    assert {k: (D(str(v)) if v is not None and not isinstance(v, int) else v) for k, v in stored.items()} == python, \
        trades


SERIES = [
    ([], "0"),
    (["5000000"], "0"),
    (["100", "110", "120"], "0"),  # never falls
    (["100", "90", "130", "80", "85"], "0"),  # the second fall is the larger, from a later peak
    (["100", "100", "100"], "0"),
    (["0", "-10", "5", "-20"], "100"),  # below zero, measured against a base
    (["0", "-0.005", "-0.015"], "5000000"),  # paise: half up
    (["1000000", "999999.99", "1000003", "1000000.005"], "0"),
]


def test_drawdown_alike(pg2: Any) -> None:
    for series, base_ in SERIES:
        stored = sql(pg2, "SELECT pm.drawdown(%s::jsonb, %s::numeric)", "[" + ", ".join(series) + "]", base_)
        assert (D(str(stored["amount"])), D(str(stored["pct"]))) == drawdown([D(x) for x in series], D(base_)), \
            (series, base_)
    assert drawdown([D(x) for x in SERIES[3][0]]) == (D("50.00"), D("38.4615"))  # a case that falls


CURVES = [
    [],
    [("100", "40")],  # the first point's flow is before the range
    [("100", "0"), ("110", "0"), ("160", "50"), ("180", "0"), ("80", "-100"), ("88", "0")],
    [("0", "0"), ("10", "10")],  # a sub-period starting at zero: none
    [("5000000", "0"), ("5120000", "0"), ("5620000", "500000"), ("5300000", "-300000"), ("5310000.55", "0")],
    [("3", "0"), ("4", "1"), ("5", "1"), ("7", "1"), ("11", "3")],  # thirds and sevenths: 12-decimal rounding
    [("100", "0"), ("50", "0"), ("-5", "-60")],  # the last sub-period starts below zero: none
]


def test_time_weighted_return_alike(pg2: Any) -> None:
    answers = []
    for curve in CURVES:
        stored = sql(pg2, "SELECT pm.time_weighted_return(%s::jsonb)",
                     "[" + ", ".join(f"[{e}, {f}]" for e, f in curve) + "]")
        python = time_weighted_return([(D(e), D(f)) for e, f in curve])
        assert (D(str(stored)) if stored is not None else None) == python, curve
        answers.append(python)
    assert answers[2] == D("36.1250") and answers[3] is None  # cases that chain, and one that cannot


# -- the capital rule ---------------------------------------------------------------------------------------
AMOUNTS = ["0", "-1", "0.001", "0.01", "1.10", "1000000.5", "9999999999999.99", "1E+13", "1e13", "12.345",
           "NaN", "Infinity", "-Infinity", "5E-3", "100.000"]


def test_the_capital_amount_rule_alike(pg2: Any) -> None:
    refused = [amount for amount in AMOUNTS if same_capital_answer(pg2, amount)]
    assert refused == ["0", "-1", "0.001", "1E+13", "1e13", "12.345", "NaN", "Infinity", "-Infinity", "5E-3"]


def same_capital_answer(pg2: Any, amount: str) -> bool:
    """Whether both refuse ``amount`` (with the same SQLSTATE and words), or both accept it."""
    try:
        sql(pg2, "SELECT pm.check_capital_amount(%s::numeric)::text", amount)
        stored: Optional[tuple[str, str]] = None
    except psycopg2.Error as exc:
        stored = (exc.pgcode, exc.diag.message_primary)
    try:
        check_amount(parse_amount(amount))  # as a CLI argument, a JSON body or a CSV cell reaches the rule
        python: Optional[tuple[Optional[str], str]] = None
    except InvalidAmountError as exc:
        python = (exc.pgcode, str(exc))
    assert (stored is None) == (python is None), (stored, python)
    if stored is not None and python is not None:
        assert stored[0] == python[0] == "PM060"
        if D(amount).is_finite():  # NaN and Infinity are refused by parse_amount first, in its own words
            assert stored[1] == python[1]
    return stored is not None
