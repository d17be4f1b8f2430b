"""Tom Basso position sizing for base entries (docs/domain.md#sizing-a-base-entry), in exact arithmetic.

Every constraint is evaluated as an exact fraction (``fractions.Fraction`` built from the Decimal
inputs), so flooring can never be fooled by a binary-float result a hair under a whole number
(pitfall 5: 50,000 / 1,200 × 0.12 is exactly 5, not 4.999…). Recorded constraint values and
percentages are rounded for display only: to 4 decimals, ROUND_HALF_UP (numeric(8,4) in the
database). Lots are always floored, never rounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Sequence

from pm_engine.core.instruments import InstrumentConfig, PortfolioConfig

FOUR_PLACES = Decimal("0.0001")


def as_fraction(value: Decimal | int) -> Fraction:
    return Fraction(value)


def to_decimal(value: Fraction, places: Decimal = FOUR_PLACES) -> Decimal:
    """A fraction rounded half-up to ``places`` (display and storage only, never for lot counts)."""
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(places, rounding=ROUND_HALF_UP)


def percent_of(amount: Decimal, equity: Decimal) -> Decimal:
    """``amount`` as a percentage of ``equity``, 4 decimals (0 when equity is not positive)."""
    if equity <= 0:
        return Decimal("0.0000")
    return to_decimal(as_fraction(amount) * 100 / as_fraction(equity))


def pick_limiter(constraints: Sequence[tuple[str, Fraction]]) -> tuple[str, Fraction]:
    """The tightest constraint; ties go to the earliest in the given order."""
    best = constraints[0]
    for name, value in constraints[1:]:
        if value < best[1]:
            best = (name, value)
    return best


@dataclass(frozen=True)
class SizingResult:
    """Lots, the binding constraint, every constraint's value and the position's risk and volatility."""

    lots: int
    limiter: str
    constraints: dict[str, Decimal] = field(default_factory=dict)
    risk_amount: Decimal = Decimal(0)
    vol_amount: Decimal = Decimal(0)
    risk_contribution: Decimal = Decimal(0)
    vol_contribution: Decimal = Decimal(0)


def available_margin(equity: Decimal, margin_used: Decimal, config: PortfolioConfig) -> Fraction:
    """``max(0, max_margin % × equity − margin already in use)`` (pitfall 3: subtract what is used)."""
    return max(Fraction(0), as_fraction(equity) * as_fraction(config.max_margin_pct) / 100 - as_fraction(margin_used))


def position_risk(entry: Decimal, stop: Decimal, lots: int, instrument: InstrumentConfig) -> Decimal:
    """``max(0, entry − stop) × lots × point value``."""
    return max(Decimal(0), entry - stop) * lots * instrument.point_value


def position_vol(atr: Decimal, lots: int, instrument: InstrumentConfig) -> Decimal:
    """``atr × lots × point value``."""
    return atr * lots * instrument.point_value


def finish(lots: int, limiter: str, constraints: dict[str, Fraction], price: Decimal, stop: Decimal, atr: Decimal,
           equity: Decimal, instrument: InstrumentConfig) -> SizingResult:
    risk = position_risk(price, stop, lots, instrument)
    vol = position_vol(atr, lots, instrument)
    return SizingResult(
        lots=lots, limiter=limiter, constraints={k: to_decimal(v) for k, v in constraints.items()},
        risk_amount=risk, vol_amount=vol,
        risk_contribution=percent_of(risk, equity), vol_contribution=percent_of(vol, equity),
    )


def size_base_entry(price: Decimal, stop: Decimal, atr: Decimal, er: Decimal, equity: Decimal,
                    margin_used: Decimal, instrument: InstrumentConfig, config: PortfolioConfig) -> SizingResult:
    """Lot-R, Lot-V and Lot-M; lots = ⌊min of the constraints in use⌋ (risk and margin by default)."""
    q = as_fraction(equity)
    v = as_fraction(instrument.point_value)
    risk_per_lot = (as_fraction(price) - as_fraction(stop)) * v
    lot_r = q * as_fraction(instrument.initial_risk_pct) / 100 * as_fraction(er) / risk_per_lot
    lot_v = q * as_fraction(instrument.initial_vol_pct) / 100 / (as_fraction(atr) * v)
    lot_m = available_margin(equity, margin_used, config) / as_fraction(instrument.margin_per_lot)
    if q <= 0:
        lot_r = lot_v = Fraction(0)
    in_use = [("risk", lot_r)]
    if config.use_volatility_constraint:
        in_use.append(("volatility", lot_v))
    in_use.append(("margin", lot_m))
    limiter, tightest = pick_limiter(in_use)
    lots = max(0, math.floor(tightest))
    return finish(lots, limiter, {"risk": lot_r, "volatility": lot_v, "margin": lot_m}, price, stop, atr, equity,
                  instrument)


def one_lot_needs(limiter: str, price: Decimal, stop: Decimal, atr: Decimal, er: Decimal, equity: Decimal,
                  margin_used: Decimal, instrument: InstrumentConfig, config: PortfolioConfig) -> str:
    """Why a base entry sized to zero lots: what one lot would have needed of the binding constraint, against
    what the configuration allows (e.g. "1 lot needs ₹10,500.00 of risk: 0.62 % of equity at ER 0.85, above the
    0.5 % allowed"). Rupees to 2 decimals, percentages to 2 (ROUND_HALF_UP), for the trader to read only."""
    cents, two = Decimal("0.01"), Decimal("0.01")
    if equity <= 0:
        return "sizing equity is not positive"
    if limiter == "volatility":
        vol = (atr * instrument.point_value).quantize(cents, rounding=ROUND_HALF_UP)
        pct = (vol * 100 / equity).quantize(two, rounding=ROUND_HALF_UP)
        return (f"1 lot needs ₹{vol:,} of volatility (ATR {atr}): {pct} % of equity, above the "
                f"{instrument.initial_vol_pct} % allowed")
    if limiter == "margin":
        free = to_decimal(available_margin(equity, margin_used, config), cents)
        return (f"1 lot needs ₹{instrument.margin_per_lot:,} of margin; ₹{free:,} is free "
                f"({config.max_margin_pct} % of equity less ₹{margin_used:,} in use)")
    risk = ((price - stop) * instrument.point_value).quantize(cents, rounding=ROUND_HALF_UP)
    if er <= 0:
        return f"1 lot needs ₹{risk:,} of risk, and ER {er} allows none"
    pct = (risk * 100 / (equity * er)).quantize(two, rounding=ROUND_HALF_UP)
    return (f"1 lot needs ₹{risk:,} of risk: {pct} % of equity at ER {er}, above the "
            f"{instrument.initial_risk_pct} % allowed")


def portfolio_limit_reasons(total_risk: Decimal, total_vol: Decimal, new_risk: Decimal, new_vol: Decimal,
                            equity: Decimal, max_risk_pct: Decimal, max_vol_pct: Decimal) -> list[str]:
    """Why adding a position would break the portfolio's risk or volatility limit (empty when it fits)."""
    reasons = []
    if equity <= 0:
        return ["sizing equity is not positive"]
    risk, vol = total_risk + new_risk, total_vol + new_vol
    if risk * 100 > max_risk_pct * equity:  # exact comparison; the percentage shown is rounded
        reasons.append(f"portfolio risk would be {percent_of(risk, equity)}% of equity, above {max_risk_pct}%")
    if vol * 100 > max_vol_pct * equity:
        reasons.append(f"portfolio volatility would be {percent_of(vol, equity)}% of equity, above {max_vol_pct}%")
    return reasons
