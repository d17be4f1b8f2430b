"""Prometheus metrics (``GET /metrics``, behind the read token, or ``live --metrics-port`` on loopback).

What happens in this process is counted as it happens (signals by outcome, webhook latency,
refusals by status); what belongs to the whole portfolio is read from the database at scrape time
in one round trip (``pm.metrics_snapshot``), so every instance reports the same mode, anomalies
and pending orders, plus one for the notification counts and one ``SELECT 1`` for the round-trip gauge.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable, Iterator, Optional

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pm_engine.core.engine import TradingEngine
from pm_engine.core.errors import PmError
from pm_engine.store.gateway import Store
from pm_engine.web.orders import BrokerSender

MODES = ("active", "exits_only", "halted")
ANOMALY_KINDS = ("exit_never_open", "pyramid_without_base", "pyramid_skips_layer", "entry_while_base_open")
OUTCOMES = ("executed", "blocked", "duplicate")
NOTIFICATION_STATES = ("sent", "failed", "retrying", "given_up", "pending", "sending", "filtered")
REFUSALS = ("400", "401", "403", "413", "422", "429", "503")
BROKER_STATES = ("ok", "session_expired", "unreachable", "slow", "error", "unknown")


class Metrics:
    """The registry of one app: counters it updates, and a collector for what the database knows."""

    def __init__(self, engine: TradingEngine, store: Optional[Store],
                 leader: Callable[[], bool] = lambda: False, sender: Optional[BrokerSender] = None) -> None:
        self.registry = CollectorRegistry()
        self.signals = Counter("pm_signals", "Signals answered by this instance, by outcome", ["outcome"],
                               registry=self.registry)
        self.latency = Histogram("pm_webhook_latency_seconds", "Time to answer a webhook (accepted or refused)",
                                 registry=self.registry,
                                 buckets=(0.001, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.refusals = Counter("pm_refusals", "Webhooks refused by this instance, by HTTP status", ["status"],
                                registry=self.registry)
        for outcome in OUTCOMES:  # every series exists from the start, with a value
            self.signals.labels(outcome)
        for status in REFUSALS:
            self.refusals.labels(status)
        self.registry.register(_PortfolioCollector(engine, store, leader, sender))


class _PortfolioCollector(Collector):
    def __init__(self, engine: TradingEngine, store: Optional[Store],
                 leader: Callable[[], bool], sender: Optional[BrokerSender]) -> None:
        self.engine, self.store, self.leader, self.sender = engine, store, leader, sender

    def collect(self) -> Iterator[Metric]:
        portfolio = self.engine.portfolio
        yield _gauge("pm_closed_equity_rupees", "Closed equity (as this instance last saw it)",
                     float(portfolio.closed_equity))
        yield _gauge("pm_open_equity_rupees", "Open equity (as this instance last saw it)",
                     float(portfolio.open_equity()))
        yield _gauge("pm_leader", "1 if this instance runs the background jobs", 1.0 if self.leader() else 0.0)
        yield from self._broker()
        if self.store is None:
            return
        yield _gauge("pm_pool_connections_in_use", "Database connections handed out by the pool",
                     float(self.store.pool_in_use()))
        try:
            started = time.perf_counter()
            snapshot = self.store.instances.metrics_snapshot()
            round_trip = time.perf_counter() - started
        except PmError:
            yield _gauge("pm_database_up", "1 if the database answered this scrape", 0.0)
            return
        yield _gauge("pm_database_up", "1 if the database answered this scrape", 1.0)
        yield _gauge("pm_database_round_trip_seconds", "One round trip to the database, measured at this scrape",
                     round_trip)
        mode = GaugeMetricFamily("pm_trading_mode", "1 for the trading mode in force", labels=["mode"])
        for name in MODES:
            mode.add_metric([name], 1.0 if snapshot["mode"] == name else 0.0)
        yield mode
        anomalies = GaugeMetricFamily("pm_anomalies", "Anomalies recorded, by kind (whole portfolio)",
                                      labels=["kind"])
        for kind in ANOMALY_KINDS:
            anomalies.add_metric([kind], float(snapshot["anomalies"].get(kind, 0)))
        yield anomalies
        yield _gauge("pm_orders_pending", "Broker orders committed and not yet sent", float(snapshot["orders_pending"]))
        notifications = GaugeMetricFamily("pm_notifications", "Notification deliveries (one per event and URL) by "
                                          "state: sent, failed (= retrying + given_up), retrying (failed, will "
                                          "retry), given_up, pending, sending, filtered (whole portfolio)",
                                          labels=["state"])
        try:
            counts = self.store.notifications.notification_counts()
        except PmError:
            counts = {}
        for state in NOTIFICATION_STATES:
            notifications.add_metric([state], float(counts.get(state, 0)))
        yield notifications
        last = snapshot.get("last_signal_at")
        since = (datetime.now(timezone.utc) - datetime.fromisoformat(last)).total_seconds() if last else -1.0
        yield _gauge("pm_seconds_since_last_signal", "Seconds since any instance logged a signal (-1: never)", since)

    def _broker(self) -> Iterator[Metric]:
        """The broker as this instance's sender last saw it (nothing for the paper broker)."""
        if self.sender is None:
            return
        view = self.sender.health.view()
        state = GaugeMetricFamily("pm_broker_state", "1 for the broker state this instance's sender last saw: ok, "
                                  "session_expired, unreachable, slow (a call waiting or past its deadline), error, "
                                  "unknown (not yet contacted)", labels=["state"])
        for name in BROKER_STATES:
            state.add_metric([name], 1.0 if view["state"] == name else 0.0)
        yield state
        since = view["seconds_since"]
        yield _gauge("pm_broker_state_seconds", "Seconds since the broker entered its current state (-1: never "
                     "contacted)", float(since) if since is not None else -1.0)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
