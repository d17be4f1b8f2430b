"""The Apprise adapter: one ``apprise.Apprise`` per notification URL, sends that never leak the URL.

A URL carries its service's credentials (a bot token, a password), so nothing here ever prints
one: a target is shown as ``scheme#<8 hex of its SHA-256>`` (``label``), the database knows it by
the full SHA-256 (``key``), and Apprise's own log lines — captured per send, never passed on to
our logs or stderr — are scrubbed of every piece of every configured URL before they become an
error text.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Optional

import apprise

from pm_engine.core.errors import ConfigError
from pm_engine.core.replay.notification_kinds import KINDS
from pm_engine.notify.settings import NotifySettings

log = logging.getLogger(__name__)
NOTIFY_TYPES = {"info": apprise.NotifyType.INFO, "warning": apprise.NotifyType.WARNING,
                "critical": apprise.NotifyType.FAILURE}


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].strip().lower()[:32] or "?"


def target_key(url: str) -> str:
    """How the database knows a URL: its SHA-256, never the URL (credentials included) itself."""
    return hashlib.sha256(url.encode()).hexdigest()


@dataclass(frozen=True)
class Target:
    """One notification URL: the URL (hidden from ``repr``), its key and its scheme."""

    url: str = field(repr=False)
    key: str
    scheme: str

    @property
    def label(self) -> str:
        return f"{self.scheme}#{self.key[:8]}"


@dataclass(frozen=True)
class SendResult:
    ok: bool
    error: Optional[str] = None


class _Captured(logging.Handler):
    """Apprise's log records while a send runs (under the send lock), kept here instead of printed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception:  # pragma: no cover - a malformed record is dropped, never raised into a send
            pass


_APPRISE_LOG = logging.getLogger("apprise")
_CAPTURED = _Captured()
_APPRISE_LOG.addHandler(_CAPTURED)
_APPRISE_LOG.propagate = False  # never to our handlers nor to Python's last-resort stderr handler
_APPRISE_LOG.setLevel(logging.WARNING)


def secret_pieces(url: str) -> set[str]:
    """Every part of a URL that might be a credential: the whole URL and each piece between separators."""
    rest = url.split("://", 1)[-1]
    pieces = {url, rest, *re.split(r"[/:@?&=,+#;]+", rest)}
    return {p for p in pieces if len(p) >= 4}


def redact(text: str, urls: tuple[str, ...]) -> str:
    """``text`` with every piece of every URL replaced by ``***`` (longest first)."""
    pieces = sorted({p for url in urls for p in secret_pieces(url)}, key=len, reverse=True)
    for piece in pieces:
        text = text.replace(piece, "***")
    return text


class Notifier:
    """Sends a title and body to one URL or all of them; ``direct`` for what the database cannot record."""

    def __init__(self, settings: NotifySettings) -> None:
        self.settings = settings
        self.targets: list[Target] = []
        self._senders: dict[str, Any] = {}
        self._lock = threading.Lock()
        asset = apprise.AppriseAsset(app_id="pm-engine", app_desc="pm-engine notifications",
                                     storage_mode="memory")
        for index, url in enumerate(settings.urls, 1):
            sender = apprise.Apprise(asset=asset)
            if not sender.add(url):
                raise ConfigError(f"notify.urls: entry {index} ({scheme_of(url)}://…) is not a notification URL "
                                  "Apprise understands")
            target = Target(url, target_key(url), scheme_of(url))
            self.targets.append(target)
            self._senders[target.key] = sender

    @property
    def events(self) -> frozenset[str]:
        return self.settings.events

    def wants(self, kind: str) -> bool:
        return kind in self.settings.events

    def send(self, target: Target, title: str, body: str, level: str = "info") -> SendResult:
        """One message to one URL, synchronously; the error (scrubbed of the URLs) when it failed."""
        with self._lock:
            _CAPTURED.lines = []
            try:
                ok = bool(self._senders[target.key].notify(title=title, body=body,
                                                           notify_type=NOTIFY_TYPES.get(level, "info")))
            except Exception as exc:  # a plugin bug must not kill the sender; its text is scrubbed like the rest
                _CAPTURED.lines.append(f"{type(exc).__name__}: {exc}")
                ok = False
            lines, _CAPTURED.lines = _CAPTURED.lines, []
        if ok:
            return SendResult(True)
        detail = redact("; ".join(lines[-3:]) or "the service did not accept the message", self.settings.urls)
        return SendResult(False, f"{target.scheme}: {detail}"[:1000])

    def send_all(self, title: str, body: str, level: str = "info") -> list[tuple[Target, SendResult]]:
        return [(target, self.send(target, title, body, level)) for target in self.targets]

    def direct(self, kind: str, title: str, body: str, wait_s: Optional[float] = None) -> Optional[threading.Thread]:
        """Send an event the database cannot record (its own outage, a process start or stop) to every URL.

        On a thread of its own, so the caller (the job thread, start-up, shutdown) is never held up by
        a slow service; ``wait_s`` waits for it that long (shutdown: so the message leaves before exit).
        One attempt per URL, no retry: the caller sends once per episode. None when the kind is not chosen.
        """
        if not self.targets or not self.wants(kind):
            return None
        level = KINDS[kind].level

        def run() -> None:
            for target, result in self.send_all(title, body, level):
                if not result.ok:
                    log.warning("notification (%s) to %s failed: %s", kind, target.label, result.error)
        thread = threading.Thread(target=run, name=f"pm-notify-{kind}", daemon=True)
        thread.start()
        if wait_s:
            thread.join(wait_s)
        return thread
