"""``GET /contracts``: per instrument the contract new orders use on a date, and the next one (read token).

The same document as ``pm-engine contracts --json``, from the engine's own calendar (its holidays
file included), so what the page says is what the engine will trade.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Optional

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pm_engine.core.contracts import ContractCalendar, ist_date


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
                day = date.fromisoformat(on)
            except ValueError:
                return JSONResponse({"error": "on: not a date (YYYY-MM-DD)", "field": "on"}, status_code=422)
        return JSONResponse(calendar.report(day))

    return router
