"""Store: the gateway to pm-engine's PostgreSQL schema, one executor and one facade per family.

Integrity lives in PostgreSQL (versions, fingerprint claims, checks, state machines); Python sends
named queries (``queries.sql``) through the executor (pool, retry, SQLSTATE mapping) and reaches
each family through its facade: ``store.book`` (positions, portfolio, pyramiding, the signal's
commit: core.state_store.StateStore), ``store.signals``, ``store.controls``, ``store.audit``,
``store.capital``, ``store.notifications``, ``store.instances``, ``store.history``,
``store.orders`` and ``store.rolls``. The facades share the store's pool and its round-trip count.
"""

from __future__ import annotations

import time
from typing import Callable

from pm_engine.store.audit import AuditQueries
from pm_engine.store.book import BookStore
from pm_engine.store.capital import CapitalQueries
from pm_engine.store.connection import DatabaseConfig
from pm_engine.store.controls import ControlQueries
from pm_engine.store.executor import CONNECT_ATTEMPTS, Executor
from pm_engine.store.history import HistoryQueries
from pm_engine.store.instances import InstanceQueries
from pm_engine.store.notifications import NotificationQueries
from pm_engine.store.orders import OrderQueries
from pm_engine.store.rolls import RollQueries
from pm_engine.store.signals import SignalQueries


class Store(Executor):
    """The executor with its facades: what the engine, the web layer, the jobs and the tools are given."""

    def __init__(self, config: DatabaseConfig, connect_backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep, connect_attempts: int = CONNECT_ATTEMPTS) -> None:
        super().__init__(config, connect_backoff, sleep, connect_attempts)
        self.book = BookStore(self)
        self.signals = SignalQueries(self)
        self.controls = ControlQueries(self)
        self.audit = AuditQueries(self)
        self.capital = CapitalQueries(self, self.book.forget_portfolio)
        self.notifications = NotificationQueries(self)
        self.instances = InstanceQueries(self)
        self.history = HistoryQueries(self)
        self.orders = OrderQueries(self)
        self.rolls = RollQueries(self)
