"""``POST /capital`` and ``GET /capital``: deposits and withdrawals over HTTP (docs/domain.md#capital-flows).

A flow changes money, so the body is JSON only (``{"kind", "amount", "note"}``; a form or any other
Content-Type is refused with 415, and a browser cannot send JSON across sites without a preflight)
and the caller must be allowed to change things: the operator token (``Authorization: Bearer``),
or a dashboard session with its CSRF token (``X-CSRF-Token``), checked by the app's ``changer``
as for ``POST /control``. The amount is read exactly (JSON numbers as decimals, never floats); the
database (pm.record_capital_flow) decides and records, or refuses and writes nothing.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any, Callable, Optional

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from pm_engine.core.capital import CapitalRefusedError, WithdrawalRefusedError, parse_amount
from pm_engine.core.engine import TradingEngine
from pm_engine.core.errors import DatabaseUnavailableError
from pm_engine.core.intent import is_json
from pm_engine.core.signals import MAX_BODY_BYTES
from pm_engine.core.statistics import as_json
from pm_engine.store.gateway import Store

log = logging.getLogger("pm_engine.capital")
PAGE, MAX_PAGE, MAX_OFFSET = 100, 500, 100_000  # GET /capital reads a bounded page, never the whole ledger
KINDS = {"deposit": "deposit", "withdrawal": "withdrawal", "withdraw": "withdrawal"}
CAPITAL_EXAMPLE = {"kind": "deposit", "amount": "1000000.00", "note": "added from savings"}
CAPITAL_SCHEMA = {
    "type": "object", "required": ["kind", "amount"],
    "properties": {
        "kind": {"type": "string", "enum": ["deposit", "withdrawal"]},
        "amount": {"type": ["string", "number"], "description": "rupees, positive, at most two decimals"},
        "note": {"type": "string", "maxLength": 500},
        "csrf_token": {"type": "string", "description": "a session's CSRF token (or the X-CSRF-Token header)"},
    },
}


def _answer(status: int, message: str, field: Optional[str] = None) -> JSONResponse:
    return JSONResponse({"error": message, **({"field": field} if field else {})}, status_code=status)


Refuse = Callable[[Request, bytes, int, str, Optional[str]], JSONResponse]


def capital_router(engine: TradingEngine, store: Optional[Store],
                   changer: Callable[[Request, dict[str, Any]], str | JSONResponse], refuse: Refuse) -> APIRouter:
    """The capital routes. ``changer(request, body)`` names who makes a change, or answers the
    refusal (a session without its CSRF token): the app's one access rule for every POST that changes.
    ``refuse(request, raw, status, message, field)`` answers a refused POST and records it in the
    refusal audit, as every refused write is (``POST /control``, manual exits)."""
    router = APIRouter()

    @router.get("/capital", summary=f"The capital ledger (newest first), a page of it (?limit=, default "
                                    f"{PAGE}, at most {MAX_PAGE}; ?offset=, at most {MAX_OFFSET}), and its totals")
    def ledger(limit: str = str(PAGE), offset: str = "0") -> JSONResponse:
        if store is None:
            return _answer(404, "the capital ledger needs a database (this engine runs in memory)")
        if not (limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_PAGE):
            return _answer(422, f"limit must be a whole number from 1 to {MAX_PAGE}", "limit")
        if not (offset.isascii() and offset.isdigit() and int(offset) <= MAX_OFFSET):
            return _answer(422, f"offset must be a whole number from 0 to {MAX_OFFSET}", "offset")
        size, skip = int(limit), int(offset)
        try:
            flows = store.capital.capital_ledger(size, skip)
            page = {"limit": size, "offset": skip, "next_offset": skip + size if len(flows) == size else None}
            return JSONResponse(as_json({"flows": flows, **page, **store.capital.capital_totals()}))
        except DatabaseUnavailableError:
            return _answer(503, "database unavailable")

    @router.post("/capital", summary="Record a deposit or withdrawal: closed equity, equity high and sizing move by it",
                 responses={200: {"description": "recorded: the ledger row, closed equity and equity high after it"},
                            403: {"description": "a session without its CSRF token"},
                            409: {"description": "a withdrawal below the margin in use or below zero; nothing written"},
                            415: {"description": "the body is not JSON"},
                            422: {"description": "bad kind, amount or note: {\"error\", \"field\"}; nothing written"}},
                 openapi_extra={"requestBody": {"required": True, "content": {
                     "application/json": {"schema": CAPITAL_SCHEMA, "example": CAPITAL_EXAMPLE}}}})
    async def record(request: Request) -> JSONResponse:
        raw = b""

        def no(status: int, message: str, field: Optional[str] = None) -> JSONResponse:
            return refuse(request, raw, status, message, field)

        if not is_json(request.headers.get("content-type")):
            return no(415, "the body must be JSON (Content-Type: application/json)")
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return no(413, f"body is larger than {MAX_BODY_BYTES // 1024} KiB")
        try:
            data = json.loads(raw, parse_float=Decimal)
        except ValueError:
            return no(400, "the body is not valid JSON")
        if not isinstance(data, dict):
            return no(400, "the body must be a JSON object")
        who = changer(request, data)
        if isinstance(who, JSONResponse):
            return who
        if store is None:
            return _answer(404, "capital flows need a database (this engine runs in memory)")
        kind = KINDS.get(str(data.get("kind") or "").strip().lower())
        if kind is None:
            return no(422, "kind must be deposit or withdrawal", "kind")
        note = data.get("note")
        if note is not None and not isinstance(note, str):
            return no(422, "note must be text", "note")
        try:
            amount = parse_amount(data.get("amount"))
            flow = await run_in_threadpool(engine.capital_flow, kind, amount, note, who)
        except WithdrawalRefusedError as exc:
            return no(409, str(exc), exc.field)
        except CapitalRefusedError as exc:
            return no(422, str(exc), exc.field)
        except DatabaseUnavailableError:
            return _answer(503, "database unavailable; check GET /capital before recording the flow again")
        log.warning("capital %s of %s recorded by %s: closed equity now %s", kind, flow.amount, who,
                    flow.closed_equity)
        status = engine.status()
        return JSONResponse(as_json({"kind": flow.kind, "amount": flow.amount, "note": flow.note,
                                     "recorded_by": flow.recorded_by, "closed_equity": flow.closed_equity,
                                     "equity_high": status["equity_high"], "version": engine.portfolio.version}))

    return router
