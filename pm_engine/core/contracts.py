"""The contract calendar: which futures contract an instrument trades on a date (docs/domain.md#contracts-and-expiry).

Pure: it answers from the instrument table's ``ContractSpec`` and the holiday calendars, with no
I/O, so backtests, replays and a live engine whose broker is down all get the same answer. The
rules:

- a contract month's expiry is its rule's day (``last_tuesday``, ``day_05``, ``last_day`` …) or,
  when that is not a trading day, the trading day before it;
- its roll date is the expiry minus the instrument's roll offset in calendar days;
- new orders on a date use the nearest contract whose roll date has not come (on the roll date
  itself, the next one); an exit trades the contract the position holds;
- the lot size is the contract's (``ContractSpec.lot_sizes``), else the table's.

An expiry in a year the holiday data does not cover is computed from the rules (weekends and the
calendar's fixed-date holidays) and carries a ``warning`` that is logged once per calendar and
year and shown wherever the contract is (``pm-engine contracts``, ``GET /contracts``). Answers are
cached per (instrument, date), so the signal path computes a calendar once per day at most.
"""

from __future__ import annotations

import calendar as _calendar
import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Mapping, Optional

from pm_engine.core.holidays import FIRST_YEAR, LAST_YEAR, HolidayCalendar, load_holidays
from pm_engine.core.instruments import ContractSpec, InstrumentConfig

IST = timezone(timedelta(hours=5, minutes=30))
MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
WEEKDAYS = {"last_monday": 0, "last_tuesday": 1, "last_wednesday": 2, "last_thursday": 3, "last_friday": 4}
log = logging.getLogger(__name__)


def report_date(text: str) -> date:
    """A date asked of the calendar (``?on=``, ``--on``): ISO, and within the years contracts are computed for
    (ValueError saying so: 9999-12-31 had no next month to roll into, 0001-01-01 no month before)."""
    try:
        day = date.fromisoformat(text)
    except (ValueError, TypeError):
        raise ValueError("not a date (YYYY-MM-DD)") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise ValueError(f"must be between {FIRST_YEAR}-01-01 and {LAST_YEAR}-12-31")
    return day


def ist_date(moment: datetime) -> date:
    """The calendar date in India (IST, UTC+05:30, no daylight saving) of an aware time."""
    return moment.astimezone(IST).date()


