"""Trading holidays per exchange calendar, as data (docs/domain.md#contracts-and-expiry).

The shipped lists are ``pm_engine/data/holidays/<CALENDAR>.json`` (NSE for NFO contracts, MCX):
the weekday closures of every year in their ``years``, where the list is complete. A user file
(``--holidays FILE`` / ``holidays_file`` in the config) adds and removes dates and may declare
further years complete; it wins over the shipped data, because exchanges announce ad-hoc closures
days ahead (NSE's 15 Jan 2026 three days before) and a release cannot follow them.

Past the years the data covers, a date is answered from the rules — weekends plus the calendar's
fixed-date ``recurring`` holidays — and the answer says so (``covers``), so a caller can warn
instead of trusting it silently.

Why no library: the PyPI ``holidays`` package (0.108) has an NSE financial calendar, but it lacks
the ad-hoc closures (22 Jan, 20 May and 20 Nov 2024, 15 Jan 2026), computes any future year from
estimated lunar dates without saying where official data ends, has no MCX, and would move expiries
on a dependency upgrade. Its 2024-2026 NSE lists were used to cross-check the shipped file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from pm_engine.core.errors import ConfigError

SHIPPED = ("NSE", "MCX")
_USER_KEYS = {"add", "remove", "years"}
FIRST_YEAR, LAST_YEAR = 1900, 2199  # the years a holidays file may name (and contracts are computed for)
MAX_CLOSED_RUN = 31  # no exchange closes a month on end: a file that does is a mistake, refused when loaded


@dataclass(frozen=True)
class ExchangeHolidays:
    """One exchange calendar: its closures, the years whose list is complete, and its fixed-date holidays."""

    calendar: str
    closures: frozenset[date]
    years: frozenset[int]
    recurring: tuple[tuple[int, int], ...] = ()  # (month, day), assumed past ``years``
    removed: frozenset[date] = field(default_factory=frozenset)  # user-reopened dates (they beat ``recurring`` too)

    def covers(self, year: int) -> bool:
        """True when this year's closures are known, not guessed from the rules."""
        return year in self.years

    def is_trading_day(self, day: date) -> bool:
        if day.weekday() >= 5 or day in self.closures:
            return False
        if day.year in self.years or day in self.removed:
            return True
        return (day.month, day.day) not in self.recurring

    def on_or_before(self, day: date) -> date:
        """``day`` if it is a trading day, else the trading day before it (ConfigError past a month of closures)."""
        start = day
        while not self.is_trading_day(day):
            day -= timedelta(days=1)
            if (start - day).days > MAX_CLOSED_RUN:
                raise ConfigError(f"{self.calendar}: no trading day in the {MAX_CLOSED_RUN} days up to {start}")
        return day


@dataclass(frozen=True)
class HolidayCalendar:
    """Every exchange calendar the contracts use, by name (``NSE``, ``MCX``)."""

    calendars: Mapping[str, ExchangeHolidays]
    source: str = "shipped"

    def __getitem__(self, name: str) -> ExchangeHolidays:
        try:
            return self.calendars[name]
        except KeyError:
            raise ConfigError(f"no holiday calendar {name!r} (known: {', '.join(sorted(self.calendars))})") from None


def _date(text: Any, where: str) -> date:
    try:
        day = date.fromisoformat(str(text))
    except ValueError:
        raise ConfigError(f"{where}: {str(text)[:40]!r} is not a date (YYYY-MM-DD)") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise ConfigError(f"{where}: {day} is outside {FIRST_YEAR}-{LAST_YEAR}")
    return day


