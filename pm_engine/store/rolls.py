"""The roll's calls into its state machine (``db/functions/79_roll_machine.sql``): Python plans, the database rolls.

Python never moves a roll itself: it records a plan (``pm.roll_begin``), asks for the close legs
(``pm.roll_send_close``), gives up a roll not yet sent (``pm.roll_abandon``) or records a contract that
expired unrolled (``pm.roll_expired``). Everything after the close legs is driven by the legs' ends inside
the database. Each call is one statement, one transaction, committed on return.
"""

from __future__ import annotations

from datetime import datetime, timezone
from json import dumps
from typing import TYPE_CHECKING, Any, Mapping, Optional

from pm_engine.core.contracts import ContractCalendar
from pm_engine.core.instruments import InstrumentConfig
from pm_engine.core.market_hours import IST
from pm_engine.core.portfolio import Book
from pm_engine.core.rollover import RollPlan, group_plans
from pm_engine.store.executor import Executor

if TYPE_CHECKING:  # pragma: no cover
    from pm_engine.store.gateway import Store


class RollQueries:
    """``store.rolls``: named queries of the roll over the store's executor."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def begin(self, plan: RollPlan, forced: bool, reason: Optional[str] = None) -> dict[str, Any]:
        layers = [layer.as_json() for layer in plan.layers]
        return self.executor.first("roll_begin", plan.instrument, dumps(layers), forced, reason)

    def send_close(self, roll_id: int) -> dict[str, Any]:
        return self.executor.first("roll_send_close", roll_id)

    def abandon(self, roll_id: int, reason: str) -> dict[str, Any]:
        return self.executor.first("roll_abandon", roll_id, reason)

    def expired(self, instrument: str, symbol: str, reason: str) -> dict[str, Any]:
        return self.executor.first("roll_expired", instrument, symbol, reason)

    def active(self) -> list[dict[str, Any]]:
        return self.executor.run("active_rolls")

    def listing(self, instrument: Optional[str] = None, limit: int = 50) -> list[dict[str, Any]]:
        return self.executor.run("list_rolls", instrument, limit)

    def paper_legs(self) -> list[str]:
        """Queued legs a paper fill may fill: those of groups traded on paper only (pm.paper_roll_legs)."""
        return [row["paper_roll_legs"] for row in self.executor.run("paper_roll_legs")]


def committed_book(store: "Store", instruments: Mapping[str, InstrumentConfig]) -> Book:
    """The committed book, loaded in memory (for planning: never saved from here)."""
    portfolio = Book(instruments=dict(instruments), store=None)
    portfolio.load(store.book.load_state())
    return portfolio


def roll_overview(store: "Store", calendar: ContractCalendar, instruments: Mapping[str, InstrumentConfig],
                  mcx_quantity: str = "lots", now: Optional[datetime] = None) -> dict[str, Any]:
    """Every open group: its contract, roll date, days to roll, whether due, the roll in flight; recent rolls.

    The body of ``GET /rollover`` and ``pm-engine rollover --dry-run --json``'s ``groups``."""
    on = (now or datetime.now(timezone.utc)).astimezone(IST).date()
    plans, problems = group_plans(committed_book(store, instruments), calendar, mcx_quantity)
    states = store.rolls
    active = {r["instrument"]: r for r in states.active()}
    groups = []
    for plan in plans:
        view = plan.as_json(on)
        roll = active.get(plan.instrument)
        view["roll_state"] = roll["state"] if roll else "none"
        view["roll_id"] = roll["roll_id"] if roll else None
        groups.append(view)
    return {"groups": groups, "problems": problems, "rolls": states.listing(None, 20)}
