"""The contract calendar (issue 20): every dated fact of docs/domain.md#contracts-and-expiry, pinned, and its rules."""

from __future__ import annotations

import json
import logging
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D
from pathlib import Path

import pytest

from pm_engine.core.contracts import ContractCalendar, atm_strike, futures_symbol, ist_date, option_symbol, rule_day
from pm_engine.core.errors import ConfigError
from pm_engine.core.holidays import closures, load_holidays, shipped_holidays
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS, InstrumentConfig, load_instruments, with_lot_size


@pytest.fixture
def cal() -> ContractCalendar:
    return ContractCalendar(DEFAULT_INSTRUMENTS)


def expiry(cal: ContractCalendar, instrument: str, year: int, month: int) -> date:
    return cal.contract(instrument, year, month).expiry


# -- Bank Nifty ------------------------------------------------------------------------------------

@pytest.mark.parametrize("year, month, seen", [
    (2025, 12, date(2025, 12, 30)), (2026, 1, date(2026, 1, 27)), (2026, 2, date(2026, 2, 24)),
    (2026, 3, date(2026, 3, 30)),  # 31 March (the last Tuesday) is a holiday: Monday 30th
    (2026, 11, date(2026, 11, 23)),  # 24 November (the last Tuesday) is a holiday: Monday 23rd
])
def test_bank_nifty_expiries_seen(cal: ContractCalendar, year: int, month: int, seen: date) -> None:
    assert expiry(cal, "BANK_NIFTY", year, month) == seen


@pytest.mark.parametrize("year, month, seen, weekday", [
    (2024, 2, date(2024, 2, 29), "Thursday"),  # before March 2024: the last Thursday
    (2024, 3, date(2024, 3, 27), "Wednesday"),  # Mar-Dec 2024: the last Wednesday
    (2024, 11, date(2024, 11, 27), "Wednesday"),
    (2024, 12, date(2024, 12, 24), "Tuesday"),  # the last Wednesday, 25 Dec, is Christmas: the day before
    (2025, 1, date(2025, 1, 30), "Thursday"),  # Jan-Aug 2025: the last Thursday
    (2025, 8, date(2025, 8, 28), "Thursday"),
    (2025, 9, date(2025, 9, 30), "Tuesday"),  # from September 2025: the last Tuesday
    (2025, 10, date(2025, 10, 28), "Tuesday"),
])
def test_bank_nifty_thursday_and_wednesday_rules_before_september_2025(cal: ContractCalendar, year: int, month: int,
                                                                       seen: date, weekday: str) -> None:
    assert expiry(cal, "BANK_NIFTY", year, month) == seen
    assert seen.strftime("%A") == weekday


def test_bank_nifty_lists_three_monthly_contracts(cal: ContractCalendar) -> None:
    assert [c.symbol for c in cal.listed("BANK_NIFTY", date(2026, 2, 25))] == [
        "BANKNIFTY30MAR26FUT", "BANKNIFTY28APR26FUT", "BANKNIFTY26MAY26FUT"]
    assert cal.listed("BANK_NIFTY", date(2026, 2, 24))[0].symbol == "BANKNIFTY24FEB26FUT"  # listed on its expiry day


@pytest.mark.parametrize("year, month, lot", [
    (2024, 12, 15), (2025, 1, 30), (2025, 6, 30), (2025, 7, 35), (2025, 11, 35), (2025, 12, 35), (2026, 1, 30),
    (2026, 12, 30)])
def test_bank_nifty_lot_size_per_contract_35_then_30(cal: ContractCalendar, year: int, month: int, lot: int) -> None:
    assert cal.contract("BANK_NIFTY", year, month).lot_size == lot


def test_point_value_and_margin_follow_the_contract_lot_size() -> None:
    bank_nifty = DEFAULT_INSTRUMENTS["BANK_NIFTY"]
    dec_2025 = with_lot_size(bank_nifty, 35)
    assert (dec_2025.lot_size, dec_2025.point_value, dec_2025.margin_per_lot) == (35, D(35), D(315000))
    assert with_lot_size(bank_nifty, 30) is bank_nifty  # the table's own lot size: the table itself


