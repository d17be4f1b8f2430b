"""The roll's accounting in memory: the Python twin of the roll state machine's accounting in the database.

SQL twin: ``db/functions/78_roll_accounting.sql`` and ``79_roll_machine.sql`` — ``pm.roll_close_layer_realized``
(the close), ``pm.roll_open`` (equity_high), ``pm.roll_move_layer`` (the new contract) and ``pm.roll_leg_price``
(a paper leg's price).
Live, the database rolls a group as its legs fill; a backtest has no database, so ``roll_in_memory``
applies the same accounting with both legs filled at the given prices:

- the old contract's P&L, ``(close − entry) × lots × point value`` rounded to 0.01, is realized into
  closed equity and added to ``rollover_pnl``; ``original_entry_price``, ``original_expiry`` and
  ``original_strike`` keep the first contract's; ``equity_high`` follows closed equity up;
- the new entry is the open fill; ``initial_stop``, ``current_stop`` and ``highest_close`` shift by the
  basis ``open − close``; a synthetic layer's legs are entered at their paper prices (``leg_price``), a
  future's leg prices are none; the old contract's signal price is dropped (beside the new fill it would
  read as slippage);
- ``rollover_count`` + 1, ``rollover_timestamp``, ``rollover_status`` back to ``none``.

``tests/db/test_twins.py`` rolls the same groups at the same fills both ways and compares every field.
"""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Optional

from pm_engine.core.rollover import RollPlan

if TYPE_CHECKING:  # pragma: no cover
    from pm_engine.core.portfolio import Book

CENT = Decimal("0.01")


def leg_price(mark: Decimal, strike: Optional[int], leg: str) -> Decimal:
    """pm.roll_leg_price, rounded as the roll's orders are: a synthetic leg's premium whose strike + call − put
    is the mark (the intrinsic value plus 100); a future's price is the mark."""
    if leg == "CE" and strike is not None:
        value = max(mark - strike, Decimal(0)) + 100
    elif leg == "PE" and strike is not None:
        value = max(strike - mark, Decimal(0)) + 100
    else:
        value = mark
    return value.quantize(CENT, ROUND_HALF_UP)


def roll_in_memory(portfolio: "Book", plan: RollPlan, close_price: Decimal,
                   open_price: Decimal, at: datetime) -> list[dict[str, Any]]:
    """The database's roll, in memory (backtests and replays): both legs fill at the given prices."""
    done = []
    for layer in plan.layers:
        p = portfolio.positions[layer.position_id]
        pnl = ((close_price - p.entry_price) * layer.lots * layer.point_value).quantize(CENT, ROUND_HALF_UP)
        basis = open_price - close_price
        portfolio.closed_equity += pnl
        p.rollover_pnl += pnl
        if p.original_entry_price is None:
            p.original_entry_price = p.entry_price
        if p.original_expiry is None:
            p.original_expiry = p.expiry
        if p.original_strike is None:
            p.original_strike = p.strike
        p.entry_price = open_price
        p.lots, p.quantity = layer.new_lots, layer.new_lots * layer.new_lot_size
        p.futures_symbol, p.expiry, p.contract_month = layer.to_symbol, layer.to_expiry, layer.to_contract_month
        p.strike, p.ce_symbol, p.pe_symbol = layer.to_strike, layer.to_ce_symbol, layer.to_pe_symbol
        synthetic = layer.to_ce_symbol is not None
        p.ce_entry_price = leg_price(open_price, layer.to_strike, "CE") if synthetic else None
        p.pe_entry_price = leg_price(open_price, layer.to_strike, "PE") if synthetic else None
        p.initial_stop += basis
        p.current_stop += basis
        p.highest_close += basis
        p.unrealized_pnl = Decimal(0)
        p.signal_price = None  # pm.roll_move_layer: the old contract's alert price is no reference for the new fill
        p.rollover_status, p.rollover_count, p.rollover_timestamp = "none", p.rollover_count + 1, at
        portfolio.dirty_positions[p.position_id] = p
        done.append({"position_id": p.position_id, "close_price": close_price, "close_pnl": pnl,
                     "open_price": open_price, "basis": basis, "lots": layer.new_lots})
    portfolio.marks[plan.instrument] = open_price
    portfolio.equity_high = max(portfolio.equity_high, portfolio.closed_equity)  # as pm.roll_open does
    return done
