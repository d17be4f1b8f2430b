"""What every request meets before a route (issue 19): plain ASGI middlewares, cheap on the webhook.

``Guard`` (outermost) adds ``nosniff`` and framing headers to every answer; refuses a ``Host`` that
is neither a loopback name, an IP address nor a configured name (so DNS rebinding cannot make a
remote page "this machine"); refuses a state-changing request a browser sent from another site
(``Sec-Fetch-Site``, ``Origin``) for every principal, loopback included; checks the webhook's
``allowed_ips`` before reading a byte of the body; and streams every body with a cap, so nothing past
``MAX_BODY_BYTES`` is ever held (a declared length over the cap is refused unread, a chunked body as
soon as it passes it, and the connection closed). An exception no route handled becomes one log line
and a 500, never a traceback. ``ReadAccess`` then asks for the read token, a session or loopback; it
counts bad Bearer tokens like bad logins and, past the limit, refuses an address whatever it sends.

Each refusal is audited through ``Refusals`` (``pm.request_log``, off the request path).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any, Optional

from fastapi.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pm_engine.core import intent
from pm_engine.core.errors import DatabaseUnavailableError
from pm_engine.core.signals import MAX_BODY_BYTES
from pm_engine.store.audit import RefusalAudit, excerpt, mask
from pm_engine.web.access import Access, FailureWindows
from pm_engine.web.metrics import Metrics

log = logging.getLogger("pm_engine.web")
PUBLIC = frozenset({("POST", "/webhook"), ("GET", "/health"), ("GET", "/ready")})  # no token needed
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODY_TIMEOUT_S = 10.0  # a body that has not fully arrived by then is refused (408): slow bodies hold nothing
DRAIN_MAX = 1024 * 1024  # before a refusal, a declared body up to this size is read and thrown away, so the
#                          client can read the answer; a chunked or larger one is left unread, the connection closed
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff")]
FRAMING = [(b"x-frame-options", b"DENY"), (b"content-security-policy", b"frame-ancestors 'none'")]


def _header(scope: Scope, name: bytes) -> Optional[bytes]:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class Refusals:
    """Answers a refused request and hands its audit row to the writer; counts bad credentials."""

    def __init__(self, audit: Optional[RefusalAudit], metrics: Metrics, masked: tuple[Optional[str], ...]) -> None:
        self.audit, self.metrics, self.masked = audit, metrics, masked

    def answer(self, scope: Scope, raw: bytes, status: int, message: str, field: Optional[str] = None,
               headers: Optional[dict[str, str]] = None) -> JSONResponse:
        self.metrics.refusals.labels(str(status)).inc()
        if self.audit is not None:
            agent = _header(scope, b"user-agent")
            self.audit.submit(_client(scope), {
                "status": status, "reason": message, "field": field, "body_sha256": hashlib.sha256(raw).hexdigest(),
                "body_excerpt": excerpt(raw, self.masked), "route": scope.get("path", "")[:100],
                "user_agent": mask(agent.decode("latin-1"), self.masked) if agent is not None else None})
        body: dict[str, Any] = {"error": message}
        if field is not None:
            body["field"] = field
        return JSONResponse(body, status_code=status, headers=headers)

    def bad_credential(self, windows: FailureWindows, address: str, what: str) -> Optional[int]:
        """Count a bad secret or token: Retry-After seconds past the limit, else None (one log line per window)."""
        retry_after, opened = windows.fail(address)
        if opened:
            log.warning("%s from %s (further refusals from this address are not logged for %d s)", what, address,
                        windows.window_s)
        return retry_after


class Guard:
    """Host allow-list, cross-site refusal, allow-list before the body, capped body, headers, last-resort 500."""

    def __init__(self, app: ASGIApp, refusals: Refusals, allowed_ips: tuple[str, ...] = (),
                 allowed_hosts: tuple[str, ...] = (), max_body: int = MAX_BODY_BYTES) -> None:
        self.app, self.refusals, self.max_body = app, refusals, max_body
        self.allowed_ips = frozenset(allowed_ips)
        self.allowed_hosts = intent.LOOPBACK_NAMES | {h.lower() for h in allowed_hosts}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", ()))
                names = {key.lower() for key, _ in headers}
                headers += SECURITY_HEADERS + [pair for pair in FRAMING if pair[0] not in names]
                message = {**message, "headers": headers}
            await send(message)

        refused = self._refusal(scope)
        if refused is None:
            try:
                receive, refused = await self._capped_body(scope, receive)
            except asyncio.TimeoutError:
                scope["pm_body_abandoned"] = True
                refused = self.refusals.answer(scope, b"", 408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s")
        if refused is not None:
            if await self._drain(scope, receive):
                refused.headers["Connection"] = "close"  # the rest of an oversized body is never read
            await refused(scope, receive, secured)
            return
        try:
            await self.app(scope, receive, secured)
        except Exception as exc:  # the last line of defence: one line, no traceback, nothing internal answered
            log.error("%s %s failed: %s: %s", scope["method"], scope["path"], type(exc).__name__, str(exc)[:200])
            if not started:
                await JSONResponse({"error": "internal error"}, status_code=500)(scope, receive, secured)

    def _refusal(self, scope: Scope) -> Optional[Response]:
        """A refusal decided from the request head alone (nothing of the body read), or None."""
        method, path = scope["method"], scope["path"]
        if (method, path) == ("POST", "/webhook"):
            if self.allowed_ips and _client(scope) not in self.allowed_ips:
                return self.refusals.answer(scope, b"", 403, "sender address is not allowed")
        elif (method, path) not in PUBLIC:
            host = (_header(scope, b"host") or b"").decode("latin-1")
            if not self.host_allowed(host):
                return self.refusals.answer(scope, b"", 400, f"host {host[:80]!r} is not one this engine answers to "
                                                             "(loopback, an IP address, or allowed_hosts)", "host")
            if method in STATE_CHANGING:
                problem = cross_site(scope, host)
                if problem is not None:
                    return self.refusals.answer(scope, b"", 403, problem, "origin")
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return self.refusals.answer(scope, b"", 413, f"body is larger than {self.max_body // 1024} KiB")
        return None

    @staticmethod
    async def _drain(scope: Scope, receive: Receive) -> bool:
        """Before a refusal: read and drop a small declared body (up to ``DRAIN_MAX``) so the client can read
        the answer cleanly; True when the rest of the body is left unread (the connection must close)."""
        if scope.get("pm_body_done"):
            return False
        length = _header(scope, b"content-length")
        if scope.get("pm_body_abandoned") or _header(scope, b"transfer-encoding") is not None:
            return True  # chunked, or too slow: answer at once and close
        if length is None or length == b"0":
            return False
        if not length.isdigit() or int(length) > DRAIN_MAX:
            return True
        try:
            async with asyncio.timeout(BODY_TIMEOUT_S):
                while True:
                    message = await receive()
                    if message["type"] != "http.request" or not message.get("more_body", False):
                        return False
        except asyncio.TimeoutError:
            return True

    async def _capped_body(self, scope: Scope, receive: Receive) -> tuple[Receive, Optional[Response]]:
        """Read the body up to the cap and hand the app a receive that replays it; a refusal past the cap."""
        if scope["method"] in ("GET", "HEAD") and _header(scope, b"transfer-encoding") is None:
            return receive, None
        first = await receive()
        if not first.get("more_body", False):  # the whole body in one message: the webhook's usual case
            scope["pm_body_done"] = True
            return _replay(first, receive), None
        chunks, size = [first.get("body", b"")], len(first.get("body", b""))
        async with asyncio.timeout(BODY_TIMEOUT_S):
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    scope["pm_body_done"] = True
                    return _replay(message, receive), None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body:
                    raw = b"".join(chunks)
                    return receive, self.refusals.answer(scope, raw, 413,
                                                         f"body is larger than {self.max_body // 1024} KiB")
                chunks.append(chunk)
                if not message.get("more_body", False):
                    scope["pm_body_done"] = True
                    return _replay({"type": "http.request", "body": b"".join(chunks), "more_body": False},
                                   receive), None

    def host_allowed(self, host: str) -> bool:
        """Loopback names, any IP address, and the configured names (``core/intent.py``)."""
        return intent.host_allowed(host, self.allowed_hosts)


def cross_site(scope: Scope, host: str) -> Optional[str]:
    """Why a state-changing request looks sent by another site's page, or None (``core/intent.py``)."""
    site, origin = _header(scope, b"sec-fetch-site"), _header(scope, b"origin")
    return intent.cross_site(site.decode("latin-1") if site is not None else None,
                             origin.decode("latin-1") if origin is not None else None, host)


