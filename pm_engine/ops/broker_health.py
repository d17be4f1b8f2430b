"""What the broker's answers say of the broker itself: ok, session expired, unreachable, slow, or an error.

The broker sender (``pm_engine.ops.sender``) keeps one ``BrokerHealth`` per process, set by every call
(a send, a follow of the books, a reconciliation), shown by ``GET /orders`` and ``/metrics``, and
reported to the database when it changes (one notification per episode, whichever instance sees it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Optional

from pm_engine.adapters.openalgo import OpenAlgoError

SLOW = "broker slow / not answering"


@dataclass
class BrokerHealth:
    """What the last call to the broker said: ok | session_expired | unreachable | slow | error, and since when.

    ``waiting`` (the client's ``oldest_call_s``) says how long a call now in flight has waited: past
    ``slow_after_s`` the view is "slow" whatever the last answer was, so a gateway that stalls is told
    within one deadline, not once its call ends."""

    state: str = "unknown"
    since: Optional[datetime] = None
    message: str = ""
    seen: Optional[datetime] = None  # the last answer (or failure) this state comes from
    waiting: Optional[Callable[[], float]] = None
    slow_after_s: float = 3.0

    def set(self, state: str, message: str = "") -> None:
        now = datetime.now(timezone.utc)
        if state != self.state:
            self.state, self.since = state, now
        self.message, self.seen = message, now

    def failed(self, exc: OpenAlgoError) -> None:
        """A call that raised: what its failure says of the broker."""
        self.set("session_expired" if exc.kind == "session" else "slow" if SLOW in str(exc) else
                 "unreachable" if exc.kind in ("unreachable", "lost") else "error", str(exc))

    def view(self) -> dict[str, Any]:
        waited = self.waiting() if self.waiting is not None else 0.0
        if waited >= self.slow_after_s:
            begun = datetime.now(timezone.utc) - timedelta(seconds=waited)
            return {"state": "slow", "text": SLOW, "since": begun.isoformat(), "seconds_since": round(waited, 1),
                    "message": f"a call has waited {waited:.1f} s for the broker's answer"}
        seconds = (datetime.now(timezone.utc) - self.since).total_seconds() if self.since else None
        texts = {"ok": "broker connected", "session_expired": "broker session expired",
                 "unreachable": "broker unreachable", "slow": SLOW, "error": "broker error"}
        text = texts.get(self.state, "broker not yet contacted")
        return {"state": self.state, "text": text, "since": self.since.isoformat() if self.since else None,
                "seconds_since": round(seconds, 1) if seconds is not None else None, "message": self.message}
