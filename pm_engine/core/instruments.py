"""Instrument and portfolio configuration: the one table every module reads (DOMAIN.md section 2).

The reference design hard-coded point values and margins in several modules and they drifted
apart (pitfall 2); here they exist once, loaded from a JSON file or the defaults below.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields, replace
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping, Optional

from pm_engine.core.errors import ConfigError


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


@dataclass(frozen=True)
class PortfolioConfig:
    """Portfolio-level limits and sizing choices (defaults from DOMAIN.md sections 2-4)."""

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


DEFAULT_INSTRUMENTS: dict[str, InstrumentConfig] = {
    cfg.name: cfg for cfg in (
        InstrumentConfig("BANK_NIFTY", 30, _d(30), _d(270000), _d("1.0"), _d("0.5"), _d("1.0"), _d("0.7"),
                         _d("1.5"), _d("2.5"), 5, "Bank Nifty (NSE), synthetic futures or futures"),
        InstrumentConfig("GOLD_MINI", 100, _d(10), _d(105000), _d("1.0"), _d("0.2"), _d("1.0"), _d("0.3"),
                         _d("1.0"), _d("2.0"), 3, "Gold Mini (MCX futures, 100 g, quoted per 10 g)"),
        InstrumentConfig("SILVER_MINI", 5, _d(5), _d(385000), _d("1.0"), _d("0.2"), _d("1.0"), _d("0.3"),
                         _d("2.0"), _d("3.0"), 5, "Silver Mini (MCX futures, 5 kg, quoted per kg)"),
        InstrumentConfig("COPPER", 2500, _d(2500), _d(300000), _d("1.0"), _d("0.2"), _d("1.0"), _d("0.3"),
                         _d("3.0"), _d("5.0"), 3, "Copper (MCX futures, 2,500 kg, quoted per kg)"),
    )
}

_INT_FIELDS = {"lot_size", "max_pyramids"}


def _instrument_from(name: str, raw: Mapping[str, Any], base: Optional[InstrumentConfig]) -> InstrumentConfig:
    known = {f.name for f in fields(InstrumentConfig)} - {"name"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"instrument {name}: unknown key(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "description":
            values[key] = str(value)
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
    missing = known - {"description"} - set(values)
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
