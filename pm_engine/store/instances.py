"""Engine instances and the node they reach: registration, heartbeats, leadership, health."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from pm_engine.store.executor import Executor


class InstanceQueries:
    """``store.instances``: the instance registry (HA) and what /health and /metrics report."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def register_instance(self, instance_id: str, hostname: Optional[str], port: Optional[int],
                          version: Optional[str]) -> None:
        self.executor.run("register_instance", instance_id, hostname, port, version)

    def stop_instance(self, instance_id: str) -> None:
        """A clean shutdown: shown as stopped, never swept to crashed."""
        self.executor.run("stop_instance", instance_id)

    def heartbeat(self, instance_id: str, last_signal: Optional[datetime] = None) -> None:
        """Record a heartbeat (and when this instance last processed a signal, if it has)."""
        self.executor.run("heartbeat_instance", instance_id, last_signal)

    def claim_leadership(self, instance_id: str) -> None:
        self.executor.run("claim_leadership", instance_id)

    def sweep_stale_instances(self, timeout: str = "30 seconds") -> int:
        return int(self.executor.scalar("sweep_stale_instances", timeout))

    def list_instances(self) -> list[dict[str, Any]]:
        return self.executor.run("list_instances")

    def metrics_snapshot(self) -> dict[str, Any]:
        """Mode, anomaly counts, queued orders, last signal time, open positions: one round trip."""
        return dict(self.executor.scalar("metrics_snapshot"))

    def replica_lag(self) -> dict[str, Any]:
        """{"lag_s": seconds behind the primary (0 on a primary), "standby": bool} for the node this store reads."""
        return self.executor.first("replica_lag")

    def server_node(self) -> dict[str, Any]:
        """{address, started, standby} of the node this store reaches."""
        return self.executor.first("server_node")
