"""The broker sender: takes queued orders from the database to OpenAlgo, off the webhook's path.

The webhook commits a signal's orders as ``queued`` and answers; it never waits for the broker. Three
kinds of thread (one set per instance; the database decides who sends what), so that no broker call,
however slow, holds up what does not depend on it:

* the housekeeper (``pm-broker``), which never calls the broker, so its clock is kept whatever a call
  does: queued entries older than ``max_order_age`` are expired ("market closed" when their exchange is closed
  now, else "the market moved"; exits never are);
  attempts begun long ago and still ``sending`` become ``unknown`` (their sender died mid-request);
  the broker's health is told; and the sendable orders are handed to the workers;
* the workers (``pm-broker-send``, ``send_workers`` of them): one position's orders per job, in order,
  so a call stuck on one position holds up no other position's orders (a layer's exit still waits
  for its own entry to settle: ``pm.sendable_orders`` does not offer it before). Each order is
  committed ``sending`` before its request leaves and its answer recorded through the order state
  machine, never sent again once it may have reached the broker (``ops/placing.py``: ``OrderPlacer``);
* the follower (``pm-broker-follow``): orders at the broker are followed in its order and trade books,
  fills, rejections, cancellations and ``unknown`` orders resolved (``ops/following.py``: ``BookFollower``).

This module holds the threads and the dispatch; the per-order sending and the following of the books
are the two modules named above, and what the answers say of the broker is ``ops/broker_health.py``.

Every broker call has a total deadline (``adapters/openalgo/client.py``); a call in flight longer
than ``slow_after_s`` makes the health "broker slow / not answering" at once, before it ends.
``tick()`` is one whole round on the caller's thread (housekeeping, the sends, following), for tests.

Everything is in the database, so a crash in any state resumes on restart or on another instance.

What the broker's answers say of the broker itself (``BrokerHealth``: the session expired, the broker
unreachable, or fine again) is reported to ``pm.record_broker_session`` when it changes: the database
keeps the state last reported by any instance, so each episode is one notification when it begins and
one when it ends. The leader's reconciliation (every minute) asks the broker even when nothing trades,
so a session that expires overnight is told then, not at the next order. An unreachable broker is an
episode once it lasts ``unreachable_after_s`` (one refused connection is not worth a message).
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from functools import partial
from typing import Any, Callable, Optional

import psycopg2

from pm_engine.adapters.openalgo import OpenAlgoClient, OpenAlgoError
from pm_engine.core.errors import PmError
from pm_engine.core.market_hours import SESSIONS, MarketHours, SendWindow
from pm_engine.core.orders import Fill, Order
from pm_engine.core.reconcile import compare
from pm_engine.ops.broker_health import BrokerHealth
from pm_engine.ops.following import BookFollower
from pm_engine.ops.placing import OrderPlacer
from pm_engine.store.gateway import Store

log = logging.getLogger(__name__)
IDENTITY_EVERY_S = 60.0  # how often the restore guard is asked (pm.check_database_identity)


@dataclass(frozen=True)
class SenderSettings:
    poll_s: float = 0.5  # a round at least this often (a committed order wakes it at once)
    max_order_age_s: float = 120.0
    review_after_s: float = 60.0
    abandoned_after_s: float = 30.0  # longer than any request's timeout: a 'sending' this old lost its sender
    guard_base_pct: Optional[Decimal] = None  # the price guard (issue 21): off unless set
    guard_pyramid_pct: Optional[Decimal] = None
    unreachable_after_s: float = 30.0  # a broker unreachable this long is told (notification broker_session)
    reassert_s: float = 60.0  # a state seen afresh is reported again this often (another instance may differ)
    send_workers: int = 4  # positions whose orders are sent at once: one stuck call holds up no other position
    slow_after_s: float = 3.0  # a broker call waiting this long: "broker slow / not answering" while it waits


class OrderSender:
    """The live engine's broker: ``place_orders`` only wakes the thread (the orders are queued in the database)."""

    def __init__(self, store: Store, client: OpenAlgoClient, hours: MarketHours,
                 settings: SenderSettings = SenderSettings(), mcx_in_lots: bool = True,
                 instance_id: str = "broker-sender",
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.store = store
        self.clock = clock  # market hours are judged on it (tests set the time of day)
        self.instance_id = instance_id
        self._told: Optional[str] = None  # the broker state this sender last reported to the database
        self._identity_at: Optional[float] = None  # when the restore guard was last asked (monotonic)
        self._held_told = 0  # the held orders last said in the log (said again only when the count changes)
        self._told_at: Optional[datetime] = None
        self._telling = threading.Lock()
        self.mcx_in_lots = mcx_in_lots
        self.states = store.orders
        self.client = client
        self.hours = hours
        self.settings = settings
        self.health = BrokerHealth(waiting=client.oldest_call_s, slow_after_s=settings.slow_after_s)
        self.rounds = 0
        self._wake = threading.Event()
        self._follow_wake = threading.Event()  # set after a send: its fill is looked for at once, not a poll later
        self._stop = threading.Event()
        self.placer = OrderPlacer(self.states, client, hours, self.health, self._now, settings.guard_base_pct,
                                  settings.guard_pyramid_pct)
        self.follower = BookFollower(self.states, client, self.health, settings.review_after_s)
        self._thread = threading.Thread(target=self._loop, name="pm-broker", daemon=True)
        self._follow_thread = threading.Thread(target=self._follow_loop, name="pm-broker-follow", daemon=True)
        self._workers = ThreadPoolExecutor(max(1, settings.send_workers), thread_name_prefix="pm-broker-send")
        self._busy: set[str] = set()  # positions a worker is sending for
        self._busy_lock = threading.Lock()

    def _now(self) -> datetime:
        return self.clock()  # read at each call: the clock is the sender's (tests and replays set it)

    # -- the Broker interface ---------------------------------------------------------------------
    def place_orders(self, orders: list[Order]) -> list[Fill]:
        """Committed orders are queued in the database already: wake the sender; fills come later."""
        self._wake.set()
        return []

    def window(self) -> Optional[SendWindow]:
        """The hours and entry age the engine's answers describe (None when always open: nothing to say)."""
        return None if self.hours.always else SendWindow(self.hours, self.settings.max_order_age_s)

    def start(self) -> "OrderSender":
        self._thread.start()
        self._follow_thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._follow_wake.set()
        for thread in (self._thread, self._follow_thread):
            if thread.is_alive():
                thread.join(timeout=15)
        # a call in flight ends by its own deadline, and its answer is recorded before the pool closes
        self._workers.shutdown(wait=True, cancel_futures=True)

    def _loop(self) -> None:
        """The housekeeper: never calls the broker, so expiry, abandonment and health keep their clock."""
        while not self._stop.is_set():
            self._wake.clear()
            self._safely(self._housekeep)
            self._dispatch()
            self.rounds += 1
            self.tell_health()
            self._wake.wait(self.settings.poll_s)

    def _follow_loop(self) -> None:
        while not self._stop.is_set():
            self._follow_wake.clear()  # before reading the books: a send meanwhile asks for another look
            self._safely(self.follower.follow)
            self.tell_health()
            self._follow_wake.wait(self.settings.poll_s)

    def tick(self) -> None:
        """One whole round on this thread, the sends waited for; never raises (a database or broker outage is
        logged and the next round tries again)."""
        self._safely(self._housekeep)
        for future in self._dispatch():
            future.result()
        self._safely(self.follower.follow)
        self.rounds += 1
        self.tell_health()

    @staticmethod
    def _safely(step: Callable[[], None]) -> None:
        try:
            step()
        except (PmError, psycopg2.Error) as exc:
            log.warning("broker sender: %s", exc)

    def _housekeep(self) -> None:
        self._check_identity()  # first: until the restore guard has answered once, nothing is handed out
        now = self.clock()
        closed = [exchange for exchange in SESSIONS if not self.hours.is_open(exchange, now)]
        for row in self.states.expire_stale_entries(self.settings.max_order_age_s, closed):
            log.warning("order %s expired: %s", row["client_order_id"], row["reason"])
        abandoned = self.states.abandon_sending(self.settings.abandoned_after_s)
        if abandoned:
            log.warning("%d order(s) left in 'sending' by a stopped sender are now unknown", abandoned)

    def _check_identity(self) -> None:
        """The restore guard, at the first round and then once a minute: a database restored into another cluster
        holds the orders queued before (the database skips them in ``sendable``); said once per count."""
        now = time.monotonic()
        if self._identity_at is not None and now - self._identity_at < IDENTITY_EVERY_S:
            return
        held = int(self.states.check_identity().get("held_orders") or 0)
        self._identity_at = now  # only once it answered: a failed check is asked again at the next round
        if held and held != self._held_told:
            log.warning("this database was restored from a backup into another cluster: %d queued order(s) from "
                        "before are held, not sent; compare them with the broker (`pm-engine orders --state "
                        "queued`, `pm-engine reconcile`), then `pm-engine orders release-restored`", held)
        self._held_told = held

    def _dispatch(self) -> list["Future[None]"]:
        """Hand the sendable orders to the workers: one job per position (its orders in their order), none for a
        position a worker is still sending for, at most ``send_workers`` at once (the rest wait for a round)."""
        if self._identity_at is None:  # the restore guard has not answered yet (a database error): send nothing
            return []
        try:
            rows = self.states.sendable()
        except (PmError, psycopg2.Error) as exc:
            log.warning("broker sender: %s", exc)
            return []
        jobs: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            jobs.setdefault(str(row.get("position_id") or row["client_order_id"]), []).append(row)
        futures: list["Future[None]"] = []
        for key, group in jobs.items():
            with self._busy_lock:
                if self._stop.is_set() or key in self._busy or len(self._busy) >= max(1, self.settings.send_workers):
                    continue
                self._busy.add(key)
            try:
                futures.append(self._workers.submit(self._send_all, key, group))
            except RuntimeError:  # stopped meanwhile
                with self._busy_lock:
                    self._busy.discard(key)
        return futures

    def _send_all(self, key: str, rows: list[dict[str, Any]]) -> None:
        try:
            for row in rows:
                if self._stop.is_set():
                    break
                self._safely(partial(self.placer.send, row))
        except Exception:  # noqa: BLE001 - a worker's surprise is logged, never lost in its future
            log.exception("broker sender: sending for %s failed", key)
        finally:
            with self._busy_lock:
                self._busy.discard(key)
            self._wake.set()  # the position's next order may be sendable now
            self._follow_wake.set()  # and what was sent may have filled: the follower looks now

    def tell_health(self) -> None:
        """Report a change of the broker's state to the database (one notification per episode, any instance).

        Only ok, session_expired and unreachable are states of the broker; an 'error' (an answer we could
        not read) says nothing of the session. The same state is reported again, at most every
        ``reassert_s``, when a newer answer confirms it: the database holds the state any instance last
        reported (one that saw an outage may have stopped since), and a report of the same state costs
        nothing there. Never raises: a database outage leaves the change untold, and the next round tells it.
        """
        state, since, seen = self.health.state, self.health.since, self.health.seen
        state = "unreachable" if state == "slow" else state  # for the episode, a broker that does not answer
        now = datetime.now(timezone.utc)
        if state not in ("ok", "session_expired", "unreachable"):
            return
        if state == self._told and (self._told_at is None or seen is None or seen <= self._told_at
                                    or (now - self._told_at).total_seconds() < self.settings.reassert_s):
            return
        if state == "unreachable" and since is not None and \
                (now - since).total_seconds() < self.settings.unreachable_after_s:
            return
        with self._telling:
            if state == self._told and self._told_at is not None and \
                    (now - self._told_at).total_seconds() < self.settings.reassert_s:
                return
            try:
                event = self.store.orders.record_broker_session(state, self.health.message, self.instance_id)
            except (PmError, psycopg2.Error) as exc:
                log.warning("broker sender: the broker's state not recorded yet: %s", exc)
                return
            self._told, self._told_at = state, now
        if event is not None:
            log.warning("broker: %s", self.health.view()["text"])

    # -- reconciliation ---------------------------------------------------------------------------
    def reconcile(self) -> dict[str, Any]:
        """The book against the broker's positionbook (``GET /reconcile``); an OpenAlgoError when unreachable."""
        return reconcile(self.store, self.client, self.mcx_in_lots)

    def reconcile_and_record(self) -> dict[str, Any]:
        """The leader's check (at start and every 60 s): a difference locks its instrument, with an anomaly
        and one notification; what the call says of the broker is its health too."""
        try:
            result = self.reconcile()
        except OpenAlgoError as exc:
            self.health.failed(exc)
            self.tell_health()
            raise
        self.health.set("ok")
        self.tell_health()
        if result["differences"]:
            locked = self.store.orders.record_reconcile_differences(result["differences"])
            if locked:
                log.error("reconciliation: the book and the broker differ (%s); %d instrument(s) locked",
                          result["differences"], locked)
        return result


def reconcile(store: Store, client: OpenAlgoClient, mcx_in_lots: bool = True) -> dict[str, Any]:
    """The book's net quantity per contract against the broker's positionbook (only the contracts we trade).

    A contract with an order in flight before or after the books are read is left for the next check: the book
    holds a decided position the broker shows only once it fills (or never, if it is refused)."""
    before = store.orders.symbols_in_flight()
    book, traded = store.orders.book_positions(mcx_in_lots)
    broker = client.positionbook()
    return compare(book, traded, broker, before | store.orders.symbols_in_flight())