# -- MCX -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("year, month, seen", [
    (2026, 4, date(2026, 4, 2)),  # 5 Apr a Sunday, 4 Apr a Saturday, 3 Apr Good Friday (MCX closed)
    (2026, 7, date(2026, 7, 3)),  # 5 Jul a Sunday, 4 Jul a Saturday
    (2026, 12, date(2026, 12, 4)), (2027, 1, date(2027, 1, 5)),
])
def test_gold_mini_expires_on_the_fifth_or_the_trading_day_before(cal: ContractCalendar, year: int, month: int,
                                                                  seen: date) -> None:
    assert expiry(cal, "GOLD_MINI", year, month) == seen


def test_silver_mini_contract_months_and_last_day_expiry(cal: ContractCalendar, tmp_path: Path) -> None:
    months = set()
    day = date(2026, 1, 1)
    while day < date(2028, 1, 1):  # every contract new orders use over two years is one of the five months
        chosen = cal.on("SILVER_MINI", day)
        assert chosen is not None
        months.add(int(chosen.contract_month[5:]))
        day += timedelta(days=1)
    assert months == {2, 4, 6, 8, 11}
    assert [c.symbol for c in cal.listed("SILVER_MINI", date(2026, 1, 10))] == [
        "SILVERM27FEB26FUT", "SILVERM30APR26FUT", "SILVERM30JUN26FUT"]
    assert expiry(cal, "SILVER_MINI", 2026, 8) == date(2026, 8, 31)
    assert expiry(cal, "SILVER_MINI", 2027, 2) == date(2027, 2, 26)  # 28 Feb a Sunday, 27th a Saturday
    with pytest.raises(ConfigError, match="months"):
        load_instruments_from({"SILVER_MINI": {"contract": {"months": [13]}}}, tmp_path)


def test_copper_every_month_on_its_last_trading_day(cal: ContractCalendar) -> None:
    assert [expiry(cal, "COPPER", 2026, m) for m in (1, 5, 10, 12)] == [
        date(2026, 1, 30), date(2026, 5, 29), date(2026, 10, 30), date(2026, 12, 31)]


# -- the contract new orders use, and the roll-date switch -----------------------------------------

def test_contracts_on_1_december_2026(cal: ContractCalendar) -> None:
    report = cal.report(date(2026, 12, 1))
    assert {c["instrument"]: c["symbol"] for c in report["contracts"]} == {
        "BANK_NIFTY": "BANKNIFTY29DEC26FUT", "GOLD_MINI": "GOLDM05JAN27FUT",  # December's is inside its roll window
        "SILVER_MINI": "SILVERM26FEB27FUT", "COPPER": "COPPER31DEC26FUT"}
    bank_nifty = report["contracts"][0]
    assert bank_nifty == {
        "instrument": "BANK_NIFTY", "symbol": "BANKNIFTY29DEC26FUT", "exchange": "NFO", "expiry": "2026-12-29",
        "roll_date": "2026-12-22", "contract_month": "2026-12", "lot_size": 30, "days_to_expiry": 28,
        "days_to_roll": 21, "execution": "futures", "warning": None, "next": bank_nifty["next"]}
    assert bank_nifty["next"]["symbol"] == "BANKNIFTY25JAN27FUT"  # 26 Jan 2027 (Republic Day) is a Tuesday


@pytest.mark.parametrize("instrument, day_before, near, far", [
    ("BANK_NIFTY", date(2026, 12, 21), "BANKNIFTY29DEC26FUT", "BANKNIFTY25JAN27FUT"),  # roll date 22 Dec (- 7 days)
    ("GOLD_MINI", date(2026, 11, 25), "GOLDM04DEC26FUT", "GOLDM05JAN27FUT"),  # roll date 26 Nov (- 8 days)
    ("SILVER_MINI", date(2026, 11, 21), "SILVERM30NOV26FUT", "SILVERM26FEB27FUT"),
    ("COPPER", date(2026, 12, 22), "COPPER31DEC26FUT", "COPPER29JAN27FUT"),
])
def test_roll_date_switch(cal: ContractCalendar, instrument: str, day_before: date, near: str, far: str) -> None:
    before, on_roll = cal.on(instrument, day_before), cal.on(instrument, day_before + timedelta(days=1))
    assert before is not None and on_roll is not None
    assert (before.symbol, before.roll_date) == (near, day_before + timedelta(days=1))
    assert on_roll.symbol == far


