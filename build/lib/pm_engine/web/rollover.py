"""``GET /rollover``: each open group's contract, roll date, days to roll and roll state, and recent rolls.

Read from the committed book and the roll tables (a roll is moved by the database as its legs end, so
this instance's memory may be behind); the same planning as the leader's check and ``pm-engine rollover``.
"""

from __future__ import annotations

from typing import Any, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from pm_engine.core.contracts import ContractCalendar
from pm_engine.core.instruments import InstrumentConfig
from pm_engine.core.statistics import as_json
from pm_engine.store.rolls import roll_overview


def rollover_router(store: Any, calendar: ContractCalendar, instruments: Mapping[str, InstrumentConfig],
                    mcx_quantity: str = "lots") -> APIRouter:
    """The route over one store (None: an in-memory engine, nothing rolls)."""
    router = APIRouter()

    @router.get("/rollover", summary="Each open group's contract, roll date, days to roll and roll state, "
                                     "and the recent rolls with their legs")
    def rollover() -> JSONResponse:
        if store is None:
            return JSONResponse({"groups": [], "problems": [], "rolls": []})
        return JSONResponse(as_json(roll_overview(store, calendar, instruments, mcx_quantity)))

    return router
