"""``GET /orders`` (the order book of this portfolio) and ``GET /orders/broker`` (the broker's health).

Read routes: the read-access middleware guards them like every read. The same rows as
``pm-engine orders --json``; the health is this instance's sender's last word from the broker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional, Protocol

from fastapi import APIRouter
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from pm_engine.core.errors import PmError
from pm_engine.core.replay.states import ORDER_STATES
from pm_engine.core.signals import SignalValidationError, parse_timestamp
from pm_engine.core.statistics import as_json
from pm_engine.store.gateway import Store


class HealthView(Protocol):
    def view(self) -> dict[str, Any]: ...


class BrokerSender(Protocol):
    """What the web needs of the OpenAlgo order sender (``pm_engine.ops.sender.OrderSender``, which ``web`` may not
    import): its health and a reconciliation. The wiring hands it in; ``None`` is the paper broker."""

    @property
    def health(self) -> HealthView: ...

    def reconcile(self) -> dict[str, Any]: ...


def broker_health(sender: Optional[BrokerSender]) -> Optional[dict[str, Any]]:
    """The OpenAlgo sender's view of its broker; None for the paper broker (it has no health to report)."""
    return sender.health.view() if sender is not None else None


def orders_router(store: Optional[Store], sender: Optional[BrokerSender]) -> APIRouter:
    router = APIRouter()

    def health() -> Optional[dict[str, Any]]:
        return broker_health(sender)

    @router.get("/orders", summary="Orders newest first (?state=S, ?since=ISO time): state, fills, signal price, "
                                   "slippage, reason, attempts")
    async def orders(state: Optional[str] = None, since: Optional[str] = None) -> JSONResponse:
        if store is None:
            return JSONResponse({"error": "no database"}, status_code=503)
        if state is not None and state not in ORDER_STATES:
            return JSONResponse({"error": f"state: one of {', '.join(ORDER_STATES)}", "field": "state"},
                                status_code=422)
        when: Optional[datetime] = None
        if since is not None:
            try:
                when = parse_timestamp(since)
            except (SignalValidationError, ValueError, TypeError):
                return JSONResponse({"error": "since: not an ISO 8601 time", "field": "since"}, status_code=422)
        rows = await run_in_threadpool(store.orders.listing, state, when)
        return JSONResponse({"orders": as_json(rows), "broker": health()})

    @router.get("/orders/broker", summary="The broker's health as this instance's sender last saw it")
    def broker_state() -> JSONResponse:
        return JSONResponse(health() or {"state": "paper", "text": "paper broker (orders fill in the database)"})

    @router.get("/reconcile", summary="The book's net quantity per contract against the broker's positionbook")
    async def reconcile() -> JSONResponse:
        if sender is None:
            return JSONResponse({"error": "the paper broker has no positions to reconcile (PM_BROKER=openalgo)"},
                                status_code=409)
        try:
            return JSONResponse(await run_in_threadpool(sender.reconcile))
        except PmError as exc:  # the broker unreachable or its session expired: say so, never guess
            return JSONResponse({"error": f"broker: {exc}", "broker": health()}, status_code=503)

    return router