def _replay(message: Message, receive: Receive) -> Receive:
    """A receive that answers ``message`` once, then whatever the server sends next (a disconnect)."""
    pending: list[Message] = [message]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()
    return replay


class ReadAccess:
    """Every route but the public ones needs the token, a session, or (no token set) a loopback client.

    A plain ASGI middleware (not Starlette's ``BaseHTTPMiddleware``, which costs every request a task
    and a stream): a public request passes with one lookup, so the webhook pays nothing for it. A bad
    Bearer token is counted and audited like a bad login; past the limit the address gets 429 for the
    read token whatever it sends (a 429 must not mean "that guess was wrong").
    """

    def __init__(self, app: ASGIApp, access: Access, token_set: bool, refusals: Refusals,
                 tokens: FailureWindows) -> None:
        self.app, self.access, self.token_set = app, access, token_set
        self.refusals, self.tokens = refusals, tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or (scope["method"], path) in PUBLIC or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        answer = await self._check(scope)
        if answer is not None:
            await answer(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _check(self, scope: Scope) -> Optional[Response]:
        request = Request(scope)
        address = _client(scope)
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
        if self.token_set and bearer is not None:
            retry_after = self.tokens.blocked(address)
            if retry_after is None and not self.access.token_ok(bearer):
                retry_after = self.refusals.bad_credential(self.tokens, address, "read token refused (Bearer)")
                if retry_after is None:
                    return self.refusals.answer(scope, b"", 401, "bad read token", "authorization",
                                                {"WWW-Authenticate": "Bearer"})
            if retry_after is not None:
                return self.refusals.answer(scope, b"", 429, "too many bad tokens from this address; retry later",
                                            None, {"Retry-After": str(retry_after)})
            principal: Optional[str] = "token"
        else:
            try:
                principal = await run_in_threadpool(self.access.principal, request)
            except DatabaseUnavailableError:
                return JSONResponse({"error": "database unavailable; sessions cannot be checked"}, status_code=503)
        if principal is None and path_of(scope) != "/login":  # the page and its form post (which checks the token)
            if scope["method"] == "GET" and path_of(scope) == "/":
                return RedirectResponse("/login", status_code=303)
            detail = ("read token required (Authorization: Bearer, or log in)" if self.token_set
                      else "no read token is configured: this route answers clients on this machine only")
            return JSONResponse({"error": detail}, status_code=401, headers={"WWW-Authenticate": "Bearer"})
        scope.setdefault("state", {})["principal"] = principal
        return None


def path_of(scope: Scope) -> str:
    return str(scope.get("path", ""))
