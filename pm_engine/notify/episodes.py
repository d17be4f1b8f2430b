"""Failed deliveries logged per episode, not per attempt (issue 28: ~20 lines a minute per URL).

A service that is down fails every retry of every message; the log says so once when a URL starts
failing, then at most once an hour while it keeps failing (how long, how many failures), and once
when a message gets through again. Targets are named by their label (``scheme#<8 hex>``): a URL
carries its service's credentials and is never logged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable, Optional

REMINDER_S = 3600.0


@dataclass
class _Episode:
    since: float
    last_logged: float
    failures: int = 1


class FailureEpisodes:
    """Per target label: the failing episode in progress, and when it was last logged."""

    def __init__(self, log: logging.Logger, reminder_s: float = REMINDER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.log, self.reminder_s, self.clock = log, reminder_s, clock
        self._open: dict[str, _Episode] = {}

    def failed(self, label: str, error: Optional[str]) -> None:
        now = self.clock()
        episode = self._open.get(label)
        if episode is None:
            self._open[label] = _Episode(now, now)
            self.log.warning("notification to %s failed (will retry; logged again hourly while it fails): %s",
                             label, error)
            return
        episode.failures += 1
        if now - episode.last_logged >= self.reminder_s:
            episode.last_logged = now
            self.log.warning("notification to %s still failing after %.0f min (%d failed attempts): %s", label,
                             (now - episode.since) / 60, episode.failures, error)

    def delivered(self, label: str) -> None:
        episode = self._open.pop(label, None)
        if episode is not None:
            self.log.warning("notification to %s delivered again after %.0f min (%d failed attempts)", label,
                             (self.clock() - episode.since) / 60, episode.failures)

    def failing(self) -> list[str]:
        return sorted(self._open)
