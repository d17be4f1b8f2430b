"""How notifications leave a process: the leader's delivery of the outbox, and what is sent directly.

The outbox is in the database (``db/functions/75_notifications.sql``): every event row was written
in the transaction of its cause. ``NotificationDelivery`` runs on its own thread in every instance
but works only while that instance is the background-job leader (``pm_engine.ops.jobs``): each pass
claims what is due per URL (``pm.notify_take``: rows locked with SKIP LOCKED and leased to this
instance), sends, and records each result at once (``pm.notify_done``), so a leader killed mid-send
leaves at most the one message in flight unrecorded; the next leader resends it with the same
event id, marked as a resend. A URL that has had ``burst`` messages in the last minute gets the
rest as one digest. Failed sends are retried with a doubling backoff and given up after a day.
Once a day it also records the daily report (its figures: ``pm_engine.ops.daily_report``).

What the database cannot record — its own outage or failover, a process starting or stopping —
is sent directly (``Notifier.direct``) by the process that sees it, once per episode (``DatabaseWatch``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable, Optional

from pm_engine.core.errors import PmError
from pm_engine.notify.episodes import FailureEpisodes
from pm_engine.notify.messages import Event, digest, level_of, render
from pm_engine.notify.notifier import Notifier, Target
from pm_engine.ops.daily_report import build_daily_report, report_due
from pm_engine.store.gateway import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeliverySettings:
    poll_s: float = 1.0
    lease_s: float = 120.0
    batch: int = 500
    cleanup_every_s: float = 86400.0
    retention: str = "30 days"


class NotificationDelivery:
    """The leader's outbox drain and daily report (a daemon thread; idle while this instance does not lead)."""

    def __init__(self, store: Store, notifier: Notifier, instance_id: str,
                 leader: Callable[[], bool], settings: DeliverySettings = DeliverySettings(),
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), paper: bool = True) -> None:
        self.store, self.notifier, self.instance_id, self.leader = store, notifier, instance_id, leader
        self.paper = paper  # orders fill at the signal price (the paper broker); else order_filled tells the fill
        self.settings = settings
        self.clock = clock
        self.sent = 0
        self.failed = 0
        self._reported: Optional[date] = None
        self._last_cleanup = 0.0
        self.episodes = FailureEpisodes(log)  # a URL's failures: one line per episode, a reminder at most hourly
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pm-notify", daemon=True)

    def start(self) -> "NotificationDelivery":
        if self.notifier.targets:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=15)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self.leader():
                try:
                    self.run_once()
                except PmError as exc:
                    log.warning("notifications: %s", exc)
            self._stop.wait(self.settings.poll_s)

    def run_once(self) -> int:
        """One pass: the daily report when due, then every due delivery; returns the messages sent."""
        self._daily_report()
        self._cleanup()
        s = self.notifier.settings
        rows = self.store.notifications.notify_take(
            [{"key": t.key, "scheme": t.scheme} for t in self.notifier.targets], sorted(self.notifier.events),
            self.instance_id, self.settings.lease_s, self.settings.batch, s.burst, s.give_up_hours)
        by_target: dict[str, list[Event]] = {}
        recent: dict[str, int] = {}
        for row in rows:
            by_target.setdefault(row["target_key"], []).append(
                Event(int(row["event_id"]), row["kind"], row["level"], row["created_at"], row["data"] or {},
                      bool(row["resend"])))
            recent[row["target_key"]] = int(row["recent_messages"])
        messages = 0
        for target in self.notifier.targets:
            events = by_target.get(target.key, [])
            if events:
                messages += self._deliver(target, events, s.burst - recent[target.key])
        return messages

    def _deliver(self, target: Target, events: list[Event], budget: int) -> int:
        if len(events) > budget:  # a burst: everything claimed goes out as one digest
            title, body = digest(events, self.notifier.settings.burst)
            if not self.leader():
                return 0
            result = self.notifier.send(target, title, body, level_of(events))
            self._record([(e, result.ok, result.error) for e in events], target, digest_id=events[0].id)
            return 1 if result.ok else 0
        sent = 0
        for n, event in enumerate(events):
            if not self.leader() or self._stop.is_set():
                break  # the claims stay leased; whoever leads next takes them over
            title, body = render(event, self.paper)
            result = self.notifier.send(target, title, body, event.level)
            if not result.ok:  # the service is down: the rest wait for their backoff too, untried
                self._record([(e, False, result.error if e is event else f"not tried: {result.error}")
                              for e in events[n:]], target)
                break
            self._record([(event, True, None)], target)
            sent += 1
        return sent

    def _record(self, outcomes: list[tuple[Event, bool, Optional[str]]], target: Target,
                digest_id: Optional[int] = None) -> None:
        s = self.notifier.settings
        self.store.notifications.notify_done(
            [{"event_id": e.id, "target_key": target.key, "ok": ok, "error": error, "digest_id": digest_id}
             for e, ok, error in outcomes], self.instance_id, s.retry_s, s.retry_max_s)
        for _, ok, error in outcomes:
            if ok:
                self.sent += 1
            else:
                self.failed += 1
        if any(not ok for _, ok, _ in outcomes):
            self.episodes.failed(target.label, next(error for _, ok, error in outcomes if not ok))
        else:
            self.episodes.delivered(target.label)

    def _daily_report(self) -> None:
        if not self.notifier.wants("daily_report"):
            return
        now = self.clock()
        day, moment = report_due(now, self.notifier.settings.report_time)
        if self._reported == day or now - moment > timedelta(hours=12):
            return
        report = build_daily_report(self.store, day, now)
        self.store.notifications.record_notification(  # once per day, whichever leader gets there first
            "daily_report", {"day": day.isoformat(), "text": report.text()}, day.isoformat())
        self._reported = day

    def _cleanup(self) -> None:
        now = time.monotonic()
        if self._last_cleanup and now - self._last_cleanup < self.settings.cleanup_every_s:
            return
        deleted = self.store.notifications.cleanup_notifications(self.settings.retention)
        self._last_cleanup = now
        if deleted:
            log.info("notifications: %d event(s) older than %s deleted", deleted, self.settings.retention)


