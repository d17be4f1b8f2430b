"""History and statistics (migration 003): the book as of an instant, equity curves, trades, P&L."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from pm_engine.store.codec import position_from_row
from pm_engine.store.executor import Executor


class HistoryQueries:
    """``store.history``: read on request, never cached."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def state_as_of(self, when: datetime) -> dict[str, Any]:
        """The book as committed at or before ``when`` (pm.load_state's shape, positions as records).

        HistoryUnavailableError (PM006) before history began.
        """
        state = self.executor.scalar("state_as_of", when)
        state["positions"] = {row["position_id"]: position_from_row(row) for row in state["positions"]}
        return dict(state)

    def equity_curve(self, start: Optional[datetime] = None, end: Optional[datetime] = None) -> list[dict[str, Any]]:
        """One point per committed portfolio version: recorded_at, closed/open/blended equity, fingerprint."""
        return self.executor.run("equity_curve", start, end)

    def equity_curve_sampled(self, start: Optional[datetime], end: Optional[datetime],
                             buckets: int) -> list[dict[str, Any]]:
        """The equity curve cut to about 2 × ``buckets`` points, each bucket's low and high kept (the dashboard)."""
        return self.executor.run("equity_curve_sampled", start, end, buckets)

    def trades(self, start: Optional[datetime] = None, end: Optional[datetime] = None) -> list[dict[str, Any]]:
        """Closed positions exiting in the range, in exit order (pm.trades)."""
        return self.executor.run("trades", start, end)

    def pnl_by_period(self, period: str, start: Optional[datetime] = None,
                      end: Optional[datetime] = None) -> list[dict[str, Any]]:
        """Realized P&L, trades and closing equity per IST day, week or month."""
        return self.executor.run("pnl_by_period", period, start, end)

    def trade_stats(self, start: Optional[datetime] = None, end: Optional[datetime] = None) -> dict[str, Any]:
        """pm.trade_stats: the statistics of docs/domain.md#history-and-statistics (Decimal; None if undefined)."""
        return dict(self.executor.scalar("trade_stats", start, end))
