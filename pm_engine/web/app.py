"""The HTTP interface (DOMAIN.md section 9): POST /webhook, GET /status, /health, /ready, /db/status.

The body is read raw and parsed as JSON whatever its Content-Type (TradingView sends text/plain).
The secret may come in the body (``secret``), the query (``token``) or the ``X-PM-Secret``
header, and is compared in constant time; it is never logged or echoed. A rejected request writes
nothing. A database outage answers 503 (the signal was not recorded; a resend is safe).
"""

from __future__ import annotations

import hmac
import json
import logging
import time
from datetime import datetime
from typing import Any, Callable, Optional

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from pm_engine import __version__
from pm_engine.core.engine import LiveTradingEngine
from pm_engine.core.errors import DatabaseUnavailableError, StaleVersionError
from pm_engine.core.signals import MAX_BODY_BYTES, SignalValidationError, parse_body, parse_timestamp
from pm_engine.core.statistics import as_json
from pm_engine.store.manager import DatabaseStateManager

log = logging.getLogger("pm_engine.webhook")

WEBHOOK_EXAMPLE = {"type": "BASE_ENTRY", "instrument": "BANK_NIFTY", "position": "Long_1", "price": 52000,
                   "stop": 51650, "lots": 4, "atr": 350, "er": 0.85, "supertrend": 51600, "roc": 2.5,
                   "timestamp": "2025-11-28T10:30:00+05:30", "secret": "<shared secret>"}

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


def create_app(engine: LiveTradingEngine, secret: Optional[str], allowed_ips: tuple[str, ...] = ()) -> FastAPI:
    """The app around one engine. ``secret=None`` disables authentication (tests, local replay only)."""
    app = FastAPI(title="pm-engine", version=__version__,
                  description="Portfolio manager for systematic futures traders: TradingView webhook and status.")

    def authorised(request: Request, data: dict[str, Any]) -> bool:
        if secret is None:
            return True
        in_body = data.get("secret")
        if isinstance(in_body, str) and in_body:
            return hmac.compare_digest(in_body.encode(), secret.encode())
        return _header_or_query_ok(request, secret)

    @app.post("/webhook", summary="Receive a TradingView alert",
              responses={200: {"description": "executed, blocked or duplicate (all final: do not resend)",
                               "content": {"application/json": {"example": {
                                   "outcome": "executed", "reason": "entered 4 lots of BANK_NIFTY at 52000.00",
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
        raw = await request.body()
        if allowed_ips and (request.client is None or request.client.host not in allowed_ips):
            return error(403, "sender address is not allowed")
        if len(raw) > MAX_BODY_BYTES:
            return error(413, f"body is larger than {MAX_BODY_BYTES // 1024} KiB")
        try:
            data = parse_body(raw)
        except SignalValidationError as exc:
            if secret is not None and not _header_or_query_ok(request, secret):
                return error(401, "missing or bad secret")
            return error(400, exc.message)
        if not authorised(request, data):
            log.warning("webhook refused: missing or bad secret from %s",
                        request.client.host if request.client else "?")
            return error(401, "missing or bad secret")
        try:
            signal = engine.parse(data)
        except SignalValidationError as exc:
            log.info("webhook rejected: %s", exc)
            return error(422, str(exc), exc.field)
        try:
            result = await run_in_threadpool(engine.process_signal, signal)
        except DatabaseUnavailableError:
            log.error("database unavailable: signal %s not recorded", signal.fingerprint[:12])
            return error(503, "database unavailable; the signal was not recorded, resend later")
        except StaleVersionError:
            return error(503, "portfolio busy; the signal was not recorded, resend later")
        except Exception:  # pragma: no cover - the last line of defence, never leaks internals
            log.exception("webhook failed for %s", signal.fingerprint[:12])
            return error(500, "internal error")
        log.info("signal %s %s: %s", signal.fingerprint[:12], result.outcome.value, result.reason)
        return JSONResponse(result.as_dict())

    @app.get("/status", summary="Equity, metrics and open positions, as committed in the database")
    def status() -> JSONResponse:
        try:
            body = engine.current_status()
        except DatabaseUnavailableError:
            return error(503, "database unavailable; the book cannot be shown as committed")
        body["outcomes"] = dict(engine.outcomes)
        body["instance_id"] = engine.instance_id
        return JSONResponse(body)

    def history(read: Callable[[Any, Optional[datetime], Optional[datetime]], Any], request: Request) -> JSONResponse:
        """A history read over ``?from=&to=`` (ISO 8601, no zone = IST): 422 naming a bad bound, 503 when down."""
        if store is None:
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
            return JSONResponse(as_json(read(store, bounds["from"], bounds["to"])))
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

    store = engine.db_manager if isinstance(engine.db_manager, DatabaseStateManager) else None

    @app.get("/ready", summary="200 when the database answers, else 503")
    def ready() -> JSONResponse:
        if store is None:
            return JSONResponse({"ready": True, "database": "none (in memory)"})
        try:
            store.ping()
        except DatabaseUnavailableError as exc:
            return JSONResponse({"ready": False, "error": str(exc)}, status_code=503)
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

    return app


def _header_or_query_ok(request: Request, secret: str) -> bool:
    given = request.query_params.get("token") or request.headers.get("x-pm-secret") or ""
    return hmac.compare_digest(given.encode(), secret.encode())
