"""The operator's controls: ``GET``/``POST /control`` (pause, exits only, resume) and
``POST /positions/{id}/exit`` (close a layer now, as an EXIT alert would).

A change needs the operator token, or a dashboard session with its CSRF token (``WebContext.changer``);
who made it is recorded with it. A refused change writes nothing but its audit row.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from pm_engine.core.errors import DatabaseUnavailableError
from pm_engine.core.signals import SignalValidationError
from pm_engine.core.statistics import as_json
from pm_engine.web.context import Refused, WebContext, error, form_or_json

log = logging.getLogger("pm_engine.webhook")


def controls_router(ctx: WebContext) -> APIRouter:
    router = APIRouter()
    engine = ctx.engine

    @router.get("/control", summary="Trading mode, its recent changes, breakers and instrument locks")
    def control() -> JSONResponse:
        try:
            store = ctx.need_store()
            controls = store.controls
            return JSONResponse(as_json({"mode": controls.trading_mode(), "history": controls.trading_mode_history(20),
                                         "breakers": controls.breakers(), "locks": controls.active_locks()}))
        except Refused as refused:
            return refused.answer
        except DatabaseUnavailableError:
            return error(503, "database unavailable")

    @router.post("/control", summary="Pause (exits_only, halted) or resume (active) trading, with a reason")
    async def set_control(request: Request) -> JSONResponse:
        try:
            data = await form_or_json(request)
            store = ctx.need_store()
            who = ctx.changer(request, data)
        except Refused as refused:
            return refused.answer
        except SignalValidationError as exc:
            return ctx.refuse(request, b"", 422, str(exc), exc.field)
        mode = str(data.get("mode") or "")
        if mode not in ("active", "exits_only", "halted"):
            return ctx.refuse(request, b"", 422, "mode must be active, exits_only or halted", "mode")
        reason = str(data.get("reason") or "").strip() or None
        if mode != "active" and reason is None:
            return ctx.refuse(request, b"", 422, "a reason is required to pause trading", "reason")
        try:
            changed = await run_in_threadpool(store.controls.set_trading_mode, mode, reason, who)
        except DatabaseUnavailableError:
            return error(503, "database unavailable; the mode was not changed")
        log.warning("trading mode set to %s by %s: %s", mode, who, reason or "-")
        return JSONResponse(as_json(changed))

    @router.post("/positions/{position_id}/exit", summary="Close an open layer now, as an EXIT alert would")
    async def exit_position(position_id: str, request: Request) -> JSONResponse:
        try:
            data = await form_or_json(request)
            ctx.need_store()
            who = ctx.changer(request, data)
        except SignalValidationError as exc:
            return ctx.refuse(request, b"", 422, str(exc), exc.field)
        except Refused as refused:
            return refused.answer
        instrument, _, layer = position_id.partition("_Long_")
        try:
            price = Decimal(str(data["price"])) if data.get("price") not in (None, "") else None
        except (ArithmeticError, ValueError):
            price = Decimal("NaN")
        if price is not None and (isinstance(data.get("price"), bool) or not price.is_finite() or price <= 0):
            return ctx.refuse(request, b"", 422, "price must be a positive number", "price")
        try:
            result = await run_in_threadpool(engine.manual_exit, instrument, f"Long_{layer}" if layer else "",
                                             price, str(data.get("reason") or ""))
        except SignalValidationError as exc:
            status = 404 if exc.field == "position" else 422
            return ctx.refuse(request, b"", status, str(exc), exc.field)
        except DatabaseUnavailableError:
            return error(503, "database unavailable; nothing was closed")
        log.warning("manual exit of %s by %s: %s", position_id, who, result.reason)
        return JSONResponse(result.as_dict())

    return router
