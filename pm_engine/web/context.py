"""What every router of the app shares: the engine, the stores, access and the refusal audit.

``create_app`` builds one ``WebContext`` and hands it to each router (``web/webhook.py``,
``web/reads.py``, ``web/sessions.py``, ``web/controls.py``, ...), so the rules every route must
follow alike — how a refusal is answered and audited, who may change things — live here once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import parse_qs

from fastapi import Request
from fastapi.responses import JSONResponse

from pm_engine.core.engine import TradingEngine
from pm_engine.core.intent import is_json, media_type
from pm_engine.core.signals import MAX_BODY_BYTES, check_storable
from pm_engine.store.audit import RefusalAudit
from pm_engine.store.gateway import Store
from pm_engine.web.access import Access, FailureWindows, client_address, same
from pm_engine.web.guard import Refusals
from pm_engine.web.metrics import Metrics
from pm_engine.web.orders import BrokerSender


@dataclass(frozen=True)
class WebSettings:
    """What the app needs besides the engine (from ``Settings``; tests build it directly)."""

    secret: Optional[str]  # the webhook secret; None disables it (tests, local replay only)
    allowed_ips: tuple[str, ...] = ()
    read_token: Optional[str] = field(default=None, repr=False)
    session_hours: float = 12.0
    allowed_hosts: tuple[str, ...] = ()  # host names answered besides loopback names and IP addresses


def error(status: int, message: str, field: Optional[str] = None) -> JSONResponse:
    """A plain JSON error (not audited: a refused write goes through ``WebContext.refuse``)."""
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


class Refused(Exception):
    """A route's early answer (no database, a missing CSRF token)."""

    def __init__(self, answer: JSONResponse) -> None:
        super().__init__(answer.status_code)
        self.answer = answer


@dataclass
class WebContext:
    """One app's shared parts. ``store`` is the primary (None: the engine runs in memory); ``reader`` a
    standby (DATABASE_READ_URL) for the reads that may lag."""

    engine: TradingEngine
    web: WebSettings
    store: Optional[Store]
    reader: Optional[Store]
    audit: Optional[RefusalAudit]
    access: Access
    metrics: Metrics
    refusals: Refusals
    failures: FailureWindows  # bad webhook secrets
    token_failures: FailureWindows  # bad read tokens (login and Bearer): past the limit, refused whatever is sent
    sender: Optional[BrokerSender] = None  # the OpenAlgo order sender, handed in by the wiring; None: paper

    def refuse(self, request: Request, raw: bytes, status: int, message: str, field: Optional[str] = None,
               headers: Optional[dict[str, str]] = None) -> JSONResponse:
        """Answer a refused request and hand its audit row to the writer (off the request path)."""
        return self.refusals.answer(request.scope, raw, status, message, field, headers)

    def need_store(self) -> Store:
        if self.store is None:
            raise Refused(error(404, "trading controls need a database (this engine runs in memory)"))
        return self.store

    def changer(self, request: Request, data: dict[str, Any]) -> str:
        """Who makes a change (recorded with it); refuses one that shows no intent (``Access.may_change``)."""
        principal = getattr(request.state, "principal", "loopback")
        problem = self.access.may_change(request, principal, data.get("csrf_token"))
        if problem is not None:
            raise Refused(self.refuse(request, b"", 403, problem,
                                      "csrf_token" if principal == "session" else "content-type"))
        kind = {"session": "dashboard", "token": "api", "loopback": "local"}[principal]
        return f"{kind}:{client_address(request)}"

    def changer_or_refusal(self, request: Request, data: dict[str, Any]) -> str | JSONResponse:
        try:
            return self.changer(request, data)
        except Refused as refused:
            return refused.answer


async def form_or_json(request: Request) -> dict[str, Any]:
    """A POST body as a dict: JSON, or a URL-encoded form (the dashboard's); anything else is empty.

    Forms are parsed here (they carry a few short fields) rather than with python-multipart. Text
    the database cannot store (NUL, lone surrogates) raises SignalValidationError naming the field.
    """
    kind = request.headers.get("content-type", "")
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        return {}
    data: Any = {}
    try:
        if is_json(kind):
            data = json.loads(raw)
        elif media_type(kind) == "application/x-www-form-urlencoded":
            data = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", errors="replace")).items()}
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    check_storable(data)
    return data


def header_or_query_ok(request: Request, secret: str) -> bool:
    """The webhook secret from ``?token=`` or ``X-PM-Secret``, compared in constant time."""
    return same(request.query_params.get("token") or request.headers.get("x-pm-secret"), secret)
