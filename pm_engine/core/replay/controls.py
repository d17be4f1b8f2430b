"""Trading controls for an engine without a database (``pm-engine backtest --breakers FILE``).

SQL twin: ``db/functions/62_controls.sql`` (``pm.control_blocks``, ``pm.breaker_daily_loss``,
``pm.breaker_max_entries``, ``pm.breaker_cooling_off``, ``pm.lock_reason``). Live, the database evaluates
the trading mode, instrument locks and breakers inside pm.apply_signal, so every instance obeys them at
the same commit. A replay has no database, so this module mirrors those functions step by step — the
same order, thresholds and reason texts. ``tests/db/test_twins.py`` feeds both the same small cases
at each threshold and ``tests/integration/test_controls.py`` replays one long stream both ways; both
require the same outcome and reason for every signal, which keeps the two definitions one idea.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from pm_engine.core.errors import ConfigError
from pm_engine.core.models import Outcome, Signal, SignalResult, SignalType
from pm_engine.core.signals import IST

if TYPE_CHECKING:  # pragma: no cover
    from pm_engine.core.portfolio import Book

ENTRIES = (SignalType.BASE_ENTRY, SignalType.PYRAMID)
SETTINGS = ("daily_loss_pct", "max_entries_per_day", "cooling_off_losses", "cooling_off_hours")


@dataclass(frozen=True)
class BreakerSettings:
    """The breakers' settings, as pm.breaker_settings holds them (None: that breaker is off)."""

    daily_loss_pct: Optional[Decimal] = None  # numeric(6,3)
    max_entries_per_day: Optional[int] = None
    cooling_off_losses: Optional[int] = None
    cooling_off_hours: Optional[Decimal] = None  # numeric(8,2)

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> "BreakerSettings":
        """From JSON keys (those of ``pm-engine breakers --json``); unknown keys and bad values are refused."""
        unknown = set(values) - set(SETTINGS)
        if unknown:
            raise ConfigError(f"unknown breaker setting(s): {', '.join(sorted(unknown))}")
        try:
            pct = values.get("daily_loss_pct")
            hours = values.get("cooling_off_hours")
            settings = cls(
                Decimal(str(pct)).quantize(Decimal("0.001"), ROUND_HALF_UP) if pct is not None else None,
                int(values["max_entries_per_day"]) if values.get("max_entries_per_day") is not None else None,
                int(values["cooling_off_losses"]) if values.get("cooling_off_losses") is not None else None,
                Decimal(str(hours)).quantize(Decimal("0.01"), ROUND_HALF_UP) if hours is not None else None)
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise ConfigError(f"bad breaker setting: {exc}") from None
        if settings.daily_loss_pct is not None and not 0 < settings.daily_loss_pct < 100:
            raise ConfigError("daily_loss_pct must be between 0 and 100")
        for name in ("max_entries_per_day", "cooling_off_losses", "cooling_off_hours"):
            value = getattr(settings, name)
            if value is not None and value <= 0:
                raise ConfigError(f"{name} must be positive")
        if (settings.cooling_off_losses is None) != (settings.cooling_off_hours is None):
            raise ConfigError("cooling-off needs both cooling_off_losses and cooling_off_hours")
        return settings

    @classmethod
    def from_file(cls, path: Path) -> "BreakerSettings":
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"breakers file {path}: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"breakers file {path} must hold a JSON object")
        return cls.from_mapping(values)


@dataclass
class Lock:
    """New bases and pyramids on ``instrument`` are blocked until ``until``."""

    instrument: str
    until: datetime
    reason: str
    source: str


def ist_day(when: datetime) -> date:
    return when.astimezone(IST).date()


def day_start(day: date) -> datetime:
    """The instant an IST calendar day begins."""
    return datetime(day.year, day.month, day.day, tzinfo=IST)


def lock_reason(instrument: str, until: datetime, reason: str) -> str:
    return f"instrument {instrument} locked until {until.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}: {reason}"


def _cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


