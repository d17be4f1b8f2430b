"""The operator dashboard (``GET /``), its login page, its data, and API docs that work offline.

Server-rendered with Jinja2; one small script (``static/app.js``) refreshes the page from
``GET /dashboard/data`` every few seconds and posts the Pause / Exits only / Resume and Exit
buttons with the session's CSRF token. Every asset is served by the app itself — the page, its
script and style, and Swagger UI and ReDoc from the ``fastapi_offline`` package — so it works on a
machine that reaches nothing but TradingView.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from pm_engine.core.engine import TradingEngine
from pm_engine.core.status import render_status
from pm_engine.core.portfolio import Book
from pm_engine.core.errors import DatabaseUnavailableError
from pm_engine.core.statistics import as_json
from pm_engine.store.gateway import Store
from pm_engine.store.rolls import roll_overview
from pm_engine.web.access import SESSION_COOKIE, Access
from pm_engine.web.orders import BrokerSender, broker_health

HERE = Path(__file__).parent
VENDOR = Path(fastapi_offline.__file__).parent / "static"  # swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
RANGES = {"day": timedelta(days=1), "week": timedelta(days=7), "month": timedelta(days=31), "all": None}
REFRESH_MS = 3000
DEFAULT_RANGE = "month"
ORDERS_SHOWN = 20  # the newest orders in the dashboard's panel (pm-engine orders and GET /orders list them all)
LATEST_ANOMALIES = 50  # the newest anomalies of 24 h in the page; anomaly_counts counts them all (by kind)
CHART_POINTS = 600  # the chart's width in the page's SVG units: more points than this draw nothing more
MAX_CHART_POINTS = 4000
# the dashboard's own pages load nothing from anywhere else, and run no inline script
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def replica_status(engine: TradingEngine, reader: Store) -> dict[str, Any]:
    """GET /status's body as the read replica has it, with how far it lags (it may be behind the primary)."""
    book = Book(engine.config, engine.instruments)
    book.load(reader.book.load_state())
    return {**render_status(book), "replica": reader.instances.replica_lag()}


def add_dashboard(app: FastAPI, engine: TradingEngine, store: Optional[Store],
                  access: Access, replica: bool = False, sender: Optional[BrokerSender] = None) -> None:
    """Register ``/``, ``/login`` (the page), ``/dashboard/data``, ``/docs``, ``/redoc`` and ``/static``.

    ``store`` is where the dashboard reads; with ``replica`` it is a standby (DATABASE_READ_URL), so the
    book comes from it too and its replay lag is shown; decisions never read from it.
    """
    templates = Jinja2Templates(directory=str(HERE / "templates"))

    def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
        answer = templates.TemplateResponse(request, name, context, status_code=status)
        answer.headers["Content-Security-Policy"] = PAGE_POLICY
        answer.headers["X-Frame-Options"] = "DENY"
        return answer

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request) -> HTMLResponse:
        return page(request, "login.html", {"error": None})

    app.state.login_failed = lambda request, message: page(request, "login.html", {"error": message}, 401)

    @app.get("/", include_in_schema=False)
    def dashboard(request: Request) -> Response:
        session = request.cookies.get(SESSION_COOKIE) if getattr(request.state, "principal", "") == "session" else None
        try:
            mode = store.controls.trading_mode()["mode"] if store is not None else "active"
        except DatabaseUnavailableError:
            return JSONResponse({"error": "database unavailable; the dashboard cannot show the book"}, 503)
        return page(request, "dashboard.html", {"csrf": access.csrf_token(session) if session else "",
                                                "session": session is not None, "mode": mode,
                                                "refresh_ms": REFRESH_MS})

    @app.get("/dashboard/data", summary="Everything the dashboard shows, in one document "
                                        "(?range=day|week|month|all, default month; ?points=N: the equity curve cut "
                                        f"to about N points, default {CHART_POINTS})")
    async def data(request: Request) -> Response:
        chosen = request.query_params.get("range", DEFAULT_RANGE)
        if chosen not in RANGES:
            return JSONResponse({"error": "range must be day, week, month or all", "field": "range"}, 422)
        points = request.query_params.get("points", str(CHART_POINTS))
        if not points.isdigit() or not 2 <= int(points) <= MAX_CHART_POINTS:
            return JSONResponse({"error": f"points must be a whole number from 2 to {MAX_CHART_POINTS}",
                                 "field": "points"}, 422)
        try:
            return JSONResponse(as_json(await run_in_threadpool(collect, chosen, int(points))))
        except DatabaseUnavailableError:
            return JSONResponse({"error": "database unavailable"}, 503)

    def collect(chosen: str, points: int = CHART_POINTS) -> dict[str, Any]:
        status = replica_status(engine, store) if replica and store is not None else engine.current_status()
        broker = broker_health(sender) or {"state": "paper", "text": "paper broker", "seconds_since": None}
        if store is None:
            return {"status": status, "mode": {"mode": "active", "changed_by": "-", "changed_at": None},
                    "locks": [], "signals": [], "refusals": [], "anomalies": [], "anomaly_counts": {}, "instances": [],
                    "curve": [],
                    "trades": [], "pnl": {}, "stats": {}, "capital": [], "rollover": [], "orders": [],
                    "broker": broker}
        span = RANGES[chosen]
        start: Optional[datetime] = datetime.now(timezone.utc) - span if span else None
        day_ago = datetime.now(timezone.utc) - timedelta(hours=24)
        return {
            "status": status, "mode": store.controls.trading_mode(), "locks": store.controls.active_locks(),
            "signals": store.signals.recent_signals(50), "refusals": store.audit.refusals(day_ago, 50),
            "anomalies": store.controls.anomalies(day_ago, LATEST_ANOMALIES),
            "anomaly_counts": store.controls.anomaly_counts(day_ago), "instances": store.instances.list_instances(),
            "curve": store.history.equity_curve_sampled(start, None, max(1, points // 2)),
            "stats": store.history.trade_stats(start, None),
            "trades": list(reversed(store.history.trades(start, None)))[:50],
            "pnl": {period: list(reversed(store.history.pnl_by_period(period, start, None)))
                    for period in ("day", "week", "month")},
            "capital": store.capital.capital_ledger(10),
            # each group's contract, days to roll and roll state (issue 22)
            "rollover": roll_overview(store, engine.contracts, engine.instruments, engine.mcx_quantity)["groups"],
            "orders": store.orders.listing(None, None, ORDERS_SHOWN), "broker": broker,
        }

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="pm-engine API",
                                   swagger_js_url="/static/vendor/swagger-ui-bundle.js",
                                   swagger_css_url="/static/vendor/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg")

    @app.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title="pm-engine API", redoc_js_url="/static/redoc.js",
                              redoc_favicon_url="/static/favicon.svg", with_google_fonts=False)

    redoc_bundle: list[bytes] = []

    @app.get("/static/redoc.js", include_in_schema=False)
    def redoc_js() -> Response:
        """ReDoc's bundle with its one outside address (the "API docs by Redocly" logo) pointed at our icon."""
        if not redoc_bundle:
            text = (VENDOR / "redoc.standalone.js").read_bytes()
            redoc_bundle.append(text.replace(REDOC_LOGO, b"/static/favicon.svg"))
        return Response(redoc_bundle[0], media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    # mounted last: the routes above (/static/redoc.js) come first
    app.mount("/static/vendor", StaticFiles(directory=str(VENDOR)), name="vendor")
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
