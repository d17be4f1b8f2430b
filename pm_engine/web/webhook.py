"""``POST /webhook``: a TradingView alert in, the engine's decision out (docs/domain.md#engine-flows).

The body is read raw and parsed as JSON whatever its Content-Type (TradingView sends text/plain).
The secret may come in the body (``secret``), the query (``token``) or the ``X-PM-Secret``
header, and is compared in constant time; it is never logged or echoed. A refused request writes
nothing but its audit row. A database outage answers 503 (the signal was not recorded; a resend
is safe). The webhook never waits for the broker: orders leave from the sender, off this path.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from pm_engine.core.errors import DatabaseUnavailableError, StaleVersionError
from pm_engine.core.signals import MAX_BODY_BYTES, SignalValidationError, check_storable, parse_body
from pm_engine.web.access import client_address, same
from pm_engine.web.context import WebContext, error, header_or_query_ok

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


def webhook_router(ctx: WebContext) -> APIRouter:
    router = APIRouter()
    engine, metrics, secret = ctx.engine, ctx.metrics, ctx.web.secret

    def bad_secret(request: Request, raw: bytes) -> JSONResponse:
        """401, or 429 past 10 bad secrets a minute from one address (one log line per address and window)."""
        retry_after = ctx.refusals.bad_credential(ctx.failures, client_address(request),
                                                  "webhook refused: missing or bad secret")
        if retry_after is not None:
            return ctx.refuse(request, raw, 429, "too many bad secrets from this address; retry later", None,
                              {"Retry-After": str(retry_after)})
        return ctx.refuse(request, raw, 401, "missing or bad secret")

    def authorised(request: Request, data: dict[str, Any]) -> bool:
        if secret is None:
            return True
        in_body = data.get("secret")
        if isinstance(in_body, str) and in_body:
            return same(in_body, secret)
        return header_or_query_ok(request, secret)

    @router.post("/webhook", summary="Receive a TradingView alert",
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
            return ctx.refuse(request, raw, 413, f"body is larger than {MAX_BODY_BYTES // 1024} KiB")
        try:
            data = parse_body(raw)
        except SignalValidationError as exc:
            if secret is not None and not header_or_query_ok(request, secret):
                return bad_secret(request, raw)
            return ctx.refuse(request, raw, 400, exc.message)
        if not authorised(request, data):
            return bad_secret(request, raw)
        try:
            if b"\\u" in raw:  # only an escape can put NUL or a lone surrogate into decoded JSON
                check_storable(data)
            signal = engine.parse(data)
        except SignalValidationError as exc:
            log.info("webhook rejected: %s", exc)
            return ctx.refuse(request, raw, 422, str(exc), exc.field)
        try:
            result = await run_in_threadpool(engine.process_signal, signal)
        except DatabaseUnavailableError:
            log.error("database unavailable: signal %s not recorded", signal.fingerprint[:12])
            return ctx.refuse(request, raw, 503, "database unavailable; the signal was not recorded, resend later")
        except StaleVersionError:
            return ctx.refuse(request, raw, 503, "portfolio busy; the signal was not recorded, resend later")
        except Exception:  # pragma: no cover - the last line of defence, never leaks internals
            log.exception("webhook failed for %s", signal.fingerprint[:12])
            return error(500, "internal error")
        log.info("signal %s %s: %s", signal.fingerprint[:12], result.outcome.value, result.reason)
        metrics.signals.labels(result.outcome.value).inc()
        return JSONResponse(result.as_dict())

    return router
