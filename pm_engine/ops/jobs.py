"""Background jobs of a live instance: heartbeats always; the leader's jobs in exactly one instance.

Every instance heartbeats (``pm.heartbeat_instance``) and proves its copy of the portfolio
current (``pm.state_if_moved``: reloaded if another instance moved it). One instance at a time is
the *leader*: the one holding a session-level PostgreSQL advisory lock on a dedicated connection.
The leader sweeps stale instances, sends outbox orders an interrupted instance left queued, and
once a day cleans the signal log (7 days) and the refused-request audit (30 days by default).
When the leader dies its connection closes, PostgreSQL releases the lock, and the next instance
to try takes over — no election protocol of our own to get wrong.

Why deleting old signal_log rows is safe: a signal older than ``max_signal_age`` (10 minutes by
default) is rejected before its fingerprint is looked at, so a fingerprint that has left the
7-day log can never be executed again.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import psycopg2

from pm_engine.core.engine import TradingEngine
from pm_engine.core.errors import DatabaseUnavailableError, PmError
from pm_engine.store.errors import NotFoundError
from pm_engine.store.gateway import Store
from pm_engine.store.queries import QUERIES

if TYPE_CHECKING:  # pragma: no cover
    from pm_engine.notify.notifier import Notifier
    from pm_engine.ops.rollover import Roller
    from pm_engine.ops.sender import OrderSender

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSettings:
    """How often each job runs (seconds) and its parameters."""

    heartbeat_s: float = 5.0
    stale_timeout: str = "30 seconds"
    queued_order_age_s: float = 10.0
    cleanup_every_s: float = 86400.0
    retention: str = "7 days"
    request_log_retention: str = "30 days"  # refused requests (the audit) are kept this long
    reconcile_every_s: float = 60.0  # the leader compares the book with the broker's positions (OpenAlgo only)
    roll_check_every_s: float = 60.0  # the leader starts the rolls that are due (during their market's hours)


class BackgroundJobs:
    """A daemon thread: heartbeat and a portfolio refresh every tick; the leader's jobs when this instance leads."""

    def __init__(self, engine: TradingEngine, settings: JobSettings = JobSettings(),
                 version: Optional[str] = None, notifier: Optional["Notifier"] = None,
                 roller: Optional["Roller"] = None, sender: Optional["OrderSender"] = None) -> None:
        from pm_engine.ops.delivery import DatabaseWatch, NotificationDelivery

        assert isinstance(engine.store, Store), "background jobs need a PostgreSQL store"
        self.engine = engine
        self.store = engine.store
        self.settings = settings
        self.version = version
        self.is_leader = False
        self.runs: dict[str, int] = {"heartbeat": 0, "sweep": 0, "queued": 0, "cleanup": 0}
        self._lock_conn: Optional[Any] = None
        self._last_cleanup = 0.0
        self._last_reconcile = -1e18  # a new leader reconciles at once
        self.roller = roller  # rollover (issue 22): None, no rolls from this instance
        self._last_roll_check = -1e18  # a new leader checks at once (and sends on a roll left pending)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pm-jobs", daemon=True)
        # notifications (issue 24): database outages told directly; the outbox drained by the leader
        self.watch = DatabaseWatch(notifier, engine.instance_id)
        self.sender = sender  # the OpenAlgo order sender the engine sends through; None: the paper broker
        paper = sender is None
        self.delivery = (NotificationDelivery(self.store, notifier, engine.instance_id, lambda: self.is_leader,
                                              paper=paper)
                         if notifier is not None and notifier.targets else None)

    def start(self) -> "BackgroundJobs":
        self._thread.start()
        if self.delivery is not None:
            self.delivery.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.delivery is not None:
            self.delivery.stop()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._release()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.settings.heartbeat_s)

    def tick(self) -> None:
        """One round: heartbeat, try to lead, run the leader's jobs. Never raises (logs instead)."""
        try:
            self._heartbeat()
            self.watch.ok(self.store)
            if self.engine.refresh():  # another instance moved the book since this one's last signal
                log.info("portfolio moved elsewhere: refreshed to version %d", self.engine.portfolio.version)
            if self._hold_lock():
                self._leader_jobs()
        except (PmError, psycopg2.Error) as exc:
            log.warning("background jobs: %s", exc)
            if isinstance(exc, (DatabaseUnavailableError, psycopg2.OperationalError)):
                self.watch.failed(exc)

    def _heartbeat(self) -> None:
        try:
            self.store.instances.heartbeat(self.engine.instance_id, self.engine.last_signal_at)
        except NotFoundError:  # the row was removed (e.g. a restored database): register again
            self.store.instances.register_instance(self.engine.instance_id, None, None, self.version)
        self.runs["heartbeat"] += 1

    def _hold_lock(self) -> bool:
        """Whether this instance holds the jobs lock, trying to take it (on a connection of its own)."""
        try:
            if self._lock_conn is None or self._lock_conn.closed:
                self.is_leader = False
                self._lock_conn = psycopg2.connect(**self.store.config.dsn_kwargs())
                self._lock_conn.autocommit = True
            with self._lock_conn.cursor() as cur:
                if self.is_leader:
                    cur.execute(QUERIES["ping"])  # the lock lives as long as this session
                    return True
                cur.execute(QUERIES["try_job_lock"])
                row = cur.fetchone()
                got = bool(row and row[0])
        except psycopg2.Error as exc:
            log.warning("background jobs: lock connection lost (%s)", str(exc).strip())
            self._release()
            return False
        if got:
            self.store.instances.claim_leadership(self.engine.instance_id)
            self.is_leader = True
            self._last_cleanup = 0.0  # a new leader cleans at once; the cleanup is idempotent
            log.info("instance %s now runs the background jobs", self.engine.instance_id)
        return got

    def _reconcile(self) -> None:
        """With a real broker, every ``reconcile_every_s``: the book against its positions (a difference locks)."""
        now = time.monotonic()
        if self.sender is None or now - self._last_reconcile < self.settings.reconcile_every_s:
            return
        self._last_reconcile = now
        try:
            self.sender.reconcile_and_record()
            self.runs["reconcile"] = self.runs.get("reconcile", 0) + 1
        except PmError as exc:  # the broker unreachable: the next round tries again
            log.warning("reconciliation: %s", exc)

    def _roll(self) -> None:
        """Every ``roll_check_every_s``: start the rolls that are due (the database carries them out).

        With the paper broker the legs fill inside the database; with OpenAlgo the sender sends them."""
        now = time.monotonic()
        if self.roller is None or now - self._last_roll_check < self.settings.roll_check_every_s:
            return
        self._last_roll_check = now
        result = self.roller.check()
        if self.sender is None:
            self.roller.fill_paper()  # its own rolls and those `pm-engine rollover` started (paper groups only)
        self.runs["roll"] = self.runs.get("roll", 0) + 1
        for problem in result.problems:
            log.warning("rollover: %s", problem)

    def _release(self) -> None:
        self.is_leader = False
        if self._lock_conn is not None and not self._lock_conn.closed:
            self._lock_conn.close()  # closing the session releases the advisory lock
        self._lock_conn = None

    def _leader_jobs(self) -> None:
        swept = self.store.instances.sweep_stale_instances(self.settings.stale_timeout)
        self.runs["sweep"] += 1
        if swept:
            log.warning("marked %d silent instance(s) as crashed", swept)
        self.engine.send_queued(self.settings.queued_order_age_s)
        self.runs["queued"] += 1
        self._reconcile()
        self._roll()
        now = time.monotonic()
        if now - self._last_cleanup >= self.settings.cleanup_every_s or self._last_cleanup == 0.0:
            deleted = self.store.signals.cleanup_signal_log(self.settings.retention)
            refusals = self.store.audit.cleanup_request_log(self.settings.request_log_retention)
            self.runs["cleanup"] += 1
            self._last_cleanup = now
            log.info("cleanup: %d signal-log row(s) older than %s and %d refused request(s) older than %s deleted",
                     deleted, self.settings.retention, refusals, self.settings.request_log_retention)
