"""Notifications (migration 010): the delivery queue's named queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Optional

from pm_engine.store.codec import dumps, loads
from pm_engine.store.executor import Executor


class NotificationQueries:
    """``store.notifications``: record, claim, finish and list notification deliveries."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor

    def notify_take(self, targets: list[dict[str, str]], kinds: list[str], instance_id: str, lease_s: float,
                    limit: int, burst: int, give_up_hours: float) -> list[dict[str, Any]]:
        """Claim the deliveries due now (pm.notify_take); their data documents decoded."""
        rows = self.executor.run("notify_take", dumps(targets), kinds, instance_id, f"{lease_s} seconds", limit,
                                 burst, f"{give_up_hours} hours")
        for row in rows:
            if isinstance(row["data"], str):
                row["data"] = loads(row["data"])
        return rows

    def notify_done(self, results: list[dict[str, Any]], instance_id: str, retry_s: float, retry_max_s: float) -> int:
        return int(self.executor.scalar("notify_done", dumps(results), instance_id, f"{retry_s} seconds",
                                        f"{retry_max_s} seconds"))

    def record_notification(self, kind: str, data: dict[str, Any], dedup_key: Optional[str] = None) -> Optional[int]:
        value = self.executor.scalar("record_notification", kind, dumps(data), dedup_key)
        return None if value is None else int(value)

    def notification_log(self, since: Optional[datetime] = None, limit: int = 200) -> list[dict[str, Any]]:
        return self.executor.run("notification_log", since, limit)

    def notification_counts(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.executor.scalar("notification_counts").items()}

    def cleanup_notifications(self, retention: str = "30 days") -> int:
        return int(self.executor.scalar("cleanup_notifications", retention))
