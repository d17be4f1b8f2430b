"""The refusal audit's writer: refused webhook requests go to ``pm.request_log`` off the request path.

A refusal is answered at once; its row is put on a bounded queue and a thread writes what has
gathered in one round trip (``pm.log_refusals``) every ``FLUSH_S``. So a refusal is never slower
for being audited, and a flood cannot fill the disk: each source address gets at most
``PER_SOURCE_PER_S`` rows a second, and whatever is over that cap, or finds the queue full, or
meets a database outage, is counted in ``dropped`` instead of written.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timezone
from typing import Any, Optional

from pm_engine.core.errors import PmError
from pm_engine.store.manager import DatabaseStateManager

log = logging.getLogger(__name__)

PER_SOURCE_PER_S = 50
QUEUE_MAX = 10_000
BATCH_MAX = 500
FLUSH_S = 0.2


class RefusalAudit:
    """Admits at most ``per_source_per_s`` rows per source and second; writes them in batches on a thread."""

    def __init__(self, db: DatabaseStateManager, instance_id: str, per_source_per_s: int = PER_SOURCE_PER_S,
                 queue_max: int = QUEUE_MAX) -> None:
        self.db, self.instance_id, self.cap = db, instance_id, per_source_per_s
        self.written = 0
        self.dropped = 0
        self._queue: "queue.Queue[dict[str, Any]]" = queue.Queue(queue_max)
        self._second = 0
        self._counts: dict[str, int] = {}  # rows admitted per source in the current second
        self._lock = threading.Lock()
        self._idle = threading.Condition()
        self._busy = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pm-audit", daemon=True)
        self._thread.start()

    def submit(self, source: str, row: dict[str, Any]) -> bool:
        """Queue one refused request's row; False (and counted as dropped) over the cap or with the queue full."""
        now = int(time.monotonic())
        with self._lock:
            if now != self._second:
                self._second, self._counts = now, {}
            if self._counts.get(source, 0) >= self.cap:
                self.dropped += 1
                return False
            self._counts[source] = self._counts.get(source, 0) + 1
        # PostgreSQL text cannot hold NUL, and one NUL would fail the whole batch: show it as U+FFFD
        row = {k: v.replace("\x00", "\ufffd") if isinstance(v, str) else v for k, v in row.items()}
        row.update(source=source, instance=self.instance_id,
                   received_at=row.get("received_at") or datetime.now(timezone.utc).isoformat())
        try:
            with self._idle:
                self._busy += 1
            self._queue.put_nowait(row)
        except queue.Full:
            self._done(0)
            with self._lock:
                self.dropped += 1
            return False
        return True

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def counters(self) -> dict[str, int]:
        return {"written": self.written, "dropped": self.dropped, "queued": self.queued}

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every admitted row is written (or dropped); True if that happened in time."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _done(self, count: int) -> None:
        with self._idle:
            self._busy -= count or 1
            self._idle.notify_all()

    def _loop(self) -> None:
        while not self._stop.is_set() or not self._queue.empty():
            batch: list[dict[str, Any]] = []
            try:
                batch.append(self._queue.get(timeout=FLUSH_S))
            except queue.Empty:
                continue
            time.sleep(FLUSH_S if not self._stop.is_set() else 0)  # let the rest of a burst join this batch
            while len(batch) < BATCH_MAX:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(batch)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        try:
            self.written += self.db.log_refusals(batch)
        except PmError as exc:  # an outage: these rows are lost, counted, and said once per batch
            with self._lock:
                self.dropped += len(batch)
            log.warning("refusal audit: %d row(s) not written (%s)", len(batch), exc)
        finally:
            self._done(len(batch))


def excerpt(body: bytes, secrets: tuple[Optional[str], ...], limit: int = 2048) -> str:
    """The first ``limit`` bytes of a body as text, every secret value replaced by ``***``.

    Masks the configured secrets wherever they appear and the value of any ``"secret"`` or
    ``"token"`` JSON field (a wrong guess may be a near miss of the real one), before cutting.
    """
    import re

    text = body.decode("utf-8", errors="replace")
    text = re.sub(r'("(?:secret|token|read_token)"\s*:\s*")((?:[^"\\]|\\.)*)(")', r"\1***\3", text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text.encode()[:limit].decode("utf-8", errors="ignore")