class DatabaseWatch:
    """The database's outage episodes as one process sees them: one message when one starts, one when it ends.

    ``failed`` on every failed job tick, ``ok`` on every good one; only the first failure of an
    episode and the first success after it send anything. The node the store reaches is compared
    across the episode, so a failover (another node now primary) reads as one.
    """

    def __init__(self, notifier: Optional[Notifier], instance_id: str) -> None:
        self.notifier, self.instance_id = notifier, instance_id
        self.down_since: Optional[datetime] = None
        self.node: Optional[dict[str, Any]] = None
        self.episodes = 0

    def failed(self, error: Exception) -> None:
        if self.down_since is not None:
            return
        self.down_since = datetime.now(timezone.utc)
        self.episodes += 1
        if self.notifier is not None:
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            self.notifier.direct("database", f"pm-engine: database unreachable from {self.instance_id}",
                                 f"since {self.down_since:%Y-%m-%d %H:%M:%S} UTC: {first_line}")

    def ok(self, store: Store) -> None:
        if self.node is not None and self.down_since is None:
            return
        try:
            node = store.instances.server_node()
        except PmError:
            return
        before, since = self.node, self.down_since
        self.node, self.down_since = node, None
        if since is None or self.notifier is None:
            return  # the first look at the node, at start
        seconds = (datetime.now(timezone.utc) - since).total_seconds()
        if before is not None and before.get("address") != node.get("address"):
            what = f"failed over: the primary is now {node.get('address')}"
        elif before is not None and before.get("started") != node.get("started"):
            what = "restarted"
        else:
            what = "reachable again"
        self.notifier.direct("database", f"pm-engine: database {what.split(':')[0]}",
                             f"{self.instance_id}: database {what} after about {seconds:.0f} s")
