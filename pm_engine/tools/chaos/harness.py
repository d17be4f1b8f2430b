"""The chaos harness: the cluster, the engine processes, the supervisor that restarts them, the agent that kills
them and the database, and the driver that sends the stream and retries as a proxy would."""

from __future__ import annotations

import http.client
import json
import random
import secrets
import signal
import sys
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional

from pm_engine.core.errors import PmError
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.core.signals import parse_signal
from pm_engine.ops.cluster import LocalCluster, temporary_cluster
from pm_engine.sim.book import Faults
from pm_engine.sim.server import SimServer, make_server
from pm_engine.store.deploy import deploy
from pm_engine.store.gateway import Store
from pm_engine.tools.chaos.settings import BROKER_FAULTS, ChaosSettings, Counts, SETTLE_S
from pm_engine.tools.children import EngineProcess, fetch_all, fetch_one, http_request


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


def _bar(total: int) -> Any:
    """A tqdm bar on a terminal (disabled otherwise, so CI logs stay clean)."""
    from tqdm import tqdm

    return tqdm(total=total, desc="signals", unit="sig", leave=False, disable=not sys.stderr.isatty())
