"""Instrument and portfolio configuration: the one table every module reads (docs/domain.md#instruments).

The reference design hard-coded point values and margins in several modules and they drifted
apart (pitfall 2); here they exist once, loaded from a JSON file or the defaults below. Each
instrument's tradable contracts — exchange, symbol, contract months, expiry rule, roll offset,
lot size per contract — are part of the same table (``ContractSpec``, docs/domain.md#contracts-and-expiry);
``core/contracts.py`` answers from them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Optional

from pm_engine.core.errors import ConfigError


@dataclass(frozen=True)
class ContractSpec:
    """How an instrument's futures contracts are named, listed, expire and roll (docs/domain.md#contracts-and-expiry).

    ``expiry_rules`` and ``lot_sizes`` are ``(first contract month "YYYY-MM", value)`` pairs in
    month order: a rule or lot size applies from that contract month on, until the next pair. A
    contract month before the first lot-size pair uses the instrument's ``lot_size``. Rules:
    ``last_monday`` … ``last_friday`` (the last such weekday of the month), ``last_day`` (the last
    calendar day), ``day_NN`` (that day of the month); a day that is not a trading day moves to the
    trading day before it.
    """

    exchange: str  # the order's exchange: NFO | MCX
    calendar: str  # the holiday calendar: NSE | MCX
    base_symbol: str  # BANKNIFTY, GOLDM, ...
    months: tuple[int, ...]  # contract months, 1-12
    expiry_rules: tuple[tuple[str, str], ...]
    roll_days: int  # roll date = expiry - roll_days calendar days
    lot_sizes: tuple[tuple[str, int], ...] = ()
    listed: int = 3  # how many expiries are listed at a time
    execution: str = "futures"  # futures | synthetic (ATM call bought + put sold, NFO only)
    strike_step: int = 100  # synthetic: the ATM strike is the price rounded to this


@dataclass(frozen=True)
class InstrumentConfig:
    """One tradable instrument. Percentages are in percent (1.0 = 1 %)."""

    name: str
    lot_size: int
    point_value: Decimal
    margin_per_lot: Decimal
    initial_risk_pct: Decimal
    initial_vol_pct: Decimal
    ongoing_risk_pct: Decimal
    ongoing_vol_pct: Decimal
    initial_stop_atr: Decimal
    trailing_stop_atr: Decimal
    max_pyramids: int
    description: str = ""
    contract: Optional[ContractSpec] = None  # None: no tradable contract known (a custom instrument)


@dataclass(frozen=True)
class PortfolioConfig:
    """Portfolio-level limits and sizing choices (defaults from docs/domain.md#instruments, #equity, #sizing)."""

    initial_capital: Decimal = Decimal("5000000")
    max_portfolio_risk_pct: Decimal = Decimal("15")
    max_portfolio_vol_pct: Decimal = Decimal("5")
    max_margin_pct: Decimal = Decimal("60")
    pyramid_max_risk_pct: Decimal = Decimal("12")
    pyramid_max_vol_pct: Decimal = Decimal("4")
    pyramid_min_spacing_atr: Decimal = Decimal("0.5")
    blended_weight: Decimal = Decimal("0.5")
    sizing_equity: str = "blended"  # closed | open | blended
    size_on_equity_high: bool = False
    use_volatility_constraint: bool = False  # True: classic three-constraint Basso for base entries

    def __post_init__(self) -> None:
        if self.sizing_equity not in ("closed", "open", "blended"):
            raise ConfigError(f"sizing_equity must be closed, open or blended, got {self.sizing_equity!r}")


def _d(value: str | int) -> Decimal:
    return Decimal(str(value))


EVERY_MONTH = tuple(range(1, 13))
# Bank Nifty (docs/domain.md#contracts-and-expiry): the last Thursday until Feb 2024, the last Wednesday in
# Mar-Dec 2024, the last Thursday in Jan-Aug 2025, the last Tuesday from Sep 2025. Lot sizes by contract: 15 from
# Jul 2023, 30 for the contracts listed from 20 Nov 2024 (NSE re-sized the Jan 2025 contract with them, so 30 from
# Jan 2025), 35 from the Jul 2025 expiry (Dec 2025 stayed 35), 30 again from Jan 2026.
BANK_NIFTY_CONTRACT = ContractSpec(
    exchange="NFO", calendar="NSE", base_symbol="BANKNIFTY", months=EVERY_MONTH,
    expiry_rules=(("2000-01", "last_thursday"), ("2024-03", "last_wednesday"), ("2025-01", "last_thursday"),
                  ("2025-09", "last_tuesday")),
    roll_days=7, lot_sizes=(("2023-07", 15), ("2025-01", 30), ("2025-07", 35), ("2026-01", 30)))
GOLD_MINI_CONTRACT = ContractSpec("MCX", "MCX", "GOLDM", EVERY_MONTH, (("2000-01", "day_05"),), roll_days=8)
SILVER_MINI_CONTRACT = ContractSpec("MCX", "MCX", "SILVERM", (2, 4, 6, 8, 11), (("2000-01", "last_day"),),
                                    roll_days=8)
COPPER_CONTRACT = ContractSpec("MCX", "MCX", "COPPER", EVERY_MONTH, (("2000-01", "last_day"),), roll_days=8)

DEFAULT_INSTRUMENTS: dict[str, InstrumentConfig] = {
    cfg.name: cfg for cfg in (
        InstrumentConfig("BANK_NIFTY", 30, _d(30), _d(270000), _d("1.0"), _d("0.5"), _d("1.0"), _d("0.7"),
                         _d("1.5"), _d("2.5"), 5, "Bank Nifty (NSE), synthetic futures or futures",
                         BANK_NIFTY_CONTRACT),
        InstrumentConfig("GOLD_MINI", 100, _d(10), _d(105000), _d("1.0"), _d("0.2"), _d("1.0"), _d("0.3"),
                         _d("1.0"), _d("2.0"), 3, "Gold Mini (MCX futures, 100 g, quoted per 10 g)",
                         GOLD_MINI_CONTRACT),
        InstrumentConfig("SILVER_MINI", 5, _d(5), _d(385000), _d("1.0"), _d("0.2"), _d("1.0"), _d("0.3"),
                         _d("2.0"), _d("3.0"), 5, "Silver Mini (MCX futures, 5 kg, quoted per kg)",
                         SILVER_MINI_CONTRACT),
        InstrumentConfig("COPPER", 2500, _d(2500), _d(300000), _d("1.0"), _d("0.2"), _d("1.0"), _d("0.3"),
                         _d("3.0"), _d("5.0"), 3, "Copper (MCX futures, 2,500 kg, quoted per kg)",
                         COPPER_CONTRACT),
    )
}

_INT_FIELDS = {"lot_size", "max_pyramids"}
RULES = ("last_monday", "last_tuesday", "last_wednesday", "last_thursday", "last_friday", "last_day")
_MONTH = "(YYYY-MM)"


def _contract_month(value: Any, where: str) -> str:
    text = str(value)
    if len(text) != 7 or text[4] != "-" or not (text[:4].isdigit() and text[5:].isdigit()) \
            or not 1 <= int(text[5:]) <= 12:
        raise ConfigError(f"{where}: {value!r} is not a contract month {_MONTH}")
    return text


def valid_rule(rule: str) -> bool:
    """``last_<weekday>``, ``last_day`` or ``day_NN`` (01-28: every month has it)."""
    return rule in RULES or (rule.startswith("day_") and rule[4:].isdigit() and 1 <= int(rule[4:]) <= 28)


def _pairs(name: str, key: str, value: Any, kind: type) -> tuple[tuple[str, Any], ...]:
    where = f"instrument {name}: contract.{key}"
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{where} must be a non-empty list of [{_MONTH}, value] pairs")
    pairs = []
    for item in value:
        if not isinstance(item, list) or len(item) != 2:
            raise ConfigError(f"{where} must be a list of [{_MONTH}, value] pairs")
        month, setting = _contract_month(item[0], where), item[1]
        if kind is int and (not isinstance(setting, int) or isinstance(setting, bool) or setting <= 0):
            raise ConfigError(f"{where}: {setting!r} must be a positive integer")
        if kind is str and (not isinstance(setting, str) or not valid_rule(setting)):
            raise ConfigError(f"{where}: {setting!r} is not a rule ({', '.join(RULES)}, day_NN)")
        pairs.append((month, setting))
    if [m for m, _ in pairs] != sorted({m for m, _ in pairs}):
        raise ConfigError(f"{where}: months must be in order, each once")
    return tuple(pairs)


def _contract_from(name: str, raw: Any, base: Optional[ContractSpec]) -> ContractSpec:
    """A ``"contract": {...}`` object of the instrument file, over the instrument's default spec."""
    known = {f.name for f in fields(ContractSpec)}
    if not isinstance(raw, dict):
        raise ConfigError(f"instrument {name}: contract must be an object")
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"instrument {name}: unknown contract key(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        where = f"instrument {name}: contract.{key}"
        if key in ("exchange", "calendar", "base_symbol"):
            if not isinstance(value, str) or not value.strip().isalnum():
                raise ConfigError(f"{where} must be letters and digits")
            values[key] = value.strip().upper()
        elif key == "months":
            if not isinstance(value, list) or not value or not all(
                    isinstance(m, int) and not isinstance(m, bool) and 1 <= m <= 12 for m in value):
                raise ConfigError(f"{where} must be a non-empty list of months 1-12")
            values[key] = tuple(sorted(set(value)))
        elif key in ("expiry_rules", "lot_sizes"):
            values[key] = _pairs(name, key, value, str if key == "expiry_rules" else int)
        elif key == "execution":
            if value not in ("futures", "synthetic"):
                raise ConfigError(f"{where} must be futures or synthetic")
            values[key] = value
        else:  # roll_days, listed, strike_step
            least = 0 if key == "roll_days" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ConfigError(f"{where} must be an integer >= {least}")
            values[key] = value
    if base is not None:
        spec = replace(base, **values)
    else:
        missing = {"exchange", "calendar", "base_symbol", "months", "expiry_rules", "roll_days"} - set(values)
        if missing:
            raise ConfigError(f"instrument {name}: contract is missing {', '.join(sorted(missing))}")
        spec = ContractSpec(**values)
    if spec.execution == "synthetic" and spec.exchange != "NFO":
        raise ConfigError(f"instrument {name}: contract.execution synthetic needs NFO options")
    return spec


def _instrument_from(name: str, raw: Mapping[str, Any], base: Optional[InstrumentConfig]) -> InstrumentConfig:
    known = {f.name for f in fields(InstrumentConfig)} - {"name"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"instrument {name}: unknown key(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "description":
            values[key] = str(value)
        elif key == "contract":
            values[key] = _contract_from(name, value, base.contract if base is not None else None)
        elif key in _INT_FIELDS:
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"instrument {name}: {key} must be a positive integer")
            values[key] = value
        else:
            try:
                number = Decimal(str(value))
            except ArithmeticError:
                raise ConfigError(f"instrument {name}: {key} must be a number") from None
            if not number.is_finite() or number <= 0:
                raise ConfigError(f"instrument {name}: {key} must be a positive number")
            values[key] = number
    if base is not None:
        return replace(base, **values)
    missing = known - {"description", "contract"} - set(values)
    if missing:
        raise ConfigError(f"instrument {name}: missing {', '.join(sorted(missing))}")
    return InstrumentConfig(name=name, **values)


def load_instruments(path: Optional[str | Path] = None) -> dict[str, InstrumentConfig]:
    """The defaults, overridden or extended by ``{"instruments": {NAME: {field: value}}}`` in a JSON file."""
    instruments = dict(DEFAULT_INSTRUMENTS)
    if path is None:
        return instruments
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"instrument file {path}: {exc}") from None
    table = raw.get("instruments") if isinstance(raw, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"instrument file {path} must hold {{\"instruments\": {{NAME: {{...}}}}}}")
    for name, entry in table.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"instrument {name}: must be an object")
        key = str(name).upper()
        instruments[key] = _instrument_from(key, entry, instruments.get(key))
    return instruments


@lru_cache(maxsize=256)
def with_lot_size(instrument: InstrumentConfig, lot_size: int) -> InstrumentConfig:
    """The instrument as traded in a contract of ``lot_size`` units per lot (docs/domain.md#contracts-and-expiry).

    The table's point value and margin are per lot of the table's ``lot_size``; a contract whose
    lot holds more or fewer units (Bank Nifty's 35-unit contracts of Jul-Dec 2025) moves both in
    proportion, since both are per unit times units. Decimal division: exact for the built-in
    table (e.g. 270,000 × 35 / 30 = 315,000), otherwise 28 significant digits. Cached: the signal
    path asks for the same few pairs.
    """
    if lot_size == instrument.lot_size:
        return instrument
    ratio_num, ratio_den = Decimal(lot_size), Decimal(instrument.lot_size)
    return replace(instrument, lot_size=lot_size, point_value=instrument.point_value * ratio_num / ratio_den,
                   margin_per_lot=instrument.margin_per_lot * ratio_num / ratio_den)