def test_the_date_is_the_signal_time_in_india(cal: ContractCalendar) -> None:
    late = datetime(2026, 12, 21, 19, 0, tzinfo=timezone.utc)  # 00:30 on 22 Dec in IST: the roll date
    assert ist_date(late) == date(2026, 12, 22)
    contract = cal.for_time("BANK_NIFTY", late)
    assert contract is not None and contract.symbol == "BANKNIFTY25JAN27FUT"


def test_answers_are_cached_per_date(cal: ContractCalendar) -> None:
    first = cal.on("BANK_NIFTY", date(2026, 12, 1))
    assert cal.on("BANK_NIFTY", date(2026, 12, 1)) is first
    assert cal.on("NOT_AN_INSTRUMENT", date(2026, 12, 1)) is None


# -- holidays: shipped data, the user file, past the data ------------------------------------------

def test_nse_holidays_2026_and_mcx_full_closures_2026() -> None:
    nse, mcx = shipped_holidays()["NSE"], shipped_holidays()["MCX"]
    assert closures(nse, [2026]) == [date(2026, m, d) for m, d in (
        (1, 15), (1, 26), (3, 3), (3, 26), (3, 31), (4, 3), (4, 14), (5, 1), (5, 28), (6, 26), (9, 14), (10, 2),
        (10, 20), (11, 10), (11, 24), (12, 25))]
    assert closures(mcx, [2026]) == [date(2026, 1, 26), date(2026, 4, 3), date(2026, 10, 2), date(2026, 12, 25)]
    assert all(d.weekday() < 5 for d in nse.closures | mcx.closures)  # weekends are never listed


def write(tmp_path: Path, body: object) -> Path:
    path = tmp_path / "holidays.json"
    path.write_text(json.dumps(body))
    return path


def test_a_user_holiday_file_moves_an_expiry_and_wins(tmp_path: Path) -> None:
    path = write(tmp_path, {"NSE": {"add": ["2026-12-29"], "remove": ["2026-03-31"]}})
    cal = ContractCalendar(DEFAULT_INSTRUMENTS, load_holidays(path))
    assert cal.contract("BANK_NIFTY", 2026, 12).symbol == "BANKNIFTY28DEC26FUT"  # an ad-hoc closure added
    assert cal.contract("BANK_NIFTY", 2026, 3).expiry == date(2026, 3, 31)  # a shipped closure cancelled
    assert cal.contract("GOLD_MINI", 2026, 4).expiry == date(2026, 4, 2)  # MCX untouched
    assert ContractCalendar(DEFAULT_INSTRUMENTS).contract("BANK_NIFTY", 2026, 12).expiry == date(2026, 12, 29)


