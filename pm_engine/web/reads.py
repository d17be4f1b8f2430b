"""The read routes: ``/status``, the history (``/equity``, ``/trades``, ``/stats``), ``/db/status``,
``/metrics``, and the two public probes ``/health`` and ``/ready`` (docs/domain.md#in-front-of-tradingview).

Every read but the probes needs the read token (the read-access middleware). The book is shown as
committed in the database; ``reader`` (a standby) serves the history and ``/status?replica=1``.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any, Callable, Optional

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from pm_engine.core.errors import DatabaseUnavailableError
from pm_engine.core.signals import SignalValidationError, parse_timestamp
from pm_engine.core.statistics import as_json
from pm_engine.web.context import WebContext, error
from pm_engine.web.dashboard import replica_status
from pm_engine.web.orders import broker_health


def reads_router(ctx: WebContext) -> APIRouter:
    router = APIRouter()
    engine, store, reader, audit = ctx.engine, ctx.store, ctx.reader, ctx.audit

    @router.get("/status", summary="Equity, metrics and open positions, as committed in the database "
                                   "(?replica=1: from the read replica, with its lag)")
    def status(replica: bool = False) -> JSONResponse:
        try:
            if replica and reader is not None:
                return JSONResponse(as_json(replica_status(engine, reader)))
            body = engine.current_status()
            if store is not None:
                body["trading"] = store.controls.trading_mode()
                body["anomalies"] = store.controls.anomaly_counts()
        except DatabaseUnavailableError:
            return error(503, "database unavailable; the book cannot be shown as committed")
        body["outcomes"] = dict(engine.outcomes)
        body["instance_id"] = engine.instance_id
        body["broker"] = broker_health(ctx.sender) or {"state": "paper", "text": "paper broker"}
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

    @router.get("/equity", summary="Equity curve: closed, open and blended equity at each commit (?from=&to=)")
    def equity(request: Request) -> JSONResponse:
        return history(lambda store, start, end: {"points": store.history.equity_curve(start, end)}, request)

    @router.get("/trades", summary="Closed positions with P&L, initial risk and R multiple (?from=&to=)")
    def trades(request: Request) -> JSONResponse:
        return history(lambda store, start, end: {"trades": store.history.trades(start, end)}, request)

    @router.get("/stats", summary="Trade statistics and P&L by day, week and month (?from=&to=)")
    def stats(request: Request) -> JSONResponse:
        return history(lambda store, start, end: {**store.history.trade_stats(start, end), "pnl_by_period": {
            period: store.history.pnl_by_period(period, start, end) for period in ("day", "week", "month")}}, request)

    @router.get("/health", summary="200 while the process serves")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    def broker_word() -> dict[str, Any]:
        """The broker's state for the public probe: its state, the words and the time since, never its message."""
        health = broker_health(ctx.sender)
        if health is None:
            return {"state": "paper", "text": "paper broker"}
        return {key: health[key] for key in ("state", "text", "seconds_since")}

    @router.get("/ready", summary="200 when the database answers, else 503; the body also says the broker's state "
                                  "(signals are decided whatever the broker's, so it does not change the status)")
    def ready() -> JSONResponse:
        if store is None:
            return JSONResponse({"ready": True, "broker": broker_word()})
        try:
            store.ping()
        except DatabaseUnavailableError:
            return JSONResponse({"ready": False, "broker": broker_word()}, status_code=503)
        return JSONResponse({"ready": True, "broker": broker_word()})

    @router.get("/db/status", summary="Connection, pool, schema version, round-trip latency")
    def db_status() -> JSONResponse:
        if store is None:
            return JSONResponse({"connected": False, "database": "none (in memory)"})
        started = time.perf_counter()
        try:
            latency = store.ping()
            schema = store.schema_version()
        except DatabaseUnavailableError as exc:
            return JSONResponse({"connected": False, "error": str(exc)}, status_code=503)
        return JSONResponse({
            "connected": True, "database": store.config.url(), "schema_version": schema,
            "round_trip_ms": round(latency, 3), "pool": {"min": store.config.minconn, "max": store.config.maxconn},
            "checked_in_ms": round((time.perf_counter() - started) * 1000, 3),
        })

    @router.get("/metrics", summary="Prometheus metrics (text exposition format)")
    def prometheus() -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router
