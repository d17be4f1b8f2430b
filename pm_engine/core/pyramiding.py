"""Pyramid gates and pyramid sizing (docs/domain.md#pyramiding), in exact arithmetic like sizing.py."""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction
from typing import Optional, Sequence

from pm_engine.core.instruments import InstrumentConfig, PortfolioConfig
from pm_engine.core.models import Position
from pm_engine.core.sizing import SizingResult, as_fraction, available_margin, finish, pick_limiter


def next_layer(pyramid_count: int) -> str:
    """The layer a new pyramid must carry after ``pyramid_count`` pyramids: ``Long_{n+2}``."""
    return f"Long_{pyramid_count + 2}"


def pyramid_anomaly(layer: str, base: Optional[Position], open_layers: Sequence[Position],
                    instrument: InstrumentConfig) -> Optional[str]:
    """The anomaly a PYRAMID reveals (docs/domain.md#trading-controls: an earlier alert was probably missed), or None:
    no open base, or a layer beyond the next one (one or more pyramids skipped)."""
    if base is None or not base.is_open:
        return "pyramid_without_base"
    pyramids = sum(1 for p in open_layers if not p.is_base_position)
    if (not any(p.layer == layer for p in open_layers) and pyramids < instrument.max_pyramids
            and layer_number(layer) > layer_number(next_layer(pyramids))):
        return "pyramid_skips_layer"
    return None


def layer_number(layer: str) -> int:
    """``Long_3`` -> 3."""
    return int(layer.rsplit("_", 1)[1])


def gate_reasons(layer: str, price: Decimal, atr: Decimal, base: Optional[Position],
                 last_pyramid_price: Optional[Decimal],
                 open_layers: Sequence[Position], instrument: InstrumentConfig,
                 config: PortfolioConfig) -> list[str]:
    """Every failing precondition among gates 1-5 (gate 6, the portfolio gate, needs the size)."""
    if base is None or not base.is_open:
        return [f"no open base position for {instrument.name}"]
    reasons = []
    pyramids = [p for p in open_layers if not p.is_base_position]
    if any(p.layer == layer for p in open_layers):
        reasons.append(f"layer {layer} is already open (duplicate, not a new pyramid)")
    elif len(pyramids) >= instrument.max_pyramids:
        reasons.append(f"{len(pyramids)} pyramids already open, the maximum for {instrument.name}")
    elif layer != next_layer(len(pyramids)):
        reasons.append(f"layer {layer} is out of order: the next pyramid is {next_layer(len(pyramids))}")
    one_r = base.entry_price - base.initial_stop
    if not price - base.entry_price > one_r:
        reasons.append(f"1R gate: price move {price - base.entry_price} is not above 1R = {one_r}")
    reference = last_pyramid_price if last_pyramid_price is not None else base.entry_price
    spacing = (as_fraction(price) - as_fraction(reference)) / as_fraction(atr)
    if spacing < as_fraction(config.pyramid_min_spacing_atr):
        reasons.append(f"spacing {float(spacing):.2f} ATR from {reference} "
                       f"is below {config.pyramid_min_spacing_atr} ATR")
    profit = sum(((price - p.entry_price) * p.lots * instrument.point_value for p in open_layers), Decimal(0))
    if not profit > 0:
        reasons.append(f"profit gate: open profit {profit} is not positive")
    return reasons


def size_pyramid(price: Decimal, stop: Decimal, atr: Decimal, base: Position, pyramid_count: int, equity: Decimal,
                 margin_used: Decimal, instrument: InstrumentConfig, config: PortfolioConfig) -> SizingResult:
    """lots = min(A margin, B geometric, C risk budget), each floored; limiter names the binding one."""
    v = as_fraction(instrument.point_value)
    a = math.floor(available_margin(equity, margin_used, config) / as_fraction(instrument.margin_per_lot))
    b = math.floor(Fraction(base.lots) * Fraction(1, 2) ** (pyramid_count + 1))
    entry = as_fraction(base.entry_price)
    profit_after_base_risk = max(
        Fraction(0),
        (as_fraction(price) - entry) * base.lots * v - (entry - as_fraction(base.initial_stop)) * base.lots * v)
    c = math.floor(Fraction(1, 2) * profit_after_base_risk / ((as_fraction(price) - as_fraction(stop)) * v))
    limiter, tightest = pick_limiter([("margin", Fraction(a)), ("geometric", Fraction(b)),
                                      ("risk_budget", Fraction(c))])
    lots = max(0, int(tightest))
    return finish(lots, limiter, {"margin": Fraction(a), "geometric": Fraction(b), "risk_budget": Fraction(c)},
                  price, stop, atr, equity, instrument)
