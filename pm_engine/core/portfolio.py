"""The book: open positions, pyramiding state, marks and equity, in memory (docs/domain.md#equity).

``Book`` is the portfolio as the engine holds it; ``store.book`` (a core.state_store.StateStore)
is its durable side.

The engine decides each signal on a ``clone()`` and adopts the clone only after the signal's
effects are durable, so a failed write can never leave memory ahead of the database.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Mapping, Optional

from pm_engine.core.instruments import DEFAULT_INSTRUMENTS, InstrumentConfig, PortfolioConfig, with_lot_size
from pm_engine.core.models import Position, PyramidState
from pm_engine.core.orders import Order
from pm_engine.core.sizing import percent_of, position_risk, position_vol

if TYPE_CHECKING:  # pragma: no cover
    from pm_engine.core.state_store import StateStore


def paise(amount: Decimal) -> Decimal:
    """An amount of rupees to 0.01, half away from zero (PostgreSQL's round for numeric)."""
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Metrics:
    """Portfolio totals over open positions, in rupees and as % of sizing equity."""

    total_risk: Decimal
    total_vol: Decimal
    margin_used: Decimal
    risk_percent: Decimal
    vol_percent: Decimal
    margin_percent: Decimal


class Book:
    """The book: closed equity, open positions, pyramiding state and the latest price of each instrument.

    With a ``store`` (a StateStore) it loads the committed book at once and saves every close made on
    it directly; the engine's working copies (``clone``) have none.
    """

    def __init__(self, config: Optional[PortfolioConfig] = None,
                 instruments: Optional[Mapping[str, InstrumentConfig]] = None,
                 store: Optional["StateStore"] = None) -> None:
        self.config = config or PortfolioConfig()
        self.instruments = dict(instruments or DEFAULT_INSTRUMENTS)
        self.store = store
        self.initial_capital = self.config.initial_capital
        self.closed_equity = self.config.initial_capital
        self.equity_high = self.config.initial_capital
        self.version = 0
        self.positions: dict[str, Position] = {}
        self.closed: dict[str, Position] = {}  # the last closed row of each position id (EXIT no-op check)
        self.trades_closed = 0  # positions closed since this manager started
        self.orders: list[Order] = []  # a working copy's broker orders, sent once its effects are durable
        self.realized_total = Decimal(0)  # their realized P&L
        self.pyramiding: dict[str, PyramidState] = {}
        self.marks: dict[str, Decimal] = {}
        self.dirty_positions: dict[str, Position] = {}
        self.origin: dict[str, Position] = {}  # for a working copy: the records it was copied from
        self.dirty_closed: list[Position] = []  # closed, then reopened under the same id, in one decision
        self.dirty_pyramiding: set[str] = set()
        if store is not None:
            self.load()

    # -- persistence ---------------------------------------------------------------------------
    def load(self, state: Optional[dict[str, Any]] = None) -> None:
        """Recover closed equity, open positions, pyramiding state and marks (one database round trip).

        Marks are not a column of their own: each open position stores its unrealized P&L at the
        instrument's last price, so ``mark = entry + unrealized / (lots × point value)`` exactly.
        """
        if state is None:
            assert self.store is not None
            state = self.store.load_state()
        row = state["portfolio"]
        if row is not None:
            self.initial_capital = Decimal(row["initial_capital"])
            self.closed_equity = Decimal(row["closed_equity"])
            self.equity_high = max(Decimal(row["equity_high"]), self.closed_equity)
            self.version = int(row["version"])
        self.positions = dict(state["positions"])
        self.pyramiding = {
            r["instrument"]: PyramidState(
                r["instrument"],
                Decimal(r["last_pyramid_price"]) if r["last_pyramid_price"] is not None else None,
                r["base_position_id"])
            for r in state["pyramiding"]
        }
        self.marks = {}
        for position in self.positions.values():
            point_value = self.position_instrument(position).point_value
            self.marks.setdefault(position.instrument,
                                  position.entry_price + position.unrealized_pnl / (position.lots * point_value))
        self.dirty_positions.clear()
        self.dirty_closed.clear()
        self.dirty_pyramiding.clear()

    def state_document(self) -> dict[str, Any]:
        """The portfolio_state row this book implies (metrics on sizing equity)."""
        metrics = self.metrics()
        return {
            "initial_capital": self.initial_capital, "closed_equity": self.closed_equity,
            "equity_high": self.equity_high, "total_risk_amount": metrics.total_risk,
            "total_risk_percent": metrics.risk_percent, "total_vol_amount": metrics.total_vol,
            "margin_used": metrics.margin_used, "blended_weight": self.config.blended_weight,
        }

    def clone(self) -> "Book":
        """A detached working copy (no database) for deciding one signal."""
        other = copy.copy(self)
        other.store = None
        # records hold only immutable values (Decimal, datetime, str, int), so a copy of each is a
        # full copy; deepcopy cost ~10x more and was the engine's largest CPU item per signal
        other.positions = {k: copy.copy(v) for k, v in self.positions.items()}
        other.origin = self.positions  # the untouched records: updates send only the fields that changed
        other.pyramiding = {k: copy.copy(v) for k, v in self.pyramiding.items()}
        other.marks = dict(self.marks)
        other.closed = dict(self.closed)
        other.dirty_positions = {}
        other.dirty_closed = []
        other.dirty_pyramiding = set()
        other.orders = []
        return other

    def adopt(self, work: "Book") -> None:
        """Take over a working copy's state once its effects are durable.

        Closed equity and ``equity_high`` are kept in paise, rounded half away from zero as the database stores
        them (``round(…, 2)`` in pm.apply_state): a book that kept the unrounded sum would drift from the stored
        one with a fractional point value, and the database refuses a closed equity that disagrees (PM094)."""
        self.closed_equity, self.equity_high, self.version = paise(work.closed_equity), paise(work.equity_high), \
            work.version
        self.trades_closed, self.realized_total = work.trades_closed, work.realized_total
        self.positions, self.pyramiding = work.positions, work.pyramiding
        self.marks, self.closed = work.marks, work.closed

    # -- equity --------------------------------------------------------------------------------
    def instrument(self, name: str) -> InstrumentConfig:
        return self.instruments[name]

    def position_instrument(self, p: Position) -> InstrumentConfig:
        """The instrument as the position's contract trades it: point value and margin per lot follow the
        contract's lot size, which the position records as ``quantity / lots`` (docs/domain.md#instruments)."""
        config = self.instruments[p.instrument]
        if p.lots <= 0 or p.quantity == p.lots * config.lot_size:
            return config
        return with_lot_size(config, p.quantity // p.lots)

    def unrealized(self) -> Decimal:
        """Σ (mark − entry) × lots × point value over open positions."""
        return sum((p.unrealized_pnl for p in self.positions.values()), Decimal(0))

    def open_equity(self) -> Decimal:
        return self.closed_equity + self.unrealized()

    def blended_equity(self) -> Decimal:
        return self.closed_equity + self.config.blended_weight * self.unrealized()

    def sizing_equity(self) -> Decimal:
        """The equity sizing uses: closed, open or blended (default), or the closed-equity high."""
        if self.config.size_on_equity_high:
            return self.equity_high
        return {"closed": self.closed_equity, "open": self.open_equity(),
                "blended": self.blended_equity()}[self.config.sizing_equity]

    def metrics(self) -> Metrics:
        risk = vol = margin = Decimal(0)
        for p in self.positions.values():
            instrument = self.position_instrument(p)
            risk += position_risk(p.entry_price, p.current_stop, p.lots, instrument)
            vol += position_vol(p.atr, p.lots, instrument)
            margin += p.lots * instrument.margin_per_lot
        equity = self.sizing_equity()
        return Metrics(risk, vol, margin, percent_of(risk, equity), percent_of(vol, equity), percent_of(margin, equity))

    def layer_view(self, p: Position) -> dict[str, Any]:
        """How one open layer stands, for people: its mark, the distance from the mark to its stop in R
        (R = entry − initial stop; None when that is not positive) and its risk as % of sizing equity."""
        instrument = self.position_instrument(p)
        mark = self.marks.get(p.instrument, p.entry_price)
        one_r = p.entry_price - p.initial_stop
        distance = ((mark - p.current_stop) / one_r).quantize(Decimal("0.01")) if one_r > 0 else None
        return {"mark": mark, "distance_to_stop_r": distance,
                "risk_pct": percent_of(position_risk(p.entry_price, p.current_stop, p.lots, instrument),
                                       self.sizing_equity())}

    def open_layers(self, instrument: str) -> list[Position]:
        return sorted((p for p in self.positions.values() if p.instrument == instrument),
                      key=lambda p: (p.entry_timestamp, p.position_id))

    def open_layers_all(self) -> list[Position]:
        return sorted(self.positions.values(), key=lambda p: (p.instrument, p.entry_timestamp, p.position_id))

    # -- changes -------------------------------------------------------------------------------
    def mark_dirty(self, position: Position) -> None:
        self.dirty_positions[position.position_id] = position

    def set_pyramiding(self, instrument: str, last_pyramid_price: Optional[Decimal],
                       base_position_id: Optional[str]) -> None:
        self.pyramiding[instrument] = PyramidState(instrument, last_pyramid_price, base_position_id)
        self.dirty_pyramiding.add(instrument)

    def clear_pyramiding(self, instrument: str) -> None:
        self.pyramiding.pop(instrument, None)
        self.dirty_pyramiding.add(instrument)

    def update_unrealized_pnl(self, instrument: str, price: Decimal) -> None:
        """Record the instrument's latest price and revalue its open positions at it."""
        self.marks[instrument] = price
        for p in self.positions.values():
            if p.instrument == instrument:
                unrealized = (price - p.entry_price) * p.lots * self.position_instrument(p).point_value
                if unrealized != p.unrealized_pnl:
                    p.unrealized_pnl = unrealized
                    self.mark_dirty(p)

    def open_position(self, position: Position) -> None:
        earlier = self.dirty_positions.get(position.position_id)
        if earlier is not None and earlier.status == "closed":  # e.g. stopped out, then re-entered: write both
            self.dirty_closed.append(earlier)
        self.positions[position.position_id] = position
        self.mark_dirty(position)
        self.update_unrealized_pnl(position.instrument, self.marks.get(position.instrument, position.entry_price))

    def close_position(self, position_id: str, exit_price: Decimal, exit_time: datetime, reason: str) -> Decimal:
        """Close an open position: realized P&L into closed equity; base and pyramiding state updated.

        Returns the realized P&L.
        """
        position = self.positions[position_id]
        instrument = self.position_instrument(position)
        realized = (exit_price - position.entry_price) * position.lots * instrument.point_value
        closed = copy.copy(position)
        closed.status, closed.exit_price, closed.exit_timestamp, closed.exit_reason = (
            "closed", exit_price, exit_time, reason)
        closed.realized_pnl, closed.unrealized_pnl = realized, Decimal(0)
        del self.positions[position_id]
        self.closed[position_id] = closed
        self.mark_dirty(closed)
        self.closed_equity += realized
        self.trades_closed += 1
        self.realized_total += realized
        self.equity_high = max(self.equity_high, self.closed_equity)
        state = self.pyramiding.get(position.instrument)
        if not self.open_layers(position.instrument):
            if state is not None:
                self.clear_pyramiding(position.instrument)
        elif state is not None and state.base_position_id == position_id:
            self.set_pyramiding(position.instrument, state.last_pyramid_price, None)
        if self.store is not None:
            self.persist()
        return realized

    def persist(self) -> None:
        """Write the changed positions, pyramiding state and closed equity (version-checked, one round trip).

        The engine never needs this: it decides on working copies (no store) and writes their
        effects with the signal's claim. It is for a manager used directly, e.g. a manual close.
        """
        assert self.store is not None
        self.store.save_positions(self)
        self.dirty_positions.clear()
        self.dirty_closed.clear()
        self.dirty_pyramiding.clear()
