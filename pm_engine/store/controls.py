"""The trading controls' named queries: the mode, the breakers, instrument locks, anomalies.

The controls are evaluated inside pm.apply_signal (``db/functions/``); these calls read and change
their settings for the CLI, the web layer and the background jobs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from pm_engine.store.codec import dumps
from pm_engine.store.executor import Executor


class ControlQueries:
    """``store.controls``: pause/resume, breakers, locks and the anomalies they record."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def trading_mode(self) -> dict[str, Any]:
        """The mode every instance obeys: mode, reason, changed_by, changed_at, version."""
        return dict(self.executor.scalar("get_trading_mode"))

    def set_trading_mode(self, mode: str, reason: Optional[str], changed_by: str) -> dict[str, Any]:
        """Pause (``exits_only``, ``halted``) or resume (``active``); InvalidArgumentError names what is wrong."""
        return dict(self.executor.scalar("set_trading_mode", mode, reason, changed_by))

    def trading_mode_history(self, limit: int = 50) -> list[dict[str, Any]]:
        return self.executor.run("trading_mode_history", limit)

    def breakers(self) -> dict[str, Any]:
        return dict(self.executor.scalar("get_breakers"))

    def set_breakers(self, settings: dict[str, Any], updated_by: str) -> dict[str, Any]:
        """Change the settings given (None switches a breaker off); returns all of them."""
        return dict(self.executor.scalar("set_breakers", dumps(settings), updated_by))

    def lock_instrument(self, instrument: str, until: datetime, reason: str, source: str) -> int:
        return int(self.executor.scalar("lock_instrument", instrument, until, reason, source))

    def unlock_instrument(self, instrument: str, released_by: str) -> int:
        return int(self.executor.scalar("unlock_instrument", instrument, released_by))

    def active_locks(self) -> list[dict[str, Any]]:
        return self.executor.run("active_locks")

    def anomalies(self, since: Optional[datetime] = None, limit: Optional[int] = None) -> list[dict[str, Any]]:
        """Anomalies since ``since`` (default 24 h), newest first; only the latest ``limit`` when given."""
        if limit is not None:
            return self.executor.run("anomalies_latest", since, max(0, limit))
        return self.executor.run("anomalies", since)

    def anomaly_counts(self, since: Optional[datetime] = None) -> dict[str, int]:
        return {k: int(v) for k, v in self.executor.scalar("anomaly_counts", since).items()}
