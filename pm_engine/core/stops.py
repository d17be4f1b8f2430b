"""Stops (docs/domain.md#stops-and-exits): the ATR trailing stop, which never loosens, and the stop-hit test."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from pm_engine.core.instruments import InstrumentConfig
from pm_engine.core.models import Position


def initial_stop(price: Decimal, atr: Decimal, stop: Decimal | None,
                 instrument: InstrumentConfig) -> Decimal:
    """The strategy's stop; ``price − initial ATR multiple × atr`` only when no stop was supplied."""
    return stop if stop is not None else price - instrument.initial_stop_atr * atr


def trail(position: Position, price: Decimal, atr: Decimal, instrument: InstrumentConfig) -> bool:
    """Raise ``highest_close`` and ``current_stop`` for a new price; return whether anything changed.

    ``candidate = highest_close − trailing multiple × atr`` with the signal's ATR (the position's
    ATR at entry when the signal carries none), rounded half-up to 0.01 like every stored price;
    the stop only moves up.
    """
    atr = atr if atr > 0 else position.atr
    highest = max(position.highest_close, price)
    stop = position.current_stop
    if atr > 0:
        candidate = highest - instrument.trailing_stop_atr * atr
        stop = max(stop, candidate.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))
    changed = highest != position.highest_close or stop != position.current_stop
    position.highest_close, position.current_stop = highest, stop
    return changed


def stop_hit(position: Position, price: Decimal) -> bool:
    """A price below the current stop means the stop is hit."""
    return price < position.current_stop
