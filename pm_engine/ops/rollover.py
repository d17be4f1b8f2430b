"""Rolling positions to the next contract: the leader's check and ``pm-engine rollover``.

Python plans each group's roll from the book and the contract calendar (``core/rollover.py``) and starts
it in the database: ``pm.roll_begin`` (none → pending) then ``pm.roll_send_close`` (pending → closing, the
close legs queued). From there the broker sender sends the legs like any order and the database moves the
roll as the legs end (db/functions/79_roll_machine.sql). So this module only decides *when*: a group whose roll date has
come (or every selected group with ``force``), no roll of it in flight, its exchange open. A roll left
``pending`` by a crash is sent on at the next check; one in ``closing`` or ``opening`` needs nothing from
here. A group past its old contract's last trading day is not rolled: ``pm.roll_expired`` tells the trader
once. With the paper broker the legs fill inside the database (``fill_paper``), at their reference prices.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, Optional

from pm_engine.core.contracts import ContractCalendar
from pm_engine.core.instruments import InstrumentConfig
from pm_engine.core.market_hours import IST, MarketHours
from pm_engine.core.portfolio import Book
from pm_engine.core.rollover import RollPlan, RollPlanError, group_plans
from pm_engine.store.errors import AlreadyRollingError, RollOrdersPendingError
from pm_engine.store.gateway import Store
from pm_engine.store.rolls import committed_book, roll_overview

log = logging.getLogger(__name__)


@dataclass
class CheckResult:
    """What one check did: rolls started or sent on, groups skipped and why, plans that failed."""

    started: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"started": self.started, "skipped": self.skipped, "problems": self.problems}


class Roller:
    """Plans and starts rolls for one store; the database carries them out."""

    def __init__(self, store: Store, calendar: ContractCalendar,
                 instruments: Mapping[str, InstrumentConfig], hours: MarketHours = MarketHours(always=True),
                 mcx_quantity: str = "lots", clock: Optional[Callable[[], datetime]] = None) -> None:
        self.store = store
        self.clock = clock or (lambda: datetime.now(timezone.utc))  # injected by replays and tests
        self.calendar = calendar
        self.instruments = instruments
        self.hours = hours
        self.mcx_quantity = mcx_quantity
        self.states = store.rolls

    def book(self) -> Book:
        return committed_book(self.store, self.instruments)

    def overview(self, now: Optional[datetime] = None) -> dict[str, Any]:
        return roll_overview(self.store, self.calendar, self.instruments, self.mcx_quantity, now)

    def check(self, now: Optional[datetime] = None, force: bool = False,
              instruments: Optional[Iterable[str]] = None, dry_run: bool = False,
              respect_hours: bool = True) -> CheckResult:
        """Start the rolls that are due (all selected ones with ``force``); send on rolls left pending."""
        now = now or self.clock()
        on = now.astimezone(IST).date()
        chosen = set(instruments) if instruments is not None else None
        result = CheckResult()
        active = {r["instrument"]: r for r in self.states.active()}
        for instrument, roll in active.items():
            if roll["state"] == "pending" and (chosen is None or instrument in chosen) and not dry_run:
                result.started.append(self._send_close(roll))
        plans, problems = group_plans(self.book(), self.calendar, self.mcx_quantity)
        result.problems.extend(problems)
        for plan in plans:
            if chosen is not None and plan.instrument not in chosen:
                continue
            why = self._why_not(plan, now, on, force, active, respect_hours)
            if why is not None:
                result.skipped.append({"instrument": plan.instrument, "from_symbol": plan.from_symbol, "why": why,
                                       "plan": plan.as_json(on)})
                if why.startswith("expired") and not dry_run:
                    self.states.expired(plan.instrument, plan.from_symbol, why)
                    log.error("roll: %s", why)
                continue
            if dry_run:
                result.started.append({"instrument": plan.instrument, "dry_run": True, "plan": plan.as_json(on)})
                continue
            try:
                roll = self.states.begin(plan, forced=force and not plan.due(on),
                                         reason="forced before the roll date" if force and not plan.due(on) else None)
            except AlreadyRollingError:
                continue  # another instance started it a moment ago
            except RollOrdersPendingError as pending:  # the book is not yet what the broker holds: next check
                result.skipped.append({"instrument": plan.instrument, "from_symbol": plan.from_symbol,
                                       "why": f"orders in flight: {pending}", "plan": plan.as_json(on)})
                continue
            result.started.append(self._send_close(roll))
        return result

    def _why_not(self, plan: RollPlan, now: datetime, on: Any, force: bool, active: Mapping[str, Any],
                 respect_hours: bool) -> Optional[str]:
        if plan.instrument in active:
            return f"rolling already (roll {active[plan.instrument]['roll_id']}, {active[plan.instrument]['state']})"
        if plan.expired(on):
            return (f"expired unrolled: {plan.instrument} still holds {plan.from_symbol}, whose last trading day "
                    f"{plan.expiry.isoformat()} has passed; close or roll it by hand")
        if not (force or plan.due(on)):
            return f"not due: rolls on {plan.roll_date.isoformat()}"
        exchange = plan.layers[0].exchange if plan.layers else "NFO"
        if respect_hours and not self.hours.is_open(exchange, now):
            return f"{exchange} is closed"
        return None

    def _send_close(self, roll: Mapping[str, Any]) -> dict[str, Any]:
        sent = self.states.send_close(int(roll["roll_id"]))
        log.info("roll %s of %s: closing %s (to %s)", sent["roll_id"], sent["instrument"], sent["from_symbol"],
                 sent["to_symbol"])
        return {"roll_id": sent["roll_id"], "instrument": sent["instrument"], "state": sent["state"],
                "from_symbol": sent["from_symbol"], "to_symbol": sent["to_symbol"]}

    def fill_paper(self, rounds: int = 4) -> int:
        """The paper broker's part: fill the queued legs of rolls in flight (each round the next stage's legs).

        Only legs of groups traded on paper (``pm.paper_roll_legs``): the caller's own broker setting does not
        decide, so `pm-engine rollover` in a shell without PM_BROKER never fills a broker-backed roll in the book."""
        filled = 0
        for _ in range(rounds):
            legs = self.states.paper_legs()
            if not legs:
                break
            filled += len(self.store.orders.fill_paper_orders(legs))
        return filled


__all__ = ["CheckResult", "Roller", "RollPlanError"]
