"""The HTTP interface (docs/domain.md#engine-flows): the app around one engine, assembled from routers.

Each concern is a router module: the webhook (``web/webhook.py``), the reads and probes
(``web/reads.py``), login sessions (``web/sessions.py``), the operator's controls
(``web/controls.py``), capital flows, contracts, orders and reconciliation, and the dashboard.
They share one ``WebContext`` (``web/context.py``). Every request first passes ``web/guard.py``:
Host allow-list, cross-site refusal, allow-list and body cap before the body; every route but
``/webhook``, ``/health`` and ``/ready`` needs the read/operator token (``web/access.py``).
"""

from __future__ import annotations

from typing import Callable, Optional

from fastapi import FastAPI

from pm_engine import __version__
from pm_engine.core.engine import TradingEngine
from pm_engine.store.audit import RefusalAudit
from pm_engine.store.gateway import Store
from pm_engine.web.access import Access, FailureWindows, MemorySessions
from pm_engine.web.capital import capital_router
from pm_engine.web.context import WebContext, WebSettings, error
from pm_engine.web.contracts import contracts_router
from pm_engine.web.controls import controls_router
from pm_engine.web.dashboard import add_dashboard
from pm_engine.web.guard import Guard, ReadAccess, Refusals
from pm_engine.web.metrics import Metrics
from pm_engine.web.orders import BrokerSender, orders_router
from pm_engine.web.reads import reads_router
from pm_engine.web.rollover import rollover_router
from pm_engine.web.sessions import sessions_router
from pm_engine.web.webhook import WEBHOOK_EXAMPLE, WEBHOOK_SCHEMA, webhook_router

__all__ = ["WEBHOOK_EXAMPLE", "WEBHOOK_SCHEMA", "WebSettings", "create_app", "error"]


def create_app(engine: TradingEngine, web: WebSettings, audit: Optional[RefusalAudit] = None,
               leader: Callable[[], bool] = lambda: False, reader: Optional[Store] = None,
               sender: Optional[BrokerSender] = None) -> FastAPI:
    """The app around one engine: the webhook, the protected read routes, the operator's controls, the
    dashboard and the metrics (``app.state.metrics``; ``leader`` tells whether this instance leads). ``reader``
    (DATABASE_READ_URL, a standby) serves the reads that may lag: the dashboard, history, /status?replica=1.
    ``sender``: the OpenAlgo order sender the engine sends through (its health, reconciliation); None: paper."""
    store = engine.store if isinstance(engine.store, Store) else None
    app = FastAPI(title="pm-engine", version=__version__,
                  description="Portfolio manager for systematic futures traders: TradingView webhook, status, "
                              "history, trading controls. Every route but POST /webhook, GET /health and GET /ready "
                              "needs the read/operator token (Authorization: Bearer) or a login session.",
                  docs_url=None, redoc_url=None)  # served offline by web/dashboard.py
    metrics = app.state.metrics = Metrics(engine, store, leader, sender)
    ctx = WebContext(engine=engine, web=web, store=store, reader=reader, audit=audit,
                     access=Access(web.read_token, web.session_hours * 3600,
                                   sessions=store.audit if store is not None else MemorySessions()),
                     metrics=metrics, refusals=Refusals(audit, metrics, (web.secret, web.read_token)),
                     failures=FailureWindows(), token_failures=FailureWindows(), sender=sender)

    app.add_middleware(ReadAccess, access=ctx.access, token_set=web.read_token is not None, refusals=ctx.refusals,
                       tokens=ctx.token_failures)
    app.add_middleware(Guard, refusals=ctx.refusals, allowed_ips=web.allowed_ips, allowed_hosts=web.allowed_hosts)

    app.include_router(webhook_router(ctx))
    app.include_router(reads_router(ctx))
    app.include_router(sessions_router(ctx))
    app.include_router(controls_router(ctx))
    app.include_router(contracts_router(engine.contracts))
    app.include_router(orders_router(store, sender))
    app.include_router(rollover_router(store, engine.contracts, engine.instruments, engine.mcx_quantity))
    app.include_router(capital_router(engine, store, ctx.changer_or_refusal, ctx.refuse))
    add_dashboard(app, engine, reader or store, ctx.access, replica=reader is not None,
                  sender=sender)  # pages, docs, static
    return app
