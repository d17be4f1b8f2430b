"""How ``live`` serves the app with uvicorn: timeouts and caps so idle or slow clients hold nothing for long.

uvicorn times out an idle keep-alive connection but not a request head that never completes: 200
sockets sending a header byte now and then were held for a minute. ``GuardedH11Protocol`` gives
every request head ``HEADER_TIMEOUT_S`` from its first byte (from the connection's start for the
first request) and then closes the socket; a body gets ``web/guard.py``'s ``BODY_TIMEOUT_S``.
``UVICORN_LIMITS`` are the other settings (docs/deployment.md, "What `live` holds and for how long").
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_S = 10.0
UVICORN_LIMITS: dict[str, Any] = {
    "timeout_keep_alive": 5,  # an idle keep-alive connection is closed after 5 s
    "h11_max_incomplete_event_size": 16 * 1024,  # a request head larger than 16 KiB is refused (400)
    "limit_concurrency": 500,  # connections and tasks together; past it new requests get 503 at once
    "backlog": 512,
}


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head."""

    header_timeout_s = HEADER_TIMEOUT_S

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_deadline: Optional[asyncio.TimerHandle] = self.loop.call_later(
            self.header_timeout_s, self._head_too_slow)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        waiting = self.conn.their_state is h11.IDLE and not self.transport.is_closing()  # no complete head yet
        if waiting and self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.header_timeout_s, self._head_too_slow)
        elif not waiting and self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None
        super().connection_lost(exc)

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