def contract_month(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


def futures_symbol(base: str, expiry: date) -> str:
    """OpenAlgo's futures symbol: ``{BASE}{DD}{MMM}{YY}FUT``, e.g. ``BANKNIFTY29DEC26FUT``."""
    return f"{base}{expiry.day:02d}{MONTHS[expiry.month - 1]}{expiry.year % 100:02d}FUT"


def option_symbol(base: str, expiry: date, strike: int, right: str) -> str:
    """OpenAlgo's option symbol: ``{BASE}{DD}{MMM}{YY}{strike}{CE|PE}``, e.g. ``BANKNIFTY29DEC2652000CE``."""
    return f"{base}{expiry.day:02d}{MONTHS[expiry.month - 1]}{expiry.year % 100:02d}{strike}{right}"


def atm_strike(price: Decimal, step: int) -> int:
    """The at-the-money strike: the price rounded to the strike step, half up (52,049.99 → 52,000 at 100)."""
    return int((price / step).quantize(Decimal(1), rounding=ROUND_HALF_UP)) * step


def rule_day(rule: str, year: int, month: int) -> date:
    """The day a rule names in a month, before any holiday adjustment."""
    last = _calendar.monthrange(year, month)[1]
    if rule == "last_day":
        return date(year, month, last)
    if rule.startswith("day_"):
        return date(year, month, int(rule[4:]))
    weekday = WEEKDAYS[rule]
    day = date(year, month, last)
    return day - timedelta(days=(day.weekday() - weekday) % 7)


def _applies(pairs: tuple[tuple[str, Any], ...], month: str) -> Optional[Any]:
    """The value of the last pair whose first month is not after ``month`` (None before the first)."""
    chosen = None
    for first, value in pairs:
        if first <= month:
            chosen = value
        else:
            break
    return chosen


@dataclass(frozen=True)
class Contract:
    """One futures contract of an instrument: what an order names and when it must be rolled."""

    instrument: str
    exchange: str
    symbol: str
    expiry: date
    roll_date: date
    contract_month: str  # YYYY-MM
    lot_size: int
    execution: str = "futures"
    warning: Optional[str] = None  # the expiry was computed past the holiday data (see the module note)

    def days_to_roll(self, on: date) -> int:
        return (self.roll_date - on).days

    def as_dict(self, on: date) -> dict[str, Any]:
        """The keys of ``pm-engine contracts --json`` and ``GET /contracts``."""
        return {"instrument": self.instrument, "symbol": self.symbol, "exchange": self.exchange,
                "expiry": self.expiry.isoformat(), "roll_date": self.roll_date.isoformat(),
                "contract_month": self.contract_month, "lot_size": self.lot_size,
                "days_to_expiry": (self.expiry - on).days, "days_to_roll": self.days_to_roll(on),
                "execution": self.execution, "warning": self.warning}


@dataclass(frozen=True)
class SyntheticLegs:
    """A synthetic future's two option legs: long = BUY the call + SELL the put, same strike and expiry."""

    strike: int
    ce_symbol: str
    pe_symbol: str


class ContractCalendar:
    """Answers contract questions for every instrument of a table that has a ``ContractSpec``."""

    def __init__(self, instruments: Mapping[str, InstrumentConfig],
                 holidays: Optional[HolidayCalendar] = None) -> None:
        self.instruments = dict(instruments)
        self.holidays = holidays or load_holidays()
        self._months: dict[tuple[str, int, int], Contract] = {}
        self._on: dict[tuple[str, date], Optional[Contract]] = {}
        self._warned: set[tuple[str, int]] = set()

    def spec(self, instrument: str) -> Optional[ContractSpec]:
        config = self.instruments.get(instrument)
        return config.contract if config is not None else None

    def contract(self, instrument: str, year: int, month: int) -> Contract:
        """The contract of one contract month (the month must be one the instrument lists)."""
        key = (instrument, year, month)
        found = self._months.get(key)
        if found is None:
            found = self._months[key] = self._build(instrument, year, month)
        return found

    def _build(self, instrument: str, year: int, month: int) -> Contract:
        config = self.instruments[instrument]
        spec = config.contract
        assert spec is not None
        name = contract_month(year, month)
        rule = _applies(spec.expiry_rules, name) or spec.expiry_rules[0][1]
        days = self.holidays[spec.calendar]
        nominal = rule_day(rule, year, month)
        expiry = days.on_or_before(nominal)
        warning = None
        if not (days.covers(nominal.year) and days.covers(expiry.year)):
            year = expiry.year if not days.covers(expiry.year) else nominal.year
            warning = (f"{spec.calendar} holidays are known for {_years(days.years)} only: {year} expiries are "
                       f"computed from the rules (weekends and fixed-date holidays); add {year}'s closures with a "
                       f"holidays file")
            if (spec.calendar, year) not in self._warned:
                self._warned.add((spec.calendar, year))
                log.warning("%s", warning)
        lot_size = _applies(spec.lot_sizes, name) or config.lot_size
        return Contract(instrument, spec.exchange, futures_symbol(spec.base_symbol, expiry), expiry,
                        expiry - timedelta(days=spec.roll_days), name, lot_size, spec.execution, warning)

    def _months_from(self, spec: ContractSpec, on: date) -> Any:
        """Contract months (year, month) from ``on``'s month onwards, forever."""
        year, month = on.year, on.month
        while True:
            if month in spec.months:
                yield year, month
            month += 1
            if month > 12:
                year, month = year + 1, 1

    def listed(self, instrument: str, on: date) -> list[Contract]:
        """The expiries listed on a date: the next ``spec.listed`` contracts not yet expired."""
        spec = self.spec(instrument)
        if spec is None:
            return []
        out: list[Contract] = []
        for year, month in self._months_from(spec, on):
            contract = self.contract(instrument, year, month)
            if contract.expiry >= on:
                out.append(contract)
                if len(out) == spec.listed:
                    return out
        return out  # pragma: no cover - the generator never ends

    def on(self, instrument: str, day: date) -> Optional[Contract]:
        """The contract new orders use on ``day``: the nearest whose roll date has not come (None: no spec)."""
        key = (instrument, day)
        if key in self._on:
            return self._on[key]
        spec = self.spec(instrument)
        chosen = None
        if spec is not None:
            for year, month in self._months_from(spec, day):
                contract = self.contract(instrument, year, month)
                if contract.roll_date > day:
                    chosen = contract
                    break
        if len(self._on) > 10_000:  # a long replay: keep the cache bounded
            self._on.clear()
        self._on[key] = chosen
        return chosen

    def for_time(self, instrument: str, moment: datetime) -> Optional[Contract]:
        """The contract for a signal's bar time (its IST date)."""
        return self.on(instrument, ist_date(moment))

    def after(self, contract: Contract) -> Contract:
        """The contract that follows ``contract`` (what a roll moves into)."""
        spec = self.spec(contract.instrument)
        assert spec is not None
        year, month = int(contract.contract_month[:4]), int(contract.contract_month[5:])
        start = date(year + (month == 12), month % 12 + 1, 1)
        year, month = next(iter(self._months_from(spec, start)))
        return self.contract(contract.instrument, year, month)

    def synthetic_legs(self, instrument: str, expiry: date, price: Decimal) -> SyntheticLegs:
        """The ATM strike for ``price`` and the call and put symbols of that expiry."""
        spec = self.spec(instrument)
        assert spec is not None
        strike = atm_strike(price, spec.strike_step)
        return SyntheticLegs(strike, option_symbol(spec.base_symbol, expiry, strike, "CE"),
                             option_symbol(spec.base_symbol, expiry, strike, "PE"))

    def report(self, on: date) -> dict[str, Any]:
        """Per instrument the contract new orders use on ``on`` and the next one, with every warning."""
        rows = []
        warnings: list[str] = []
        for name in sorted(self.instruments):
            current = self.on(name, on)
            if current is None:
                continue
            following = self.after(current)
            rows.append({**current.as_dict(on), "next": following.as_dict(on)})
            warnings.extend(w for w in (current.warning, following.warning) if w and w not in warnings)
        return {"on": on.isoformat(), "contracts": rows, "warnings": warnings}


def _years(years: frozenset[int]) -> str:
    return f"{min(years)}-{max(years)}" if years else "no year"
