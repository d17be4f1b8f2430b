"""Rollover planning (docs/domain.md#rollover): what a group's roll to the next contract is, in pure Python.

A group is every open layer of one instrument: they hold one contract (the one-contract rule) and roll
together. The plan names, per layer, the contract it moves into (the calendar's next one), the new lot
size and the lots re-sized to whole lots of it (rounded down: never more exposure than before), the
order quantities in the exchange's unit, both point values, and for a synthetic Bank Nifty layer the new
strike from the current price. The database carries the plan out as a state machine (db/functions/79_roll_machine.sql);
its accounting's twin for backtests and replays is ``pm_engine/core/replay/rollover.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, Optional

from pm_engine.core.contracts import Contract, ContractCalendar
from pm_engine.core.errors import PmError
from pm_engine.core.instruments import with_lot_size
from pm_engine.core.models import Position

if TYPE_CHECKING:  # pragma: no cover
    from pm_engine.core.portfolio import Book

CENT = Decimal("0.01")


class RollPlanError(PmError):
    """A group that cannot be planned (no contract recorded, no calendar, fewer units than one new lot)."""


def resized_lots(lots: int, lot_size: int, new_lot_size: int) -> int:
    """Whole lots of the new size holding at most the same units (rounded down)."""
    return (lots * lot_size) // new_lot_size


@dataclass(frozen=True)
class RollLayer:
    """One layer's part of a roll: what ``pm.roll_begin`` records (the rest it reads from the position)."""

    position_id: str
    exchange: str
    to_symbol: str
    to_expiry: str
    to_contract_month: str
    lots: int
    new_lots: int
    lot_size: int
    new_lot_size: int
    close_quantity: int
    open_quantity: int
    point_value: Decimal
    new_point_value: Decimal
    price: Decimal
    to_strike: Optional[int] = None
    to_ce_symbol: Optional[str] = None
    to_pe_symbol: Optional[str] = None

    def as_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class RollPlan:
    """A group's roll: from the contract it holds to the next, due on its roll date."""

    instrument: str
    from_symbol: str
    expiry: date
    roll_date: date
    to: Contract
    layers: tuple[RollLayer, ...] = field(default_factory=tuple)

    def due(self, on: date) -> bool:
        return on >= self.roll_date

    def expired(self, on: date) -> bool:
        """Past the old contract's last trading day: too late to roll (the trader is told)."""
        return on > self.expiry

    def as_json(self, on: date) -> dict[str, Any]:
        return {"instrument": self.instrument, "from_symbol": self.from_symbol, "expiry": self.expiry.isoformat(),
                "roll_date": self.roll_date.isoformat(), "days_to_roll": (self.roll_date - on).days,
                "due": self.due(on), "expired": self.expired(on), "to_symbol": self.to.symbol,
                "to_expiry": self.to.expiry.isoformat(), "to_lot_size": self.to.lot_size,
                "layers": [layer.as_json() for layer in self.layers]}


def held_contract(calendar: ContractCalendar, p: Position) -> Contract:
    """The contract a position holds, from its recorded expiry's contract month."""
    if not p.expiry or not p.futures_symbol:
        raise RollPlanError(f"position {p.position_id} records no contract: it cannot be rolled")
    if calendar.spec(p.instrument) is None:
        raise RollPlanError(f"{p.instrument} has no contract calendar: it cannot be rolled")
    month = p.contract_month or p.expiry[:7]
    return calendar.contract(p.instrument, int(month[:4]), int(month[5:7]))


def plan_roll(portfolio: "Book", calendar: ContractCalendar, instrument: str,
              mark: Optional[Decimal] = None, mcx_quantity: str = "lots") -> RollPlan:
    """The roll of ``instrument``'s open layers into the contract after the one they hold, at ``mark``
    (default: the portfolio's mark of the instrument), quantities in the order unit."""
    layers = sorted(portfolio.open_layers(instrument), key=lambda p: p.position_id)
    if not layers:
        raise RollPlanError(f"no open {instrument} position to roll")
    held = held_contract(calendar, layers[0])
    following = calendar.after(held)
    price = Decimal(mark if mark is not None else portfolio.marks.get(instrument, layers[0].entry_price))
    config = portfolio.instruments[instrument]
    new_config = with_lot_size(config, following.lot_size)
    planned = []
    for p in layers:
        traded = portfolio.position_instrument(p)
        lot_size = p.quantity // p.lots
        new_lots = resized_lots(p.lots, lot_size, following.lot_size)
        if new_lots <= 0:
            raise RollPlanError(f"{p.position_id}: {p.quantity} units are less than one lot of {following.symbol} "
                                f"({following.lot_size})")
        in_lots = held.exchange == "MCX" and mcx_quantity == "lots"
        legs = None
        if p.ce_symbol:
            legs = calendar.synthetic_legs(instrument, following.expiry, price)
        planned.append(RollLayer(
            p.position_id, held.exchange, following.symbol, following.expiry.isoformat(), following.contract_month,
            p.lots, new_lots, lot_size, following.lot_size, p.lots if in_lots else p.quantity,
            new_lots if in_lots else new_lots * following.lot_size, traded.point_value, new_config.point_value,
            price.quantize(CENT, ROUND_HALF_UP), legs.strike if legs else None, legs.ce_symbol if legs else None,
            legs.pe_symbol if legs else None))
    return RollPlan(instrument, held.symbol, held.expiry, held.roll_date, following, tuple(planned))


def group_plans(portfolio: "Book", calendar: ContractCalendar,
                mcx_quantity: str = "lots") -> tuple[list[RollPlan], list[str]]:
    """Every open group's plan, and why the others cannot be planned."""
    plans, problems = [], []
    for instrument in sorted({p.instrument for p in portfolio.positions.values() if p.status == "open"}):
        try:
            plans.append(plan_roll(portfolio, calendar, instrument, mcx_quantity=mcx_quantity))
        except RollPlanError as exc:
            problems.append(str(exc))
    return plans, problems
