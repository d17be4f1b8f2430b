"""Who may read and steer (DOMAIN.md section 13): the read/operator token, login sessions, CSRF, brute force.

The webhook secret travels inside alert bodies that anyone with access to the TradingView account
can read, so it authorises alerts only. Every other route but ``/health`` and ``/ready`` needs the
read/operator token: ``Authorization: Bearer <token>``, or the session cookie that ``POST /login``
sets (HttpOnly, SameSite=Strict, Secure over HTTPS, signed with a key derived from the token —
so changing the token ends every session — and expiring). With no token configured those routes
answer loopback clients only, and a request carrying forwarding headers is never loopback (it
came through a proxy). Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from starlette.requests import Request

SESSION_COOKIE = "pm_session"
CSRF_HEADER = "x-csrf-token"
LOOPBACK = frozenset({"127.0.0.1", "::1"})
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def same(given: Optional[str], expected: str) -> bool:
    """Constant-time comparison of a presented secret with the expected one."""
    return hmac.compare_digest((given or "").encode(), expected.encode())


@dataclass
class Access:
    """The read/operator token and the sessions signed with it."""

    read_token: Optional[str]
    session_s: float = 12 * 3600
    clock: Callable[[], float] = time.time

    def _key(self) -> bytes:
        assert self.read_token is not None
        return hashlib.sha256(b"pm-engine session key:" + self.read_token.encode()).digest()

    def _mac(self, text: str) -> str:
        return hmac.new(self._key(), text.encode(), hashlib.sha256).hexdigest()

    def token_ok(self, given: Optional[str]) -> bool:
        return self.read_token is not None and same(given, self.read_token)

    def new_session(self) -> str:
        """A cookie value: its expiry (Unix seconds) and the MAC of it."""
        expires = str(int(self.clock() + self.session_s))
        return f"{expires}.{self._mac('session:' + expires)}"

    def session_ok(self, value: Optional[str]) -> bool:
        if self.read_token is None or not value or "." not in value:
            return False
        expires, _, mac = value.partition(".")
        return expires.isdigit() and same(mac, self._mac("session:" + expires)) and int(expires) > self.clock()

    def csrf_token(self, session: str) -> str:
        """The token a form or script sends back with a POST made on the strength of a session cookie."""
        return self._mac("csrf:" + session)

    def principal(self, request: Request) -> Optional[str]:
        """How the request is authorised to read: 'token', 'session' or 'loopback'; None when it is not."""
        if self.read_token is None:
            return "loopback" if is_loopback(request) else None
        header = request.headers.get("authorization", "")
        if header[:7].lower() == "bearer " and self.token_ok(header[7:].strip()):
            return "token"
        if self.session_ok(request.cookies.get(SESSION_COOKIE)):
            return "session"
        return None

    def may_change(self, request: Request, principal: str, form_csrf: Optional[str] = None) -> bool:
        """A POST that changes something: a token or loopback caller may; a session must show its CSRF token."""
        if principal != "session":
            return True
        session = request.cookies.get(SESSION_COOKIE, "")
        return same(request.headers.get(CSRF_HEADER) or form_csrf, self.csrf_token(session))


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
