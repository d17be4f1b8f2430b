"""A blocking rate limiter: over the budget a caller waits its turn; a burst is queued, never failed.

OpenAlgo counts calls per client address in a one-second window (10 orders/s by default) and
answers 429 past it (docs/domain.md#orders-through-openalgo). The window here slides and is a little longer than a
second
(``margin``): a request is stamped when it leaves and counted when it arrives, and network jitter
could otherwise squeeze eleven arrivals into one of the gateway's seconds.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable


class RateLimiter:
    """At most ``rate`` acquisitions in any ``per + margin`` seconds (thread-safe; waiters go one at a time)."""

    def __init__(self, rate: int = 10, per: float = 1.0, margin: float = 0.05,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        if rate < 1 or per <= 0 or margin < 0:
            raise ValueError("rate must be >= 1, per > 0, margin >= 0")
        self.rate = rate
        self.window = per + margin
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()  # held while waiting: the next caller queues behind the one waiting

    def acquire(self) -> float:
        """Wait until one more call fits in the window, count it, and return the seconds waited."""
        with self._lock:
            start = now = self._clock()
            while True:
                while self._sent and now - self._sent[0] >= self.window:
                    self._sent.popleft()
                if len(self._sent) < self.rate:
                    break
                self._sleep(max(0.0, self._sent[0] + self.window - now))
                now = self._clock()
                self._sent.popleft()  # slept until the oldest call left the window (no float comparison to trust)
            self._sent.append(now)
            return now - start
