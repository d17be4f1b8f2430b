"""Who may read and steer (docs/domain.md#in-front-of-tradingview): the read token, sessions, CSRF, brute force.

The webhook secret travels inside alert bodies that anyone with access to the TradingView account
can read, so it authorises alerts only. Every other route but ``/health`` and ``/ready`` needs the
read/operator token: ``Authorization: Bearer <token>``, or the session cookie that ``POST /login``
sets (HttpOnly, SameSite=Strict, Secure over HTTPS). A session is a random value whose MAC under a
key derived from the token is a row of ``pm.sessions`` (``SessionStore``): logout revokes it for every
instance, it expires, and changing the token ends every session. With no token configured those
routes answer loopback clients only, and a request carrying forwarding headers is never loopback (it
came through a proxy). Tokens are compared in constant time and never logged. Proof of intent for a
change (``may_change``): a session shows its CSRF token, a loopback caller sends JSON (which no other
site's form can); the cross-site checks for every principal are in ``web/guard.py``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional, Protocol

from starlette.requests import Request

from pm_engine.core.intent import is_json

SESSION_COOKIE = "pm_session"
CSRF_HEADER = "x-csrf-token"
LOOPBACK = frozenset({"127.0.0.1", "::1"})
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def same(given: Optional[str], expected: str) -> bool:
    """Constant-time comparison of a presented secret with the expected one."""
    return hmac.compare_digest((given or "").encode(), expected.encode())


class SessionStore(Protocol):
    """Where sessions live: ``pm.sessions`` through ``store.audit``, or ``MemorySessions``."""

    def create_session(self, digest: str, expires_at: datetime, source: str) -> None: ...

    def session_active(self, digest: str) -> bool: ...

    def revoke_session(self, digest: str) -> bool: ...


@dataclass
class MemorySessions:
    """Sessions of an engine without a database (one process: nothing to share)."""

    _expiry: dict[str, datetime] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def create_session(self, digest: str, expires_at: datetime, source: str) -> None:
        with self._lock:
            now = datetime.now(timezone.utc)
            self._expiry = {d: e for d, e in self._expiry.items() if e > now}
            self._expiry[digest] = expires_at

    def session_active(self, digest: str) -> bool:
        expires = self._expiry.get(digest)
        return expires is not None and expires > datetime.now(timezone.utc)

    def revoke_session(self, digest: str) -> bool:
        with self._lock:
            return self._expiry.pop(digest, None) is not None


@dataclass
class Access:
    """The read/operator token and the sessions opened with it."""

    read_token: Optional[str]
    session_s: float = 12 * 3600
    clock: Callable[[], float] = time.time
    sessions: SessionStore = field(default_factory=MemorySessions)

    def _key(self) -> bytes:
        assert self.read_token is not None
        return hashlib.sha256(b"pm-engine session key:" + self.read_token.encode()).digest()

    def _mac(self, text: str) -> str:
        return hmac.new(self._key(), text.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: Optional[str]) -> bool:
        return self.read_token is not None and same(given, self.read_token)

    def _digest(self, session: str) -> str:
        return self._mac("session:" + session)

    def new_session(self, source: str = "") -> str:
        """A cookie value: 256 random bits, recorded (as its MAC) with its expiry."""
        value = secrets.token_urlsafe(32)
        expires = datetime.fromtimestamp(self.clock() + self.session_s, timezone.utc)
        self.sessions.create_session(self._digest(value), expires, source)
        return value

    def session_ok(self, value: Optional[str]) -> bool:
        if self.read_token is None or not value or len(value) > 100:
            return False
        return self.sessions.session_active(self._digest(value))

    def end_session(self, value: Optional[str]) -> bool:
        """Logout: the session is revoked for every instance; True when it was active."""
        if self.read_token is None or not value or len(value) > 100:
            return False
        return self.sessions.revoke_session(self._digest(value))

    def csrf_token(self, session: str) -> str:
        """The token a form or script sends back with a POST made on the strength of a session cookie."""
        return self._mac("csrf:" + session)

    def principal(self, request: Request) -> Optional[str]:
        """How the request is authorised to read: 'token', 'session' or 'loopback'; None when it is not.

        (A Bearer header is judged by ``web/guard.py``'s ``ReadAccess`` first, which counts bad ones.)
        """
        if self.read_token is None:
            return "loopback" if is_loopback(request) else None
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer " and self.token_ok(header[7:].strip()):
            return "token"
        if self.session_ok(request.cookies.get(SESSION_COOKIE)):
            return "session"
        return None

    def may_change(self, request: Request, principal: str, form_csrf: Optional[str] = None) -> Optional[str]:
        """A POST that changes something: None when it shows intent, else what is missing.

        A token's bearer may (no page can set the header); a session must show its CSRF token; a
        loopback caller (no token configured) must send JSON, which a form on another site cannot."""
        if principal == "session":
            session = request.cookies.get(SESSION_COOKIE, "")
            if not same(request.headers.get(CSRF_HEADER) or form_csrf, self.csrf_token(session)):
                return "missing or bad CSRF token (X-CSRF-Token)"
        elif principal == "loopback" and not is_json(request.headers.get("content-type")):
            return "a change from this machine must be sent as JSON (Content-Type: application/json)"
        return None


def is_loopback(request: Request) -> bool:
    """From this machine, and not relayed by a proxy on it."""
    if request.client is None or request.client.host not in LOOPBACK:
        return False
    return not any(name in request.headers for name in FORWARDING_HEADERS)


def client_address(request: Request) -> str:
    """The sender's address (the real one behind a proxy when ``--proxy-headers`` trusts it)."""
    return request.client.host if request.client else "unknown"


@dataclass
class FailureWindows:
    """Bad secrets per source address in fixed one-minute windows.

    The first ``limit`` failures in a window are answered 401, every later one 429 until the window
    passes. A request with the right secret is always served: TradingView's four addresses are
    shared by all its users, so a stale alert of someone else must never lock our own alerts out
    (and TradingView does not resend after a 4xx).
    """

    limit: int = 10
    window_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _windows: dict[str, tuple[float, int]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def blocked(self, address: str) -> Optional[int]:
        """Retry-After seconds while ``address`` has used up its failures in this window, else None.

        For the read token: past the limit an address is refused whatever it sends, so a 429 says
        nothing about whether a guess was right."""
        now = self.clock()
        start, count = self._windows.get(address, (now, 0))
        if count >= self.limit and now - start < self.window_s:
            return max(1, math.ceil(start + self.window_s - now))
        return None

    def fail(self, address: str) -> tuple[Optional[int], bool]:
        """Count one failure: (Retry-After seconds when over the limit, else None; whether it opened a window)."""
        now = self.clock()
        with self._lock:
            start, count = self._windows.get(address, (now, 0))
            opened = count == 0 or now - start >= self.window_s
            if opened:
                start, count = now, 0
                if len(self._windows) > 10_000:  # forget finished windows so a spray of addresses cannot grow this
                    self._windows = {a: w for a, w in self._windows.items() if now - w[0] < self.window_s}
            count += 1
            self._windows[address] = (start, count)
        if count > self.limit:
            return max(1, math.ceil(start + self.window_s - now)), opened
        return None, opened