def test_past_the_data_the_rules_answer_with_a_warning(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    cal = ContractCalendar(DEFAULT_INSTRUMENTS)
    with caplog.at_level(logging.WARNING, logger="pm_engine.core.contracts"):
        gold = cal.contract("GOLD_MINI", 2027, 1)
        cal.contract("GOLD_MINI", 2027, 2)
        covered = cal.contract("GOLD_MINI", 2026, 12)
    assert gold.warning is not None and "MCX holidays are known for 2024-2026 only: 2027" in gold.warning
    assert covered.warning is None
    assert [r.getMessage() for r in caplog.records] == [gold.warning]  # logged once per calendar and year
    assert cal.report(date(2026, 12, 1))["warnings"] == [
        w for w in (cal.contract("BANK_NIFTY", 2027, 1).warning, gold.warning)]
    # the fixed-date holidays still apply past the data: 26 Jan 2027, Republic Day, is the last Tuesday
    assert cal.contract("BANK_NIFTY", 2027, 1).expiry == date(2027, 1, 25)
    # a user who adds 2027's list declares it complete: no warning, and the user's dates decide
    path = write(tmp_path, {"NSE": {"add": ["2027-03-22"], "remove": ["2027-01-26"], "years": [2027]}})
    known = ContractCalendar(DEFAULT_INSTRUMENTS, load_holidays(path))
    assert known.contract("BANK_NIFTY", 2027, 1).warning is None
    assert known.contract("BANK_NIFTY", 2027, 1).expiry == date(2027, 1, 26)


@pytest.mark.parametrize("body, message", [
    ({"NYSE": {"add": []}}, "unknown calendar"),
    ({"NSE": {"add": ["2026-02-30"]}}, "is not a date"),
    ({"NSE": {"adds": []}}, "unknown key"),
    ({"NSE": {"years": ["2027"]}}, "years must be a list"),
    (["2026-12-29"], "must hold"),
])
def test_a_bad_holiday_file_is_refused_naming_the_problem(tmp_path: Path, body: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_holidays(write(tmp_path, body))


# -- symbols and the synthetic legs ----------------------------------------------------------------

def test_symbols_and_the_atm_strike() -> None:
    assert futures_symbol("GOLDM", date(2027, 1, 5)) == "GOLDM05JAN27FUT"
    assert option_symbol("BANKNIFTY", date(2026, 12, 29), 52000, "CE") == "BANKNIFTY29DEC2652000CE"
    assert [atm_strike(D(p), 100) for p in ("52049.99", "52050", "51950.01")] == [52000, 52100, 52000]
    assert atm_strike(D("52260"), 500) == 52500
    assert rule_day("last_day", 2028, 2) == date(2028, 2, 29)


def load_instruments_from(table: dict[str, object], tmp_path: Path) -> dict[str, InstrumentConfig]:
    path = tmp_path / "instruments.json"
    path.write_text(json.dumps({"instruments": table}))
    return load_instruments(path)


def test_the_contract_is_part_of_the_instrument_table(tmp_path: Path) -> None:
    table = load_instruments_from({"BANK_NIFTY": {"contract": {"execution": "synthetic", "strike_step": 500}}},
                                  tmp_path)
    spec = table["BANK_NIFTY"].contract
    assert spec is not None
    assert (spec.execution, spec.strike_step, spec.base_symbol, spec.roll_days) == ("synthetic", 500, "BANKNIFTY", 7)
    cal = ContractCalendar(table)
    legs = cal.synthetic_legs("BANK_NIFTY", date(2026, 12, 29), D("52260"))
    assert (legs.strike, legs.ce_symbol, legs.pe_symbol) == (52500, "BANKNIFTY29DEC2652500CE",
                                                             "BANKNIFTY29DEC2652500PE")
    custom = load_instruments_from({"CRUDE": {
        "lot_size": 100, "point_value": 100, "margin_per_lot": 500000, "initial_risk_pct": 1, "initial_vol_pct": 0.2,
        "ongoing_risk_pct": 1, "ongoing_vol_pct": 0.3, "initial_stop_atr": 2, "trailing_stop_atr": 3,
        "max_pyramids": 2, "contract": {"exchange": "MCX", "calendar": "MCX", "base_symbol": "CRUDEOILM",
                                        "months": list(range(1, 13)), "expiry_rules": [["2000-01", "day_19"]],
                                        "roll_days": 5, "lot_sizes": [["2026-06", 10]]}}}, tmp_path)
    crude = ContractCalendar(custom)
    assert crude.contract("CRUDE", 2026, 12).symbol == "CRUDEOILM18DEC26FUT"  # 19 Dec a Saturday
    assert (crude.contract("CRUDE", 2026, 5).lot_size, crude.contract("CRUDE", 2026, 6).lot_size) == (100, 10)


@pytest.mark.parametrize("contract, message", [
    ({"execution": "options"}, "futures or synthetic"),
    ({"expiry_rules": [["2026-1", "last_day"]]}, "contract month"),
    ({"expiry_rules": [["2026-01", "first_monday"]]}, "is not a rule"),
    ({"lot_sizes": [["2026-01", 30], ["2025-01", 35]]}, "in order"),
    ({"roll_days": -1}, "integer >= 0"),
    ({"tick": 5}, "unknown contract key"),
])
def test_a_bad_contract_setting_is_refused_naming_it(contract: dict[str, object], message: str,
                                                     tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=message):
        load_instruments_from({"BANK_NIFTY": {"contract": contract}}, tmp_path)
    with pytest.raises(ConfigError, match="needs NFO"):
        load_instruments_from({"GOLD_MINI": {"contract": {"execution": "synthetic"}}}, tmp_path)
