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
  committed ``sending`` (``pm.order_sending``: only one instance can take an order, and only one
  order per symbol, side and product may be unresolved) *before* its request leaves; the answer is
  recorded through the state machine: accepted → ``open``, a definite refusal → ``rejected``,
  certainly not placed → back to ``queued`` with backoff, anything that may have reached the broker —
  a call past its deadline included — → ``unknown``, never sent again;
* the follower (``pm-broker-follow``): orders at the broker are followed in its books: the trade book
  gives each broker order's filled quantity and volume-weighted price (``pm.record_order_fill``,
  idempotent), the order book its rejections and cancellations, and resolves ``unknown`` orders
  (``pm.resolve_unknown_order``: linked to the one matching broker order, or ``needs_review`` with the
  instrument locked); an order a trader's review linked that the order book never shows within
  ``review_after`` goes back to ``needs_review`` (``pm.orders_seen_at_broker``; a ``--force`` link is
  exempt and left to reconciliation).

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
from collections import defaultdict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Callable, Optional

import psycopg2

from pm_engine.adapters.openalgo import OpenAlgoClient, OpenAlgoError, OrderRequest, OutcomeKind
from pm_engine.core.errors import PmError
from pm_engine.core.market_hours import SESSIONS, MarketHours, SendWindow
from pm_engine.core.orders import Fill, Order
from pm_engine.core.reconcile import compare
from pm_engine.store.errors import OrderTransitionError, OrderUnresolvedError
from pm_engine.store.manager import DatabaseStateManager
from pm_engine.store.orders import (OrderStates, book_positions, record_broker_session, record_reconcile_differences,
                                    symbols_in_flight)

log = logging.getLogger(__name__)

BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0)  # after the 1st, 2nd, ... attempt that certainly was not placed
SLOW = "broker slow / not answering"
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


@dataclass
class BrokerHealth:
    """What the last call to the broker said: ok | session_expired | unreachable | slow | error, and since when.

    ``waiting`` (the client's ``oldest_call_s``) says how long a call now in flight has waited: past
    ``slow_after_s`` the view is "slow" whatever the last answer was, so a gateway that stalls is told
    within one deadline, not once its call ends."""

    state: str = "unknown"
    since: Optional[datetime] = None
    message: str = ""
    seen: Optional[datetime] = None  # the last answer (or failure) this state comes from
    waiting: Optional[Callable[[], float]] = None
    slow_after_s: float = 3.0

    def set(self, state: str, message: str = "") -> None:
        now = datetime.now(timezone.utc)
        if state != self.state:
            self.state, self.since = state, now
        self.message, self.seen = message, now

    def view(self) -> dict[str, Any]:
        waited = self.waiting() if self.waiting is not None else 0.0
        if waited >= self.slow_after_s:
            begun = datetime.now(timezone.utc) - timedelta(seconds=waited)
            return {"state": "slow", "text": SLOW, "since": begun.isoformat(), "seconds_since": round(waited, 1),
                    "message": f"a call has waited {waited:.1f} s for the broker's answer"}
        seconds = (datetime.now(timezone.utc) - self.since).total_seconds() if self.since else None
        texts = {"ok": "broker connected", "session_expired": "broker session expired",
                 "unreachable": "broker unreachable", "slow": SLOW, "error": "broker error"}
        text = texts.get(self.state, "broker not yet contacted")
        return {"state": self.state, "text": text, "since": self.since.isoformat() if self.since else None,
                "seconds_since": round(seconds, 1) if seconds is not None else None, "message": self.message}


