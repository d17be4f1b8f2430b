"""``pm-engine chaos``: crashes, database restarts, concurrent instances and hostile input lose nothing.

A driver sends a stream of signals (30 % repeated, some of the repeats to a second instance at
the same moment) to N engine processes sharing one PostgreSQL, one distinct signal at a time,
resending any request whose connection failed, timed out or got a 503 — as a retrying proxy
would. Meanwhile the harness SIGKILLs engine processes (and restarts them) and restarts
PostgreSQL with an immediate shutdown. The engines also run with a small chance of killing
themselves in the worst window (``PM_FAULT_CRASH=after_commit``: state durable, orders unsent).

At the end the database must equal an in-memory replay of the same stream through the same
trading core (the reference model), position by position, with exactly one outcome row per
distinct signal, no order twice, closed equity = initial capital + Σ realized P&L (checked in
SQL), and no secret in any log. Then a fuzzer sends hostile webhooks: every one must get a 4xx
JSON error and leave the database byte-for-byte unchanged.
"""

from __future__ import annotations

import http.client
import json
import random
import secrets
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional

from pm_engine.core.engine import TradingEngine
from pm_engine.core.errors import PmError
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.core.reconcile import compare
from pm_engine.core.signals import parse_signal
from pm_engine.ops.cluster import LocalCluster
from pm_engine.sim.book import Account, Faults
from pm_engine.sim.server import SimServer, make_server
from pm_engine.store.connection import DatabaseConfig
from pm_engine.store.deploy import deploy
from pm_engine.store.gateway import Store
from pm_engine.tools.children import (EngineProcess, KeepAliveClient, committed_book, fetch_all, fetch_one,
                                      http_request, served_book)
from pm_engine.tools.clusters import temporary_cluster
from pm_engine.tools.samples import mixed_stream


@dataclass(frozen=True)
class ChaosSettings:
    signals: int = 5000
    instances: int = 3
    kills: int = 10
    db_restarts: int = 2
    duplicate_ratio: float = 0.3
    fault_after_commit: float = 0.002
    fuzz: int = 10000
    seed: int = 23
    broker: bool = False  # orders go to the broker simulator over HTTP (else the paper broker, in the database)
    broker_faults: int = 0  # broker faults played during the run: unclear answers after acceptance, expired sessions


SHORT = ChaosSettings(signals=400, instances=2, kills=2, db_restarts=1, fault_after_commit=0.005, fuzz=400)
# against the broker simulator: every order over HTTP, so fewer signals (the hostile input is the paper run's)
BROKER = ChaosSettings(signals=2000, kills=10, db_restarts=2, fuzz=0, broker=True, broker_faults=20)
SHORT_BROKER = ChaosSettings(signals=150, instances=2, kills=2, db_restarts=1, fault_after_commit=0.005, fuzz=0,
                             broker=True, broker_faults=4)
BROKER_FAULTS = ("timeout", "cut", "500", "session_expired")
SETTLE_S = 90.0  # how long the orders in flight at the end may take to settle (a 403's backoff, a dead sender)


@dataclass
class Counts:
    sent: int = 0
    requests: int = 0
    retried: int = 0
    duplicates: int = 0
    kills: int = 0
    fault_kills: int = 0
    broker_faults: int = 0
    reviewed: int = 0
    db_restarts: int = 0
    restarts: int = 0
    server_errors: int = 0
    max_503_ms: float = 0.0
    ready_503: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


