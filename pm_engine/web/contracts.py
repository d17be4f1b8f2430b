"""``GET /contracts``: per instrument the contract new orders use on a date, and the next one (read token).

The same document as ``pm-engine contracts --json``, from the engine's own calendar (its holidays
file included), so what the page says is what the engine will trade.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Optional

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pm_engine.core.contracts import ContractCalendar, ist_date, report_date
from pm_engine.core.errors import ConfigError


def contracts_router(calendar: ContractCalendar) -> APIRouter:
    """The route, bound to one engine's calendar (the read-access middleware guards it like every read)."""
    router = APIRouter()

    @router.get("/contracts", summary="Per instrument the contract new orders use on a date (?on=YYYY-MM-DD, "
                                      "IST; default today) and the next one, with any holiday-data warning")
    def contracts(on: Optional[str] = None) -> JSONResponse:
        if on is None:
            day = ist_date(datetime.now(timezone.utc))
        else:
            try:
                day = report_date(on)
            except ValueError as exc:
                return JSONResponse({"error": f"on: {exc}", "field": "on"}, status_code=422)
        try:
            return JSONResponse(calendar.report(day))
        except ConfigError as exc:  # the holidays leave no trading day near it
            return JSONResponse({"error": f"on: {exc}", "field": "on"}, status_code=422)

    return router
