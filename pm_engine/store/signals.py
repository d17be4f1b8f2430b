"""The signal log's named queries: duplicates, the log itself, outcome counts, retention."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from pm_engine.core.models import Signal
from pm_engine.store.codec import dumps
from pm_engine.store.executor import Executor


class SignalQueries:
    """``store.signals``: what pm.signal_log holds (the commit itself is ``store.book.commit``)."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def check_duplicate_signal(self, fingerprint: str) -> bool:
        return bool(self.executor.scalar("is_duplicate_signal", fingerprint))

    def log_signal(self, signal: Signal, status: str, reason: Optional[str] = None,
                   instance_id: Optional[str] = None) -> bool:
        """Record a signal with its outcome; False (and nothing changed) when the fingerprint was known."""
        return bool(self.executor.scalar(
            "log_signal", signal.fingerprint, signal.instrument, signal.type.value, signal.position, signal.timestamp,
            status, reason, dumps(signal.payload), instance_id))

    def recent_signals(self, limit: int = 50, since: Optional[datetime] = None) -> list[dict[str, Any]]:
        """The signal log, newest first; each ``processed_at`` is that signal's instant (``--as-of`` it)."""
        return self.executor.run("recent_signals", limit, since)

    def signal_outcomes(self) -> dict[str, int]:
        return {row["processing_status"]: int(row["count"]) for row in self.executor.run("signal_outcomes")}

    def signal_outcomes_between(self, start: datetime, end: datetime) -> dict[str, int]:
        return {row["processing_status"]: int(row["count"])
                for row in self.executor.run("signal_outcomes_between", start, end)}

    def cleanup_signal_log(self, retention: str = "7 days") -> int:
        return int(self.executor.scalar("cleanup_signal_log", retention))