class Harness:
    """The cluster, the instances, the supervisor and the chaos agent."""

    def __init__(self, settings: ChaosSettings) -> None:
        self.settings = settings
        self.rng = random.Random(settings.seed)
        self.counts = Counts()
        self.secret = secrets.token_urlsafe(24)
        self.logdir = Path(tempfile.mkdtemp(prefix="pm-chaos-"))
        self.cluster: LocalCluster = temporary_cluster(fsync=False)
        self.cluster.create_database("pm_chaos")
        self.config = self.cluster.config("pm_chaos")
        deploy(self.config)
        self.db_up = threading.Event()
        self.db_up.set()
        env = {"PM_MAX_SIGNAL_AGE_S": "0"}  # a recorded stream is replayed
        self.sim: Optional[SimServer] = None
        if settings.broker:
            env.update(self._start_sim())
        if settings.fault_after_commit:
            env["PM_FAULT_CRASH"] = f"after_commit:{settings.fault_after_commit}"
        self.instances = [EngineProcess(self.config, self.secret, self.logdir / f"engine-{i}.log", env)
                          for i in range(settings.instances)]
        self._stop = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        for instance in self.instances:
            instance.start()
        for instance in self.instances:
            if not instance.wait_ready():
                raise RuntimeError(f"an engine did not start; see {instance.log}")
        self._supervisor.start()

    def close(self) -> None:
        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join(10)
        for instance in self.instances:
            instance.stop()
        if self.sim is not None:
            self.sim.shutdown()
            self.sim.server_close()
        self.cluster.destroy()

    # -- the broker simulator ----------------------------------------------------------------------
    def _start_sim(self) -> dict[str, str]:
        """The simulator in this process on loopback; each MARKET order fills at its own alert's price (the engine's
        sending order of that symbol and side), so the book must equal the paper reference to the paisa."""
        key = secrets.token_urlsafe(24)
        self.sim = make_server("127.0.0.1", 0, key, price_source=self._signal_price)
        threading.Thread(target=self.sim.serve_forever, kwargs={"poll_interval": 0.2}, name="broker-sim",
                         daemon=True).start()
        return {"PM_BROKER": "openalgo", "PM_OPENALGO_URL": f"http://127.0.0.1:{self.sim.server_address[1]}",
                "PM_OPENALGO_API_KEY": key, "PM_MARKET_HOURS": "always", "PM_OPENALGO_TIMEOUT_S": "1",
                # a recorded stream: an entry waiting out an outage must not expire; the trader reviews at once
                "PM_MAX_ORDER_AGE_S": "3600", "PM_ORDER_REVIEW_AFTER_S": "3"}

    def _signal_price(self, symbol: str, side: str) -> Optional[Decimal]:
        """The sending order's alert price. While the database restarts (it was up when the order committed) the
        simulator waits for it: past the engine's 1 s the answer is unclear and the order is resolved from the order
        book, as after any timeout after acceptance."""
        deadline = time.monotonic() + 20
        while True:
            try:
                value = fetch_one(self.config, "sending_signal_price", (symbol, side))
                return Decimal(str(value)) if value is not None else None
            except Exception:  # noqa: BLE001 - the database restarting
                if time.monotonic() > deadline:
                    return None
                time.sleep(0.1)

    def broker_fault(self) -> None:
        """One broker fault: the next order accepted then answered unclearly, or the session expired for a while."""
        assert self.sim is not None
        account = self.sim.account
        kind = self.rng.choice(BROKER_FAULTS)
        with account.lock:
            if kind == "session_expired":
                account.faults.update({"session_expired": True})
            else:
                account.faults.update({"after_accept": kind, "hang_s": 2, "times": 1})
        if kind == "session_expired":
            def restore() -> None:
                with account.lock:
                    account.faults.update({"session_expired": False})
            threading.Timer(self.rng.uniform(0.3, 1.0), restore).start()
        self.counts.add("broker_faults")

    def review_unclear(self) -> None:
        """Play the trader while an order's fate is unclear (the stream waits, so no entry meets the review's lock).

        An unknown order resolves itself from the broker's order book, or after the review window becomes
        needs_review; then the trader looks at the broker's orders: the one order there that is ours but linked to
        none is linked; nothing there (its sender was killed before the request left) is placed by hand at its
        alert's price and linked, as README "Orders" tells (``pm-engine orders review ID --at-broker ID``)."""
        assert self.sim is not None
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            try:
                rows = fetch_all(self.config, "chaos_unclear_orders")
            except Exception:  # noqa: BLE001 - the database restarting
                time.sleep(0.1)
                continue
            if not rows:
                return
            for client_id, state, symbol, side, quantity, product, exchange, price in rows:
                if state == "needs_review":
                    self._review(str(client_id), str(symbol), str(side), int(quantity), str(product), str(exchange),
                                 Decimal(str(price)))
            time.sleep(0.05)

    def _review(self, client_id: str, symbol: str, side: str, quantity: int, product: str, exchange: str,
                price: Decimal) -> None:
        assert self.sim is not None
        account = self.sim.account
        deadline = time.monotonic() + 10  # an order on its way may be the broker's unlinked one: let it land first
        while fetch_one(self.config, "chaos_orders_sending") and time.monotonic() < deadline:
            time.sleep(0.05)
        linked = {str(r[0]) for r in fetch_all(self.config, "chaos_broker_links")}
        with account.lock:
            theirs = [o.orderid for o in account.orders.values() if o.orderid not in linked and o.symbol == symbol
                      and o.action == side and o.quantity == quantity and o.product == product]
            if theirs:
                broker_id, how = theirs[0], "linked to the broker's unlinked order"
            else:
                faults, account.faults = account.faults, Faults()  # the trader's own order meets no fault
                try:
                    order, _ = account.place({"symbol": symbol, "strategy": "by hand", "exchange": exchange,
                                              "action": side, "quantity": quantity, "price": price,
                                              "trigger_price": Decimal(0), "pricetype": "MARKET",
                                              "product": product})
                finally:
                    account.faults = faults
                broker_id, how = order.orderid, "placed by hand: nothing had reached the broker"
        store = Store(self.config)
        try:
            store.orders.review(client_id, broker_id, how, "cli:chaos@trader", "checked")  # found in its books
        except PmError as exc:  # the engine moved first (or the database restarts): look again next round
            print(f"chaos: review of {client_id} refused ({exc}); looking again", flush=True)
            return
        finally:
            store.close()
        self.counts.add("reviewed")

    def settle(self) -> list[str]:
        """Wait until no order is in flight (queued, sending, open, partially filled, unknown); what still is."""
        deadline = time.monotonic() + SETTLE_S
        while True:
            self.review_unclear()
            try:
                waiting = [str(r[0]) for r in fetch_all(self.config, "symbols_in_flight")]
            except Exception:  # noqa: BLE001 - the database restarting at the very end
                waiting = ["(database down)"]
            if not waiting or time.monotonic() > deadline:
                return waiting
            time.sleep(0.2)

    def _supervise(self) -> None:
        """Restart any dead engine (killed by us, or by its own fault hook)."""
        while not self._stop.is_set():
            for instance in self.instances:
                if instance.proc is not None and not instance.alive():
                    code = instance.proc.returncode
                    if code == -signal.SIGKILL and not instance.killed_by_us:
                        self.counts.add("fault_kills")
                    instance.start()  # with the database down it exits after its connect retries; retried here
                    self.counts.add("restarts")
            self._stop.wait(0.05)

    # -- chaos agent -------------------------------------------------------------------------------
    def kill_one(self) -> None:
        alive = [i for i in self.instances if i.alive()]
        if not alive:
            return
        if self.sim is not None:
            self._outside_sending()
        self.rng.choice(alive).kill()
        self.counts.add("kills")

    def _outside_sending(self) -> None:
        """Against the broker, a kill waits (up to 0.3 s) until no order is between its committed ``sending`` and
        the broker's answer. A sender killed in that window leaves an order nobody can know reached the broker;
        when nothing shows within the review window it becomes needs_review and the trader decides (by design,
        tests/integration/test_broker_orders.py), which a replay of the stream cannot model."""
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            try:
                if not fetch_one(self.config, "chaos_orders_sending"):
                    return
            except Exception:  # noqa: BLE001 - the database restarting: kill now
                return
            time.sleep(0.002)

    def restart_database(self) -> None:
        """Immediate shutdown (a crash for PostgreSQL), check the outage answers, start again."""
        self.db_up.clear()
        self.cluster.stop("immediate")
        self.counts.add("db_restarts")
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # ask a serving engine whether it is ready: it must say no
            try:
                status, _ = http_request(self.rng.choice(self.instances).port, "GET", "/ready", timeout=5)
            except (OSError, http.client.HTTPException):  # that one is restarting
                time.sleep(0.05)
                continue
            if status == 503:
                self.counts.add("ready_503")
            break
        time.sleep(1.0)
        self.cluster.start()
        self.db_up.set()

    # -- driver ------------------------------------------------------------------------------------
    def send(self, body: bytes, target: int) -> str:
        """Send until an instance answers 200 (resending after failures, as a retrying proxy)."""
        headers = {"Content-Type": "text/plain", "X-PM-Secret": self.secret}
        attempt = 0
        while True:
            instance = self.instances[(target + attempt) % len(self.instances)]
            attempt += 1
            self.counts.add("requests")
            started = time.monotonic()
            try:
                status, answer = http_request(instance.port, "POST", "/webhook", body, headers)
            except (OSError, http.client.HTTPException):  # refused, reset, cut short or timed out: engine died
                self.counts.add("retried")
                time.sleep(0.02)
                continue
            if status == 200:
                return str(answer["outcome"])
            if status == 503:
                elapsed = (time.monotonic() - started) * 1000
                with self.counts.lock:
                    self.counts.max_503_ms = max(self.counts.max_503_ms, elapsed)
                self.counts.add("retried")
                time.sleep(min(0.5, 0.02 * attempt))
                continue
            self.counts.add("server_errors")  # 4xx for a valid signal, or a 500: a defect
            if attempt > 20:
                return f"error {status}: {answer}"
            time.sleep(0.05)

    def drive(self, stream: list[dict[str, Any]], progress: bool = False) -> dict[str, list[str]]:
        """Send the stream in order; returns every answer per fingerprint."""
        answers: dict[str, list[str]] = {}
        bar = _bar(len(stream)) if progress else None
        n = len(stream)
        kill_at = set(self.rng.sample(range(n // 10, n), min(self.settings.kills, max(0, n - n // 10))))
        restart_at = set(self.rng.sample(range(n // 5, n), min(self.settings.db_restarts, max(0, n - n // 5))))
        faults = self.settings.broker_faults if self.sim is not None else 0
        fault_at = set(self.rng.sample(range(n // 10, n), min(faults, max(0, n - n // 10))))
        for i, payload in enumerate(stream):
            if i in fault_at:
                self.broker_fault()
            if self.sim is not None:
                self.review_unclear()
            fp = parse_signal(payload, DEFAULT_INSTRUMENTS).fingerprint
            body = json.dumps(payload).encode()
            if i in kill_at:
                threading.Timer(self.rng.uniform(0, 0.003), self.kill_one).start()  # often mid-request
            if i in restart_at:
                threading.Timer(self.rng.uniform(0, 0.003), self.restart_database).start()
            repeat = fp in answers
            if repeat:
                self.counts.add("duplicates")
            target = self.rng.randrange(len(self.instances))
            if repeat and self.rng.random() < 0.5:  # the same alert to two instances at the same moment
                got: list[str] = []
                other = (target + 1) % len(self.instances)

                def fire(to: int) -> None:
                    try:
                        got.append(self.send(body, to))
                    except Exception as exc:  # noqa: BLE001 - a driver failure is a failed check, not a crash
                        got.append(f"error {exc!r}")
                threads = [threading.Thread(target=fire, args=(t,)) for t in (target, other)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                answers[fp].extend(got)
                self.counts.add("sent", 2)
            else:
                answers.setdefault(fp, []).append(self.send(body, target))
                self.counts.add("sent")
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        time.sleep(0.1)
        while not self.db_up.is_set():
            time.sleep(0.05)
        return answers


# -- checks ----------------------------------------------------------------------------------------
@dataclass
class Verdict:
    lost: int = 0
    duplicated: int = 0
    mismatches: int = 0
    notes: list[str] = field(default_factory=list)

    def mismatch(self, note: str) -> None:
        self.mismatches += 1
        if len(self.notes) < 20:
            self.notes.append(note)


def reference(stream: list[dict[str, Any]]) -> tuple[TradingEngine, dict[str, str]]:
    """The same stream through the same trading core, in memory, once per distinct signal."""
    from pm_engine.core.orders import PaperBroker

    engine = TradingEngine(broker=PaperBroker(), max_signal_age=None)
    outcomes: dict[str, str] = {}
    for payload in stream:
        result = engine.process_payload(payload, check_time=False)
        if result.outcome.value != "duplicate":
            outcomes[result.fingerprint] = result.outcome.value
    return engine, outcomes


def verify_broker(config: DatabaseConfig, account: Account, verdict: Verdict) -> None:
    """Against the simulator: every order of ours is exactly one order at the broker (an order there that no order
    of ours links to was sent twice), each filled; and the broker's net position per contract is the book's."""
    ours = {str(row[0]): (str(row[1]), str(row[2])) for row in fetch_all(config, "chaos_broker_links")}
    with account.lock:
        at_broker = {oid: (o.symbol, o.action, o.status) for oid, o in account.orders.items()}
        positions = account.positions()
    extra = sorted(set(at_broker) - set(ours))
    verdict.duplicated += len(extra)
    for oid in extra[:5]:
        verdict.notes.append(f"broker order {oid} {at_broker[oid][:2]} is linked to no order of ours: sent twice")
    for oid in sorted(set(ours) - set(at_broker))[:20]:
        verdict.mismatch(f"order {ours[oid][0]} names broker order {oid}, which the broker does not have")
    for client_id, state in fetch_all(config, "chaos_unfilled_orders"):
        verdict.mismatch(f"order {client_id} ended {state}, not filled")
    store = Store(config)
    try:
        book, traded = store.orders.book_positions()
    finally:
        store.close()
    for difference in compare(book, traded, positions)["differences"]:
        verdict.mismatch(f"broker net {difference['broker_quantity']} != book {difference['book_quantity']} "
                         f"for {difference['symbol']}")


def verify(config: DatabaseConfig, stream: list[dict[str, Any]], answers: dict[str, list[str]],
           account: Optional[Account] = None) -> Verdict:
    verdict = Verdict()
    ref, expected = reference(stream)
    logged = dict(fetch_all(config, "bench_logged_fingerprints"))
    verdict.lost = len(set(expected) - set(logged))
    for fp in set(logged) - set(expected):
        verdict.mismatch(f"logged fingerprint {fp[:12]} was never sent")
    for fp, status in expected.items():
        if fp in logged and logged[fp] != status:
            verdict.mismatch(f"signal {fp[:12]}: database says {logged[fp]}, reference {status}")
    for fp, got in answers.items():
        if got.count("executed") > 1:
            verdict.duplicated += 1
        bad = [a for a in got if a.startswith("error")]
        if bad:
            verdict.mismatch(f"signal {fp[:12]} answered {bad[0]}")
    verdict.duplicated += int(fetch_all(config, "bench_orders_per_layer")[0][0])

    # positions, pyramiding and equity, as the engine recovers them
    store = Store(config)
    try:
        engine = TradingEngine(store=store, instance_id="chaos-check")
        if account is None:
            engine.send_queued()  # what any paper restart does: orders committed but never filled
        mine, theirs = engine.portfolio, ref.portfolio
        if mine.closed_equity != theirs.closed_equity:
            verdict.mismatch(f"closed equity {mine.closed_equity} != reference {theirs.closed_equity}")
        if set(mine.positions) != set(theirs.positions):
            verdict.mismatch(f"open positions {sorted(mine.positions)} != reference {sorted(theirs.positions)}")
        for pid in set(mine.positions) & set(theirs.positions):
            a, b = mine.positions[pid], theirs.positions[pid]
            for name in ("lots", "entry_price", "initial_stop", "current_stop", "highest_close", "is_base_position",
                         "limiter", "risk_contribution", "vol_contribution"):
                if getattr(a, name) != getattr(b, name):
                    verdict.mismatch(f"{pid}.{name}: {getattr(a, name)} != reference {getattr(b, name)}")
        mine_pyr = {k: (v.last_pyramid_price, v.base_position_id) for k, v in mine.pyramiding.items()}
        ref_pyr = {k: (v.last_pyramid_price, v.base_position_id) for k, v in theirs.pyramiding.items()}
        if mine_pyr != ref_pyr:
            verdict.mismatch(f"pyramiding {mine_pyr} != reference {ref_pyr}")
    finally:
        store.close()
    no_history, positions, portfolio, pyramiding = fetch_all(config, "history_check")[0]
    if no_history:
        verdict.mismatch(f"{no_history} committed signal(s) without their history rows")
    for count, what in ((positions, "position"), (portfolio, "portfolio"), (pyramiding, "pyramiding")):
        if count:
            verdict.mismatch(f"{count} {what} row(s) differ from their last history version")
    capital, equity, realized, open_twice, queued = fetch_all(config, "chaos_equity_check")[0]
    if Decimal(equity) != Decimal(capital) + Decimal(realized):
        verdict.mismatch(f"closed_equity {equity} != initial capital {capital} + realized {realized} (SQL)")
    if open_twice:
        verdict.duplicated += int(open_twice)
    if queued:
        verdict.mismatch(f"{queued} order(s) still queued after recovery")
    ref_orders = {(o.client_order_id, o.side, o.lots, o.price, o.exchange, o.symbol, o.quantity, o.leg)
                  for o in ref.broker.orders.values()}  # type: ignore
    db_orders = {tuple(row) for row in fetch_all(config, "chaos_orders")}
    if ref_orders != db_orders:
        verdict.mismatch(f"broker orders differ: {len(db_orders - ref_orders)} extra, "
                         f"{len(ref_orders - db_orders)} missing")
    if account is not None:
        verify_broker(config, account, verdict)
    return verdict


def stale_views(harness: Harness) -> list[str]:
    """Instances whose GET /status differs from the book the database committed (issue 10: must be none)."""
    book = committed_book(harness.config)
    stale = []
    for number, instance in enumerate(harness.instances):
        status, body = http_request(instance.port, "GET", "/status")
        if status != 200 or served_book(body) != book:
            stale.append(f"instance {number}: /status {status} differs from the database's book")
    return stale


def leaked_secrets(harness: Harness) -> int:
    """Occurrences of the webhook secret in engine logs and /status (must be 0)."""
    found = sum(path.read_text(errors="replace").count(harness.secret) for path in harness.logdir.glob("*.log"))
    for instance in harness.instances:
        if instance.alive():
            try:
                status, body = http_request(instance.port, "GET", "/status")
                found += json.dumps(body).count(harness.secret)
            except (OSError, http.client.HTTPException):
                pass
    return found


def run_chaos(settings: ChaosSettings = ChaosSettings(), progress: bool = True) -> int:
    """The whole run; returns 0 when nothing was lost, duplicated or mismatched, else 1."""
    started = time.monotonic()
    stream = mixed_stream(settings.signals, seed=settings.seed, duplicate_ratio=settings.duplicate_ratio)
    harness = Harness(settings)
    try:
        harness.start()
        print(f"chaos: {settings.signals} signals to {settings.instances} engines on 127.0.0.1:"
              f"{harness.cluster.port}; {settings.kills} kills, {settings.db_restarts} database restarts, "
              f"self-kill chance after commit {settings.fault_after_commit}"
              + (f"; orders to the broker simulator, {settings.broker_faults} broker faults" if settings.broker
                 else ""), flush=True)
        answers = harness.drive(stream, progress)
        for instance in harness.instances:
            instance.wait_ready()
        waiting = harness.settle() if harness.sim is not None else []
        verdict = verify(harness.config, stream, answers, harness.sim.account if harness.sim else None)
        if waiting:
            verdict.mismatch(f"orders of {waiting} still in flight {SETTLE_S:.0f} s after the stream")
        for note in stale_views(harness):
            verdict.mismatch(note)
        leaks = leaked_secrets(harness)
        if leaks:
            verdict.mismatch(f"the webhook secret appears {leaks} time(s) in logs or /status")
        fuzz_report = fuzz(harness, settings.fuzz) if settings.fuzz else None
    finally:
        harness.close()
    c = harness.counts
    print(f"requests {c.requests}, engine restarts {c.restarts} (self-kills after commit {c.fault_kills}), "
          f"slowest 503 {c.max_503_ms:.0f} ms, /ready said 503 during {c.ready_503} of {c.db_restarts} outages, "
          f"defect answers {c.server_errors}, {time.monotonic() - started:.0f} s")
    if fuzz_report:
        print(fuzz_report.summary())
        if fuzz_report.failures:
            verdict.mismatches += fuzz_report.failures
            verdict.notes.extend(fuzz_report.notes[:10])
        if not fuzz_report.unchanged:
            verdict.mismatch("the fuzzer changed the database")
    if c.max_503_ms >= 3000:
        verdict.mismatch(f"a 503 took {c.max_503_ms:.0f} ms (TradingView waits 3 s)")
    for note in verdict.notes:
        print(f"  ! {note}")
    if settings.broker:
        print(f"broker: {c.broker_faults} faults played, {c.reviewed} needs_review order(s) resolved as the trader "
              f"would; every order of ours is one order at the broker, "
              "and the broker's net position per contract is checked against the book")
    print(f"chaos: sent={c.sent} retried={c.retried} duplicates={c.duplicates} kills={c.kills + c.fault_kills} "
          f"db_restarts={c.db_restarts} lost={verdict.lost} duplicated={verdict.duplicated} "
          f"mismatches={verdict.mismatches}", flush=True)
    if verdict.lost == verdict.duplicated == verdict.mismatches == 0:
        shutil.rmtree(harness.logdir, ignore_errors=True)
        return 0
    print(f"engine logs kept in {harness.logdir}")
    return 1


def _bar(total: int) -> Any:
    """A tqdm bar on a terminal (disabled otherwise, so CI logs stay clean)."""
    from tqdm import tqdm

    return tqdm(total=total, desc="signals", unit="sig", leave=False, disable=not sys.stderr.isatty())


# -- hostile input -----------------------------------------------------------------------------------
@dataclass
class FuzzReport:
    sent: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    unchanged: bool = True
    audited: int = 0  # rows request_log gained
    dropped: int = 0  # refusals over the audit's per-source cap (counted by the engine, not written)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        return (f"fuzz: {self.sent} hostile webhooks -> {statuses}; {self.failures} not a 4xx JSON error; "
                f"database {'unchanged' if self.unchanged else 'CHANGED'} but for {self.audited} audit rows "
                f"({self.dropped} over the flood cap)")


def fuzz(harness: Harness, count: int) -> Optional[FuzzReport]:
    """``count`` hostile webhooks from hypothesis strategies; each must be a 4xx JSON error, nothing written."""
    try:
        from pm_engine.tools.fuzzing import hostile_requests
    except ImportError:  # pragma: no cover - a runtime-only install
        print("fuzz skipped: hypothesis is not installed (pip install -r requirements-dev.txt)")
        return None

    instance = next(i for i in harness.instances if i.alive())
    instance.wait_ready()
    before = fetch_all(harness.config, "db_checksums")
    report = FuzzReport()
    client = KeepAliveClient(instance.port, timeout=5)  # keep-alive: 10,000 requests

    def check(case: tuple[bytes, dict[str, str], str]) -> None:
        body, headers, path = case
        try:
            try:
                status, answer = client.post(path, body, headers)
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # the engine closed the idle keep-alive connection (5 s; a loaded machine can pause the
                # generator that long): a client resends on a fresh connection, once
                status, answer = client.post(path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            report.failures += 1
            report.notes.append(f"fuzz: no answer ({exc.__class__.__name__}) to {body[:80]!r}")
            return
        report.sent += 1
        report.by_status[status] = report.by_status.get(status, 0) + 1
        if not (400 <= status < 500 and isinstance(answer, dict) and answer.get("error")):
            report.failures += 1
            if len(report.notes) < 10:
                report.notes.append(f"fuzz: {status} {answer!r} for {body[:120]!r}")

    def audit_counters() -> dict[str, int]:
        status, body = http_request(instance.port, "GET", "/status")  # loopback: no read token configured here
        return dict(body["refusal_audit"]) if status == 200 else {"written": 0, "dropped": 0}

    logged_before, counters_before = int(fetch_one(harness.config, "request_log_count")), audit_counters()
    hostile_requests(check, count, harness.secret)
    client.close()
    report.unchanged = fetch_all(harness.config, "db_checksums") == before
    # every refusal has its audit row, up to the flood cap: wait for the writer's last batch
    deadline = time.monotonic() + 10
    while True:
        counters = audit_counters()
        report.dropped = counters["dropped"] - counters_before["dropped"]
        report.audited = int(fetch_one(harness.config, "request_log_count")) - logged_before
        if report.audited == report.sent - report.dropped or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if report.audited != report.sent - report.dropped:
        report.failures += 1
        report.notes.append(f"fuzz: {report.sent} refusals, {report.dropped} over the cap, but {report.audited} "
                            "audit rows")
    secrets_stored = int(fetch_one(harness.config, "request_log_containing", (harness.secret, harness.secret)))
    if secrets_stored:
        report.failures += 1
        report.notes.append(f"fuzz: the webhook secret is stored in {secrets_stored} audit row(s)")
    return report
