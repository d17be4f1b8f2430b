"""The HTTP interface (DOMAIN.md sections 9, 12, 13): the webhook, reads, and the operator's controls.

The body is read raw and parsed as JSON whatever its Content-Type (TradingView sends text/plain).
The secret may come in the body (``secret``), the query (``token``) or the ``X-PM-Secret``
header, and is compared in constant time; it is never logged or echoed. A refused request writes
nothing but its audit row (``pm.request_log``, written off the request path by ``RefusalAudit``).
A database outage answers 503 (the signal was not recorded; a resend is safe). Every other route
but ``/health`` and ``/ready`` needs the read/operator token (``web/access.py``). Every request first
passes ``web/guard.py``: Host allow-list, cross-site refusal, allow-list and body cap before the body.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, Optional
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pm_engine import __version__
from pm_engine.core.engine import LiveTradingEngine
from pm_engine.core.errors import DatabaseUnavailableError, StaleVersionError
from pm_engine.core.signals import (MAX_BODY_BYTES, SignalValidationError, check_storable, parse_body,
                                    parse_timestamp)
from pm_engine.core.statistics import as_json
from pm_engine.store.audit import RefusalAudit
from pm_engine.store.manager import DatabaseStateManager
from pm_engine.web.access import SESSION_COOKIE, Access, FailureWindows, MemorySessions, client_address, same
from pm_engine.web.capital import add_capital
from pm_engine.web.contracts import contracts_router
from pm_engine.web.rollover import rollover_router
from pm_engine.web.dashboard import add_dashboard, replica_status
from pm_engine.web.guard import Guard, ReadAccess, Refusals
from pm_engine.web.metrics import Metrics
from pm_engine.web.orders import broker_health, orders_router

log = logging.getLogger("pm_engine.webhook")

WEBHOOK_EXAMPLE = {"type": "BASE_ENTRY", "instrument": "BANK_NIFTY", "position": "Long_1", "price": 52000,
                   "stop": 51650, "lots": 4, "atr": 350, "er": 0.85, "supertrend": 51600, "roc": 2.5,
                   "timestamp": "2026-12-01T10:30:00+05:30", "secret": "<shared secret>"}

_NUMBER = {"type": "number"}
WEBHOOK_SCHEMA = {
    "type": "object",
    "required": ["type", "instrument", "position", "price", "lots", "atr", "er", "supertrend", "timestamp"],
    "properties": {
        "type": {"type": "string", "enum": ["BASE_ENTRY", "PYRAMID", "EXIT"]},
        "instrument": {"type": "string", "example": "BANK_NIFTY"},
        "position": {"type": "string", "pattern": "^(Long_[1-9]|ALL)$"},
        "price": {"type": "number", "exclusiveMinimum": 0},
        "stop": {"type": "number", "exclusiveMinimum": 0, "description": "required for entries, < price"},
        "lots": {"type": "integer", "minimum": 0}, "atr": {"type": "number", "minimum": 0},
        "er": {"type": "number", "minimum": 0, "maximum": 1}, "supertrend": _NUMBER, "roc": _NUMBER,
        "reason": {"type": "string", "description": "required for EXIT"},
        "timestamp": {"type": "string", "format": "date-time", "description": "ISO 8601; no zone means IST"},
        "secret": {"type": "string", "description": "shared secret (or ?token= or X-PM-Secret)"},
    },
}


def error(status: int, message: str, field: Optional[str] = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if field is not None:
        body["field"] = field
    return JSONResponse(body, status_code=status)


@dataclass(frozen=True)
class WebSettings:
    """What the app needs besides the engine (from ``Settings``; tests build it directly)."""

    secret: Optional[str]  # the webhook secret; None disables it (tests, local replay only)
    allowed_ips: tuple[str, ...] = ()
    read_token: Optional[str] = field(default=None, repr=False)
    session_hours: float = 12.0
    allowed_hosts: tuple[str, ...] = ()  # host names answered besides loopback names and IP addresses


def create_app(engine: LiveTradingEngine, web: WebSettings, audit: Optional[RefusalAudit] = None,
               leader: Callable[[], bool] = lambda: False, reader: Optional[DatabaseStateManager] = None) -> FastAPI:
    """The app around one engine: the webhook, the protected read routes, the operator's controls, the
    dashboard and the metrics (``app.state.metrics``; ``leader`` tells whether this instance leads). ``reader``
    (DATABASE_READ_URL, a standby) serves the reads that may lag: the dashboard, history, /status?replica=1."""
    secret = web.secret
    store = engine.db_manager if isinstance(engine.db_manager, DatabaseStateManager) else None
    access = Access(web.read_token, web.session_hours * 3600, sessions=store or MemorySessions())
    failures = FailureWindows()  # bad webhook secrets
    token_failures = FailureWindows()  # bad read tokens (login and Bearer): past the limit, refused whatever is sent
    app = FastAPI(title="pm-engine", version=__version__,
                  description="Portfolio manager for systematic futures traders: TradingView webhook, status, "
                              "history, trading controls. Every route but POST /webhook, GET /health and GET /ready "
                              "needs the read/operator token (Authorization: Bearer) or a login session.",
                  docs_url=None, redoc_url=None)  # served offline by web/dashboard.py
    masked = (secret, web.read_token)
    metrics = app.state.metrics = Metrics(engine, store, leader)
    refusals = Refusals(audit, metrics, masked)

    app.add_middleware(ReadAccess, access=access, token_set=web.read_token is not None, refusals=refusals,
                       tokens=token_failures)
    app.add_middleware(Guard, refusals=refusals, allowed_ips=web.allowed_ips, allowed_hosts=web.allowed_hosts)

    def refuse(request: Request, raw: bytes, status: int, message: str, field: Optional[str] = None,
               headers: Optional[dict[str, str]] = None) -> JSONResponse:
        """Answer a refused request and hand its audit row to the writer (off the request path)."""
        return refusals.answer(request.scope, raw, status, message, field, headers)

    def bad_secret(request: Request, raw: bytes) -> JSONResponse:
        """401, or 429 past 10 bad secrets a minute from one address (one log line per address and window)."""
        retry_after = refusals.bad_credential(failures, client_address(request),
                                              "webhook refused: missing or bad secret")
        if retry_after is not None:
            return refuse(request, raw, 429, "too many bad secrets from this address; retry later", None,
                          {"Retry-After": str(retry_after)})
        return refuse(request, raw, 401, "missing or bad secret")

    def authorised(request: Request, data: dict[str, Any]) -> bool:
        if secret is None:
            return True
        in_body = data.get("secret")
        if isinstance(in_body, str) and in_body:
            return same(in_body, secret)
        return _header_or_query_ok(request, secret)

    @app.post("/webhook", summary="Receive a TradingView alert",
              responses={200: {"description": "executed, blocked or duplicate (all final: do not resend)",
                               "content": {"application/json": {"example": {
                                   "outcome": "executed",
                                   "reason": "entered 4 lots of BANK_NIFTY (BANKNIFTY29DEC26FUT) at 52000.00",
                                   "contract": "BANKNIFTY29DEC26FUT",
                                   "fingerprint": "fb6c…"}}}},
                         400: {"description": "body is not a JSON object: {\"error\": …}"},
                         401: {"description": "bad or missing secret"},
                         413: {"description": "body larger than 64 KiB"},
                         422: {"description": "invalid payload: {\"error\": …, \"field\": …}"},
                         503: {"description": "database unavailable; nothing recorded, a resend is safe"}},
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": WEBHOOK_SCHEMA, "example": WEBHOOK_EXAMPLE},
                  "text/plain": {"schema": {"type": "string"}, "example": json.dumps(WEBHOOK_EXAMPLE)}}}})
    async def webhook(request: Request) -> JSONResponse:
        with metrics.latency.time():
            answer = await handle_webhook(request)
        return answer

    async def handle_webhook(request: Request) -> JSONResponse:
        raw = await request.body()  # the allow-list and the 64 KiB cap were applied before it was read (Guard)
        if len(raw) > MAX_BODY_BYTES:
            return refuse(request, raw, 413, f"body is larger than {MAX_BODY_BYTES // 1024} KiB")
        try:
            data = parse_body(raw)
        except SignalValidationError as exc:
            if secret is not None and not _header_or_query_ok(request, secret):
                return bad_secret(request, raw)
            return refuse(request, raw, 400, exc.message)
        if not authorised(request, data):
            return bad_secret(request, raw)
        try:
            if b"\\u" in raw:  # only an escape can put NUL or a lone surrogate into decoded JSON
                check_storable(data)
            signal = engine.parse(data)
        except SignalValidationError as exc:
            log.info("webhook rejected: %s", exc)
            return refuse(request, raw, 422, str(exc), exc.field)
        try:
            result = await run_in_threadpool(engine.process_signal, signal)
        except DatabaseUnavailableError:
            log.error("database unavailable: signal %s not recorded", signal.fingerprint[:12])
            return refuse(request, raw, 503, "database unavailable; the signal was not recorded, resend later")
        except StaleVersionError:
            return refuse(request, raw, 503, "portfolio busy; the signal was not recorded, resend later")
        except Exception:  # pragma: no cover - the last line of defence, never leaks internals
            log.exception("webhook failed for %s", signal.fingerprint[:12])
            return error(500, "internal error")
        log.info("signal %s %s: %s", signal.fingerprint[:12], result.outcome.value, result.reason)
        metrics.signals.labels(result.outcome.value).inc()
        return JSONResponse(result.as_dict())

    @app.get("/status", summary="Equity, metrics and open positions, as committed in the database "
                                "(?replica=1: from the read replica, with its lag)")
    def status(replica: bool = False) -> JSONResponse:
        try:
            if replica and reader is not None:
                return JSONResponse(as_json(replica_status(engine, reader)))
            body = engine.current_status()
            if store is not None:
                body["trading"] = store.trading_mode()
                body["anomalies"] = store.anomaly_counts()
        except DatabaseUnavailableError:
            return error(503, "database unavailable; the book cannot be shown as committed")
        body["outcomes"] = dict(engine.outcomes)
        body["instance_id"] = engine.instance_id
        body["broker"] = broker_health(engine.broker) or {"state": "paper", "text": "paper broker"}
        if audit is not None:
            body["refusal_audit"] = audit.counters()
        return JSONResponse(as_json(body))

    def history(read: Callable[[Any, Optional[datetime], Optional[datetime]], Any], request: Request) -> JSONResponse:
        """A history read over ``?from=&to=`` (ISO 8601, no zone = IST): 422 naming a bad bound, 503 when down."""
        reads = reader or store
        if reads is None:
            return error(404, "history needs a database (this engine runs in memory)")
        bounds: dict[str, Optional[datetime]] = {}
        for name in ("from", "to"):
            raw = request.query_params.get(name)
            try:
                bounds[name] = parse_timestamp(raw) if raw else None
            except SignalValidationError:
                return error(422, f"{name}: not an ISO 8601 time", name)
        if bounds["from"] and bounds["to"] and bounds["from"] > bounds["to"]:
            return error(422, "from: is after to", "from")
        try:
            return JSONResponse(as_json(read(reads, bounds["from"], bounds["to"])))
        except DatabaseUnavailableError:
            return error(503, "database unavailable")

    @app.get("/equity", summary="Equity curve: closed, open and blended equity at each commit (?from=&to=)")
    def equity(request: Request) -> JSONResponse:
        return history(lambda db, start, end: {"points": db.equity_curve(start, end)}, request)

    @app.get("/trades", summary="Closed positions with P&L, initial risk and R multiple (?from=&to=)")
    def trades(request: Request) -> JSONResponse:
        return history(lambda db, start, end: {"trades": db.trades(start, end)}, request)

    @app.get("/stats", summary="Trade statistics and P&L by day, week and month (?from=&to=)")
    def stats(request: Request) -> JSONResponse:
        return history(lambda db, start, end: {**db.trade_stats(start, end), "pnl_by_period": {
            period: db.pnl_by_period(period, start, end) for period in ("day", "week", "month")}}, request)

    @app.get("/health", summary="200 while the process serves")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="200 when the database answers, else 503 (nothing more: it is public)")
    def ready() -> JSONResponse:
        if store is None:
            return JSONResponse({"ready": True})
        try:
            store.ping()
        except DatabaseUnavailableError:
            return JSONResponse({"ready": False}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/db/status", summary="Connection, pool, schema version, round-trip latency")
    def db_status() -> JSONResponse:
        db = store
        if db is None:
            return JSONResponse({"connected": False, "database": "none (in memory)"})
        started = time.perf_counter()
        try:
            latency = db.ping()
            schema = db.schema_version()
        except DatabaseUnavailableError as exc:
            return JSONResponse({"connected": False, "error": str(exc)}, status_code=503)
        return JSONResponse({
            "connected": True, "database": db.config.url(), "schema_version": schema,
            "round_trip_ms": round(latency, 3), "pool": {"min": db.config.minconn, "max": db.config.maxconn},
            "checked_in_ms": round((time.perf_counter() - started) * 1000, 3),
        })

    @app.post("/login", summary="Exchange the read/operator token (form or JSON field token) for a session cookie")
    async def login(request: Request) -> Response:
        try:
            data = await _form_or_json(request)
        except SignalValidationError as exc:
            return refuse(request, b"", 422, str(exc), exc.field)
        if web.read_token is None:
            return error(404, "no read token is configured: nothing to log in with (this machine reads freely)")
        scripted = "application/json" in request.headers.get("content-type", "")  # else the login form
        address = client_address(request)
        retry_after = token_failures.blocked(address)  # past the limit, the right token is refused too
        if retry_after is None and not access.token_ok(str(data.get("token") or "")):
            retry_after = refusals.bad_credential(token_failures, address, "login refused: bad token")
            if retry_after is None:
                refuse(request, b"", 401, "bad token", "token")
                if not scripted:
                    return app.state.login_failed(request, "That is not the read/operator token.")  # the form again
                return error(401, "bad token", "token")
        if retry_after is not None:
            return refuse(request, b"", 429, "too many bad tokens from this address; retry later", None,
                          {"Retry-After": str(retry_after)})
        try:
            session = await run_in_threadpool(access.new_session, address)
        except DatabaseUnavailableError:
            return error(503, "database unavailable; cannot open a session")
        answer: Response
        if scripted:
            answer = JSONResponse({"ok": True, "csrf_token": access.csrf_token(session)})
        else:
            answer = RedirectResponse("/", status_code=303)
        answer.set_cookie(SESSION_COOKIE, session, max_age=int(access.session_s), httponly=True, samesite="strict",
                          secure=request.url.scheme == "https", path="/")
        return answer

    @app.post("/logout", summary="End this session (revoked for every instance)")
    def logout(request: Request) -> Response:
        try:
            access.end_session(request.cookies.get(SESSION_COOKIE))
        except DatabaseUnavailableError:
            return error(503, "database unavailable; the session was not ended")
        answer = RedirectResponse("/login", status_code=303)
        answer.delete_cookie(SESSION_COOKIE, path="/")
        return answer

    def need_store() -> DatabaseStateManager:
        if store is None:
            raise _Refused(error(404, "trading controls need a database (this engine runs in memory)"))
        return store

    def changer(request: Request, data: dict[str, Any]) -> str:
        """Who makes a change (recorded with it); refuses one that shows no intent (``Access.may_change``)."""
        principal = getattr(request.state, "principal", "loopback")
        problem = access.may_change(request, principal, data.get("csrf_token"))
        if problem is not None:
            raise _Refused(refuse(request, b"", 403, problem,
                                  "csrf_token" if principal == "session" else "content-type"))
        kind = {"session": "dashboard", "token": "api", "loopback": "local"}[principal]
        return f"{kind}:{client_address(request)}"

    @app.get("/control", summary="Trading mode, its recent changes, breakers and instrument locks")
    def control() -> JSONResponse:
        try:
            db = need_store()
            return JSONResponse(as_json({"mode": db.trading_mode(), "history": db.trading_mode_history(20),
                                         "breakers": db.breakers(), "locks": db.active_locks()}))
        except _Refused as refused:
            return refused.answer
        except DatabaseUnavailableError:
            return error(503, "database unavailable")

    @app.post("/control", summary="Pause (exits_only, halted) or resume (active) trading, with a reason")
    async def set_control(request: Request) -> JSONResponse:
        try:
            data = await _form_or_json(request)
            db = need_store()
            who = changer(request, data)
        except _Refused as refused:
            return refused.answer
        except SignalValidationError as exc:
            return refuse(request, b"", 422, str(exc), exc.field)
        mode = str(data.get("mode") or "")
        if mode not in ("active", "exits_only", "halted"):
            return refuse(request, b"", 422, "mode must be active, exits_only or halted", "mode")
        reason = str(data.get("reason") or "").strip() or None
        if mode != "active" and reason is None:
            return refuse(request, b"", 422, "a reason is required to pause trading", "reason")
        try:
            changed = await run_in_threadpool(db.set_trading_mode, mode, reason, who)
        except DatabaseUnavailableError:
            return error(503, "database unavailable; the mode was not changed")
        log.warning("trading mode set to %s by %s: %s", mode, who, reason or "-")
        return JSONResponse(as_json(changed))

    @app.post("/positions/{position_id}/exit", summary="Close an open layer now, as an EXIT alert would")
    async def exit_position(position_id: str, request: Request) -> JSONResponse:
        try:
            data = await _form_or_json(request)
            need_store()
            who = changer(request, data)
        except SignalValidationError as exc:
            return refuse(request, b"", 422, str(exc), exc.field)
        except _Refused as refused:
            return refused.answer
        instrument, _, layer = position_id.partition("_Long_")
        try:
            price = Decimal(str(data["price"])) if data.get("price") not in (None, "") else None
        except (ArithmeticError, ValueError):
            price = Decimal("NaN")
        if price is not None and (isinstance(data.get("price"), bool) or not price.is_finite() or price <= 0):
            return refuse(request, b"", 422, "price must be a positive number", "price")
        try:
            result = await run_in_threadpool(engine.manual_exit, instrument, f"Long_{layer}" if layer else "",
                                             price, str(data.get("reason") or ""))
        except SignalValidationError as exc:
            status = 404 if exc.field == "position" else 422
            return refuse(request, b"", status, str(exc), exc.field)
        except DatabaseUnavailableError:
            return error(503, "database unavailable; nothing was closed")
        log.warning("manual exit of %s by %s: %s", position_id, who, result.reason)
        return JSONResponse(result.as_dict())

    @app.get("/metrics", summary="Prometheus metrics (text exposition format)")
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(contracts_router(engine.contracts))
    app.include_router(orders_router(store, engine.broker))
    app.include_router(rollover_router(store, engine.contracts, engine.instruments, engine.mcx_quantity))

    def changer_or_refusal(request: Request, data: dict[str, Any]) -> str | JSONResponse:
        try:
            return changer(request, data)
        except _Refused as refused:
            return refused.answer

    add_capital(app, engine, store, changer_or_refusal, refuse)  # POST /capital, GET /capital (web/capital.py)
    add_dashboard(app, engine, reader or store, access, replica=reader is not None)
    return app


class _Refused(Exception):
    """A route's early answer (no database, a missing CSRF token)."""

    def __init__(self, answer: JSONResponse) -> None:
        super().__init__(answer.status_code)
        self.answer = answer


async def _form_or_json(request: Request) -> dict[str, Any]:
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
        if "application/json" in kind:
            data = json.loads(raw)
        elif "application/x-www-form-urlencoded" in kind:
            data = {k: v[-1] for k, v in parse_qs(raw.decode("utf-8", errors="replace")).items()}
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    check_storable(data)
    return data


def _header_or_query_ok(request: Request, secret: str) -> bool:
    return same(request.query_params.get("token") or request.headers.get("x-pm-secret"), secret)
