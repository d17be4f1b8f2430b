"""The refusal audit's writer: refused webhook requests go to ``pm.request_log`` off the request path.

A refusal is answered at once; its row is put on a bounded queue and a thread writes what has
gathered in one round trip (``pm.log_refusals``) every ``FLUSH_S``. So a refusal is never slower
for being audited, and a flood cannot fill the disk: each source address gets at most
``PER_SOURCE_PER_S`` rows a second, the whole process at most ``ROWS_PER_S`` rows and
``BYTES_PER_S`` bytes a second (however many addresses a flood rotates through), and every instance
together at most the day's budget of ``pm.audit_budget`` (the database counts the rest). Whatever
is over a cap, or finds the queue full, or meets a database outage, is counted in ``dropped``
instead of written. Secrets are masked after JSON decoding (an escaped key or value is still a
secret), in the body excerpt and the User-Agent alike.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any, Optional

from pm_engine.core.errors import PmError
from pm_engine.store.codec import dumps
from pm_engine.store.executor import Executor

log = logging.getLogger(__name__)

PER_SOURCE_PER_S = 50
ROWS_PER_S = 100  # every source together, per process
BYTES_PER_S = 256 * 1024
ROW_OVERHEAD = 200  # bytes a row costs besides its text (pm.refusal_bytes counts the same way)
QUEUE_MAX = 10_000
BATCH_MAX = 500
FLUSH_S = 0.2


class AuditQueries:
    """``store.audit``: the refusal log (pm.request_log), its daily budget, and the web layer's sessions."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def log_refusals(self, rows: list[dict[str, Any]]) -> int:
        """Append refused requests in one round trip (the audit writer's batch)."""
        return int(self.executor.scalar("log_refusals", dumps(rows)))

    def refusals(self, since: Optional[datetime] = None, limit: int = 1000) -> list[dict[str, Any]]:
        return self.executor.run("refusals", since, limit)

    def cleanup_request_log(self, retention: str = "30 days") -> int:
        return int(self.executor.scalar("cleanup_request_log", retention))

    def audit_usage(self, days: int = 7) -> list[dict[str, Any]]:
        """Per UTC day: refusal rows and bytes written, rows counted instead, and the budget (pm.audit_budget)."""
        return self.executor.run("audit_usage", days)

    # sessions: the web layer's SessionStore (web/access.py)
    def create_session(self, digest: str, expires_at: datetime, source: str) -> None:
        self.executor.scalar("create_session", digest, expires_at, source)

    def session_active(self, digest: str) -> bool:
        return bool(self.executor.scalar("session_active", digest))

    def revoke_session(self, digest: str) -> bool:
        return bool(self.executor.scalar("revoke_session", digest))


class RefusalAudit:
    """Admits at most ``per_source_per_s`` rows per source and second; writes them in batches on a thread."""

    def __init__(self, audit: AuditQueries, instance_id: str, per_source_per_s: int = PER_SOURCE_PER_S,
                 queue_max: int = QUEUE_MAX, rows_per_s: int = ROWS_PER_S, bytes_per_s: int = BYTES_PER_S) -> None:
        self.audit, self.instance_id, self.cap = audit, instance_id, per_source_per_s
        self.rows_per_s, self.bytes_per_s = rows_per_s, bytes_per_s
        self._rows_now = 0
        self._bytes_now = 0
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
        size = ROW_OVERHEAD + len(source) + sum(len(v) for v in row.values() if isinstance(v, str))
        with self._lock:
            if now != self._second:
                self._second, self._counts, self._rows_now, self._bytes_now = now, {}, 0, 0
            if (self._counts.get(source, 0) >= self.cap or self._rows_now >= self.rows_per_s
                    or self._bytes_now + size > self.bytes_per_s):
                self.dropped += 1
                return False
            self._counts[source] = self._counts.get(source, 0) + 1
            self._rows_now += 1
            self._bytes_now += size
        # PostgreSQL text cannot hold NUL, and one NUL would fail the whole batch: show it as U+FFFD; nor can a
        # lone surrogate be sent as UTF-8
        row = {k: _storable(v) if isinstance(v, str) else v for k, v in row.items()}
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
            written = self.audit.log_refusals(batch)
            with self._lock:
                self.written += written
                self.dropped += len(batch) - written  # past the day's budget: counted by the database too
        except PmError as exc:  # an outage: these rows are lost, counted, and said once per batch
            with self._lock:
                self.dropped += len(batch)
            log.warning("refusal audit: %d row(s) not written (%s)", len(batch), exc)
        finally:
            self._done(len(batch))


SECRET_FIELDS = frozenset({"secret", "token", "read_token", "password", "api_key"})
_FIELD = re.compile(r'("(?:secret|token|read_token|password|api_key)"\s*:\s*")((?:[^"\\]|\\.)*)(")', re.IGNORECASE)
_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def _storable(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8") if not text.isascii() else text


def mask(text: Optional[str], secrets: tuple[Optional[str], ...]) -> Optional[str]:
    """``text`` with every configured secret replaced by ``***`` (the User-Agent, a decoded JSON string)."""
    if text is None:
        return None
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _masked(value: Any, secrets: tuple[Optional[str], ...]) -> Any:
    if isinstance(value, dict):
        return {k: "***" if str(k).lower() in SECRET_FIELDS else _masked(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, secrets) for v in value]
    if isinstance(value, str):
        return mask(value, secrets)
    return value


def _unescaped(match: "re.Match[str]") -> str:
    char = chr(int(match.group(1), 16))
    return match.group(0) if char in '"\\' or char < " " else char


def excerpt(body: bytes, secrets: tuple[Optional[str], ...], limit: int = 2048) -> str:
    """The first ``limit`` bytes of a body as text, every secret value replaced by ``***``.

    A JSON body is masked after decoding — the value of any ``secret`` / ``token`` field however its
    key is spelled (``"\\u0073ecret"`` is ``secret``), and every configured secret wherever it
    appears, escaped or not — and shown re-encoded. Any other body has its ``\\u`` escapes decoded
    first, then the same fields and secrets masked in the text. Then it is cut.
    """
    text = body.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, (dict, list)):
        text = json.dumps(_masked(data, secrets), ensure_ascii=False)
    else:
        text = _FIELD.sub(r"\1***\3", _ESCAPE.sub(_unescaped, text))
    text = mask(text, secrets) or ""
    return text.encode("utf-8", "replace")[:limit].decode("utf-8", errors="ignore")
