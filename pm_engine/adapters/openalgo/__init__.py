"""The OpenAlgo broker adapter: an HTTP client for OpenAlgo's REST API v1 (docs/domain.md#orders-through-openalgo).

``client.OpenAlgoClient`` speaks the endpoints; ``outcomes`` classifies what a placeorder attempt
ended as (accepted, rejected, not sent, unknown) — the distinction on which "never send an order
twice" rests; ``ratelimit`` keeps the client within OpenAlgo's 10 orders per second by making
callers wait, never by failing them. Imports only the core.
"""

from pm_engine.adapters.openalgo.client import OpenAlgoClient, OpenAlgoError, OrderRequest, Secret, Timeouts
from pm_engine.adapters.openalgo.outcomes import OutcomeKind, PlaceOutcome
from pm_engine.adapters.openalgo.ratelimit import RateLimiter

__all__ = ["OpenAlgoClient", "OpenAlgoError", "OrderRequest", "OutcomeKind", "PlaceOutcome", "RateLimiter", "Secret",
           "Timeouts"]
