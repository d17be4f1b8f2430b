"""pm-engine: a PostgreSQL-backed portfolio manager for systematic futures traders.

The public Python API (README, "Python API"): the trading core's engine (``TradingEngine``), the
book and records, and the gateway to PostgreSQL (``Store``) that makes them durable. Everything
else is reached through its layer (``pm_engine.core``, ``.store``, ``.web``, ``.ops``, ``.tools``;
ARCHITECTURE.md has the map).
"""

__version__ = "0.1.0"

from pm_engine.core.engine import TradingEngine  # noqa: E402 - after __version__, which the layers read
from pm_engine.core.models import Position, Signal, SignalResult  # noqa: E402
from pm_engine.core.portfolio import Book  # noqa: E402
from pm_engine.store.gateway import Store  # noqa: E402

__all__ = ["Book", "Position", "Signal", "SignalResult", "Store", "TradingEngine", "__version__"]