class OrderSender:
    """The live engine's broker: ``place_orders`` only wakes the thread (the orders are queued in the database)."""

    def __init__(self, db: DatabaseStateManager, client: OpenAlgoClient, hours: MarketHours,
                 settings: SenderSettings = SenderSettings(), mcx_in_lots: bool = True,
                 instance_id: str = "broker-sender",
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
        self.db = db
        self.clock = clock  # market hours are judged on it (tests set the time of day)
        self.instance_id = instance_id
        self._told: Optional[str] = None  # the broker state this sender last reported to the database
        self._identity_at: Optional[float] = None  # when the restore guard was last asked (monotonic)
        self._held_told = 0  # the held orders last said in the log (said again only when the count changes)
        self._told_at: Optional[datetime] = None
        self._telling = threading.Lock()
        self.mcx_in_lots = mcx_in_lots
        self.states = OrderStates(db)
        self.client = client
        self.hours = hours
        self.settings = settings
        self.health = BrokerHealth(waiting=client.oldest_call_s, slow_after_s=settings.slow_after_s)
        self.rounds = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="pm-broker", daemon=True)
        self._follower = threading.Thread(target=self._follow_loop, name="pm-broker-follow", daemon=True)
        self._workers = ThreadPoolExecutor(max(1, settings.send_workers), thread_name_prefix="pm-broker-send")
        self._busy: set[str] = set()  # positions a worker is sending for
        self._busy_lock = threading.Lock()

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
        self._follower.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in (self._thread, self._follower):
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
            self._safely(self._follow)
            self.tell_health()
            self._stop.wait(self.settings.poll_s)

    def tick(self) -> None:
        """One whole round on this thread, the sends waited for; never raises (a database or broker outage is
        logged and the next round tries again)."""
        self._safely(self._housekeep)
        for future in self._dispatch():
            future.result()
        self._safely(self._follow)
        self.rounds += 1
        self.tell_health()

    @staticmethod
    def _safely(step: Callable[[], None]) -> None:
        try:
            step()
        except (PmError, psycopg2.Error) as exc:
            log.warning("broker sender: %s", exc)

    def _housekeep(self) -> None:
        now = self.clock()
        closed = [exchange for exchange in SESSIONS if not self.hours.is_open(exchange, now)]
        for row in self.states.expire_stale_entries(self.settings.max_order_age_s, closed):
            log.warning("order %s expired: %s", row["client_order_id"], row["reason"])
        abandoned = self.states.abandon_sending(self.settings.abandoned_after_s)
        if abandoned:
            log.warning("%d order(s) left in 'sending' by a stopped sender are now unknown", abandoned)
        self._check_identity()

    def _check_identity(self) -> None:
        """The restore guard, at the first round and then once a minute: a database restored into another cluster
        holds the orders queued before (the database skips them in ``sendable``); said once per count."""
        now = time.monotonic()
        if self._identity_at is not None and now - self._identity_at < IDENTITY_EVERY_S:
            return
        self._identity_at = now
        held = int(self.states.check_identity().get("held_orders") or 0)
        if held and held != self._held_told:
            log.warning("this database was restored from a backup into another cluster: %d queued order(s) from "
                        "before are held, not sent; compare them with the broker (`pm-engine orders --state "
                        "queued`, `pm-engine reconcile`), then `pm-engine orders release-restored`", held)
        self._held_told = held

    def _dispatch(self) -> list["Future[None]"]:
        """Hand the sendable orders to the workers: one job per position (its orders in their order), none for a
        position a worker is still sending for, at most ``send_workers`` at once (the rest wait for a round)."""
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
                self._safely(partial(self._send, row))
        except Exception:  # noqa: BLE001 - a worker's surprise is logged, never lost in its future
            log.exception("broker sender: sending for %s failed", key)
        finally:
            with self._busy_lock:
                self._busy.discard(key)
            self._wake.set()  # the position's next order may be sendable now

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
                event = record_broker_session(self.db, state, self.health.message, self.instance_id)
            except (PmError, psycopg2.Error) as exc:
                log.warning("broker sender: the broker's state not recorded yet: %s", exc)
                return
            self._told, self._told_at = state, now
        if event is not None:
            log.warning("broker: %s", self.health.view()["text"])

    # -- sending ----------------------------------------------------------------------------------
    def _send(self, row: dict[str, Any]) -> None:
        order_id = row["client_order_id"]
        if not self.hours.is_open(row["exchange"], self.clock()):
            return  # waits queued: the broker would refuse a MARKET order now (an entry may expire meanwhile)
        try:
            taken = self.states.sending(order_id)  # committed before the request leaves
        except (OrderUnresolvedError, OrderTransitionError):
            return  # another order of the symbol is unresolved, or another instance took this one
        refusal = self._guard(row)
        if refusal is not None:
            if refusal.startswith("market moved"):
                self.states.rejected(order_id, refusal)  # unwound as a rejection: the entry is removed from the book
            else:
                self.states.send_later(order_id, refusal, BACKOFF_S[0])
            return
        request = OrderRequest(exchange=row["exchange"], symbol=row["symbol"], action=row["side"],
                               quantity=int(row["quantity"]), product=row["product"])
        outcome = self.client.placeorder(request)
        if outcome.kind is OutcomeKind.ACCEPTED:
            assert outcome.broker_order_id is not None
            self.health.set("ok")
            self.states.accepted(order_id, outcome.broker_order_id)
        elif outcome.kind is OutcomeKind.REJECTED:
            self.health.set("ok")
            self.states.rejected(order_id, outcome.reason or "rejected by the broker")
        elif outcome.kind is OutcomeKind.NOT_SENT:
            self.health.set("session_expired" if outcome.session_expired else
                            "unreachable" if outcome.http_status is None else "ok", outcome.reason)
            delay = BACKOFF_S[min(int(taken["attempts"]), len(BACKOFF_S)) - 1]
            self.states.send_later(order_id, outcome.reason or "not sent", delay)
        else:
            self.health.set("error" if outcome.http_status else "slow" if SLOW in (outcome.reason or "")
                            else "unreachable", outcome.reason)
            self.states.unknown(order_id, outcome.reason or "no clear answer")

    def reconcile(self) -> dict[str, Any]:
        """The book against the broker's positionbook (``GET /reconcile``); an OpenAlgoError when unreachable."""
        return reconcile(self.db, self.client, self.mcx_in_lots)

    def reconcile_and_record(self) -> dict[str, Any]:
        """The leader's check (at start and every 60 s): a difference locks its instrument, with an anomaly
        and one notification; what the call says of the broker is its health too."""
        try:
            result = self.reconcile()
        except OpenAlgoError as exc:
            self._broker_failed(exc)
            self.tell_health()
            raise
        self.health.set("ok")
        self.tell_health()
        if result["differences"]:
            locked = record_reconcile_differences(self.db, result["differences"])
            if locked:
                log.error("reconciliation: the book and the broker differ (%s); %d instrument(s) locked",
                          result["differences"], locked)
        return result

    def _guard(self, row: dict[str, Any]) -> Optional[str]:
        """The optional price guard for a futures entry: why not to send it now (None: send).

        The broker's last price more than X % (base, layer 1) or Y % (pyramid) from the signal's price:
        "market moved", the entry is refused. No quote: not sent yet (tried again; the entry expires at
        ``max_order_age`` if quotes never come), since the guard cannot vouch for the price.
        """
        if (row.get("leg") or "FUT") != "FUT" or row["side"] != "BUY" or row.get("roll_id") is not None:
            return None  # a roll's open leg is priced against the old contract's close: the basis is no move
        base = str(row["position_id"]).endswith("_Long_1")
        pct = self.settings.guard_base_pct if base else self.settings.guard_pyramid_pct
        if pct is None:
            return None
        try:
            ltp = Decimal(str(self.client.quotes(row["symbol"], row["exchange"]).get("ltp")))
        except (OpenAlgoError, InvalidOperation, ValueError) as exc:
            return f"no quote for the price guard ({exc})"
        signal = Decimal(row["price"])
        if ltp <= 0:
            return "no quote for the price guard (ltp 0)"
        away = abs(ltp - signal) / signal * 100
        if away > pct:
            return (f"market moved: the quote {ltp} is {away.quantize(Decimal('0.01'))} % from the signal price "
                    f"{signal} (guard {pct} %)")
        return None

    # -- following the broker's books -------------------------------------------------------------
    def _follow(self) -> None:
        watched = self.states.at_broker()
        if not watched:
            return
        try:
            orderbook = self.client.orderbook()
            trades = self.client.tradebook()
        except OpenAlgoError as exc:
            self._broker_failed(exc)
            return
        self.health.set("ok")
        filled: dict[str, tuple[int, Decimal]] = {}
        totals: dict[str, list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
        for t in trades:
            quantity = Decimal(str(t.get("quantity") or 0))
            price = Decimal(str(t.get("average_price") or 0))
            if quantity > 0 and price > 0 and t.get("orderid"):
                totals[str(t["orderid"])][0] += quantity
                totals[str(t["orderid"])][1] += quantity * price
        for broker_id, (quantity, value) in totals.items():
            filled[broker_id] = (int(quantity), value / quantity)  # the trade book's volume-weighted price
        statuses = {str(o.get("orderid")): str(o.get("order_status") or "").lower() for o in orderbook}
        # a review's checked link the books never show within the review window goes back to needs_review
        if self.states.seen_at_broker(sorted(statuses), self.settings.review_after_s):
            log.error("an order a review linked is not in the broker's books: it needs review again")
            watched = self.states.at_broker()
        for row in watched:
            order_id = row["client_order_id"]
            if row["status"] == "unknown":
                result = self.states.resolve_unknown(order_id, orderbook, self.settings.review_after_s)
                if result != "linked":
                    if result == "needs_review":
                        log.error("order %s needs review: the instrument is locked", order_id)
                    continue
                row = {**row, "broker_order_id": self._linked_id(order_id)}
            self._apply(row, filled, statuses)

    def _broker_failed(self, exc: OpenAlgoError) -> None:
        self.health.set("session_expired" if exc.kind == "session" else "slow" if SLOW in str(exc) else
                        "unreachable" if exc.kind in ("unreachable", "lost") else "error", str(exc))

    def _linked_id(self, order_id: str) -> Optional[str]:
        for row in self.states.at_broker():
            if row["client_order_id"] == order_id:
                return row["broker_order_id"]
        return None

    def _apply(self, row: dict[str, Any], filled: dict[str, tuple[int, Decimal]], statuses: dict[str, str]) -> None:
        order_id, broker_id = row["client_order_id"], row.get("broker_order_id")
        if not broker_id:
            return
        if broker_id in filled:
            cumulative, price = filled[broker_id]
            row = self.states.fill(order_id, broker_id, min(cumulative, int(row["quantity"])), price)
        status = statuses.get(broker_id, "")
        if row["status"] in ("open", "partially_filled"):
            if status == "rejected" and row["status"] == "open":
                self.states.rejected(order_id, "rejected in the broker's order book")
            elif status == "cancelled":
                self.states.cancelled(order_id, "cancelled at the broker")


def reconcile(db: DatabaseStateManager, client: OpenAlgoClient, mcx_in_lots: bool = True) -> dict[str, Any]:
    """The book's net quantity per contract against the broker's positionbook (only the contracts we trade).

    A contract with an order in flight before or after the books are read is left for the next check: the book
    holds a decided position the broker shows only once it fills (or never, if it is refused)."""
    before = symbols_in_flight(db)
    book, traded = book_positions(db, mcx_in_lots)
    broker = client.positionbook()
    return compare(book, traded, broker, before | symbols_in_flight(db))
