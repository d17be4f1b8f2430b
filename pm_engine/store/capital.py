"""Capital in and out (migration 009): the ledger's named queries."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Optional

from pm_engine.core.capital import InvalidAmountError
from pm_engine.store.executor import Executor

NUMERIC_OUT_OF_RANGE = "22003"


class CapitalQueries:
    """``store.capital``: deposits and withdrawals, the ledger and its totals."""

    def __init__(self, executor: Executor, moved: Callable[[], None]) -> None:
        self.executor = executor
        self._moved = moved  # the book's cached portfolio row is stale after a flow

    def record_capital_flow(self, kind: str, amount: Decimal, note: Optional[str], recorded_by: str) -> dict[str, Any]:
        """Record a deposit or withdrawal, moving closed equity and equity_high with it in one transaction.

        Answers the ledger row (with ``equity_high`` after it). Refusals write nothing and raise
        InvalidAmountError (PM060), WithdrawalRefusedError (PM061 below the margin in use, PM062
        below zero), InvalidNoteError (PM063, a long note) or InvalidArgumentError (an unknown kind,
        no ``recorded_by``).
        Not retried after a lost connection (a flow is not idempotent): DatabaseUnavailableError
        then means it may have committed, and the ledger says whether it did.
        """
        def too_large() -> Exception:  # numeric(15,2): closed equity or equity high past 10^13
            return InvalidAmountError(f"amount {amount} would take the book's equity past 10^13 rupees "
                                      "(numeric(15,2)); nothing recorded", "PM060")
        flow = dict(self.executor.scalar_once(
            "record_capital_flow", kind, amount, note, recorded_by, codes={NUMERIC_OUT_OF_RANGE: too_large},
            lost="; check the ledger (pm-engine capital) before recording the flow again"))
        self._moved()
        return flow

    def capital_ledger(self, limit: Optional[int] = None, offset: int = 0) -> list[dict[str, Any]]:
        """The latest capital flows, newest first; with ``offset``, a page: ``limit`` flows after the newest
        ``offset`` (the caller bounds both)."""
        if offset:
            return self.executor.run("capital_ledger_page", (limit or 0) + offset, offset)
        return self.executor.run("capital_ledger", limit)

    def capital_totals(self, start: Optional[datetime] = None, end: Optional[datetime] = None) -> dict[str, Any]:
        """{"deposits", "withdrawals", "net_flows"} recorded in the range."""
        return dict(self.executor.scalar("capital_totals", start, end))