def _check_open_days(calendar: ExchangeHolidays, added: set[date], where: str) -> None:
    """Refuse a file that leaves more than ``MAX_CLOSED_RUN`` days on end without a trading day (a file that
    closes every day made the contract search run off the calendar: OverflowError)."""
    if not added:
        return
    day, last = min(added) - timedelta(days=MAX_CLOSED_RUN), max(added) + timedelta(days=MAX_CLOSED_RUN)
    run = 0
    while day <= last:
        run = 0 if calendar.is_trading_day(day) else run + 1
        if run > MAX_CLOSED_RUN:
            raise ConfigError(f"{where}: no trading day in the {MAX_CLOSED_RUN} days up to {day}: "
                              "the file closes too many days")
        day += timedelta(days=1)


def _month_day(text: str, where: str) -> tuple[int, int]:
    try:
        month, day = (int(x) for x in text.split("-"))
        date(2000, month, day)
    except ValueError:
        raise ConfigError(f"{where}: recurring {text!r} is not MM-DD") from None
    return month, day


def _shipped(name: str) -> ExchangeHolidays:
    raw = json.loads(resources.files("pm_engine").joinpath("data", "holidays", f"{name}.json").read_text())
    where = f"holidays/{name}.json"
    return ExchangeHolidays(
        calendar=name,
        closures=frozenset(_date(d, where) for d in raw["closures"]),
        years=frozenset(int(y) for y in raw["years"]),
        recurring=tuple(_month_day(x, where) for x in raw.get("recurring", ())),
    )


def _years(values: Any, where: str) -> set[int]:
    if not isinstance(values, list) or not all(isinstance(y, int) and not isinstance(y, bool) for y in values):
        raise ConfigError(f"{where}: years must be a list of years (e.g. [2027])")
    return set(values)


def _dates(values: Any, where: str) -> set[date]:
    if not isinstance(values, list):
        raise ConfigError(f"{where} must be a list of dates (YYYY-MM-DD)")
    return {_date(v, where) for v in values}


def apply_user_file(calendars: dict[str, ExchangeHolidays], path: str | Path) -> dict[str, ExchangeHolidays]:
    """The shipped calendars with a user file applied: ``{"NSE": {"add": [...], "remove": [...], "years": [...]}}``.

    ``add`` closes a date, ``remove`` reopens one (a closure cancelled), ``years`` declares those
    years' lists complete (the user added the whole list, so no warning). Unknown keys and
    calendars are refused, naming them.
    """
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"holidays file {path}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"holidays file {path}: nested too deeply to be a holidays file") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"holidays file {path} must hold {{\"NSE\": {{\"add\": [...], \"remove\": [...]}}}}")
    out = dict(calendars)
    for name, entry in raw.items():
        key = str(name).upper()
        where = f"holidays file {path}: {key}"
        if key not in out:
            raise ConfigError(f"{where}: unknown calendar (known: {', '.join(sorted(out))})")
        if not isinstance(entry, dict):
            raise ConfigError(f"{where} must be an object with add, remove and years")
        unknown = set(entry) - _USER_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        added = _dates(entry.get("add", []), f"{where}.add")
        removed = _dates(entry.get("remove", []), f"{where}.remove")
        years = _years(entry.get("years", []), f"{where}.years")
        base = out[key]
        out[key] = ExchangeHolidays(key, frozenset((base.closures | added) - removed), base.years | years,
                                    base.recurring, base.removed | removed)
        _check_open_days(out[key], added, where)
    return out


@lru_cache(maxsize=1)
def shipped_holidays() -> HolidayCalendar:
    """The calendars shipped with the package (read once per process)."""
    return HolidayCalendar({name: _shipped(name) for name in SHIPPED})


def load_holidays(user_file: Optional[str | Path] = None) -> HolidayCalendar:
    """The shipped calendars, with ``user_file`` applied when given (the user's dates win)."""
    shipped = shipped_holidays()
    if user_file is None:
        return shipped
    return HolidayCalendar(apply_user_file(dict(shipped.calendars), user_file), source=str(user_file))


def closures(calendar: ExchangeHolidays, years: Iterable[int]) -> list[date]:
    """The closures of the given years, in order (docs and tests)."""
    wanted = set(years)
    return sorted(d for d in calendar.closures if d.year in wanted)