@dataclass
class Controls:
    """The mode, the locks and the breakers' memory (day-start equity, entries per day, trades)."""

    settings: BreakerSettings = field(default_factory=BreakerSettings)
    mode: str = "active"
    reason: Optional[str] = None
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # (mode, reason, changed by)
    locks: list[Lock] = field(default_factory=list)
    day_start_equity: dict[date, Decimal] = field(default_factory=dict)
    entries: dict[tuple[str, date], int] = field(default_factory=dict)
    trades: dict[str, list[tuple[datetime, str, Decimal]]] = field(default_factory=dict)  # exit, id, P&L

    def set_mode(self, mode: str, reason: str, changed_by: str) -> None:
        self.mode, self.reason = mode, reason
        self.changes.append((mode, reason, changed_by))

    # -- pm.control_blocks ---------------------------------------------------------------------
    def blocks(self, signal: Signal, portfolio: "Book") -> Optional[str]:
        """Why the controls block this signal, evaluated on the committed portfolio (None: they do not)."""
        if self.mode == "halted":
            return f"trading paused (halted): {self.reason or 'no reason given'}"
        if self.mode == "exits_only" and signal.type is not SignalType.EXIT:
            return f"trading paused (exits only): {self.reason or 'no reason given'}"
        if self.mode == "active":
            tripped = self.daily_loss(signal, portfolio)
            if tripped is not None:
                self.set_mode("exits_only", tripped, "breaker:daily_loss")
                if signal.type is not SignalType.EXIT:
                    return f"trading paused (exits only): {tripped}"
        if signal.type is SignalType.EXIT:
            return None
        active = [lock for lock in self.locks if lock.instrument == signal.instrument and lock.until > signal.timestamp]
        if active:
            lock = max(active, key=lambda x: x.until)
            return lock_reason(lock.instrument, lock.until, lock.reason)
        for name, breaker in (("max_entries", self.max_entries), ("cooling_off", self.cooling_off)):
            found = breaker(signal)
            if found is not None:
                until, reason = found
                self.locks.append(Lock(signal.instrument, until, reason, f"breaker:{name}"))
                return lock_reason(signal.instrument, until, reason)
        return None

    def record(self, signal: Signal, result: SignalResult, portfolio: "Book") -> None:
        """What the database's tables would now hold: executed entries per day, closed trades."""
        if result.outcome is not Outcome.EXECUTED:
            return
        if signal.type in ENTRIES:
            key = (signal.instrument, ist_day(signal.timestamp))
            self.entries[key] = self.entries.get(key, 0) + 1
        for position_id in [*result.details.get("stopped_out", []), *result.details.get("closed", [])]:
            closed = portfolio.closed[position_id]
            assert closed.exit_timestamp is not None
            self.trades.setdefault(closed.instrument, []).append(
                (closed.exit_timestamp, position_id, closed.realized_pnl))

    # -- the breakers: each answers "lock until T, because R" ------------------------------------
    def daily_loss(self, signal: Signal, portfolio: "Book") -> Optional[str]:
        """pm.breaker_daily_loss: open equity more than daily_loss_pct below the day's first value."""
        pct = self.settings.daily_loss_pct
        if pct is None:
            return None
        now = portfolio.open_equity()
        start = self.day_start_equity.get(ist_day(signal.timestamp))
        if start is None:
            self.day_start_equity[ist_day(signal.timestamp)] = _cents(now)
            return None
        if now >= start * (1 - pct / 100):
            return None
        loss = _cents(100 * (start - now) / start)
        return (f"daily loss limit: open equity {_cents(now)} is {loss}% below the day's start {_cents(start)} "
                f"(limit {pct}%)")

    def max_entries(self, signal: Signal) -> Optional[tuple[datetime, str]]:
        """pm.breaker_max_entries: the instrument's executed entries today reached the maximum."""
        limit = self.settings.max_entries_per_day
        day = ist_day(signal.timestamp)
        if limit is None or self.entries.get((signal.instrument, day), 0) < limit:
            return None
        return day_start(day) + timedelta(days=1), f"max {limit} entries per day reached"

    def cooling_off(self, signal: Signal) -> Optional[tuple[datetime, str]]:
        """pm.breaker_cooling_off: the last N trades of the instrument all lost, the last one recently."""
        n, hours = self.settings.cooling_off_losses, self.settings.cooling_off_hours
        if n is None or hours is None or signal.type is not SignalType.BASE_ENTRY:
            return None
        done = sorted((t for t in self.trades.get(signal.instrument, []) if t[0] <= signal.timestamp),
                      key=lambda t: (t[0], t[1]), reverse=True)[:n]
        if len(done) < n or any(pnl >= 0 for _, _, pnl in done):
            return None
        until = done[0][0] + timedelta(seconds=int(hours * 3600))
        if until <= signal.timestamp:
            return None
        return until, f"cooling off after {n} losing trades in a row"
