"""``pm-engine bench``: latency and throughput of the persistence path, as ratios to the floor.

Everything is measured in one run against one PostgreSQL (a throw-away cluster with fsync on,
or a scratch database created on the ``DATABASE_URL`` server), after warm-up, and printed as
absolute times and as multiples of the ``SELECT 1`` round trip measured first through the same
driver and connection settings. Each part gets a fresh database so earlier parts cannot slow
later ones. ``--json FILE`` writes the figures; ``--quick`` runs every part smaller.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Optional

import psycopg2
import psycopg2.sql
from tqdm import tqdm

from pm_engine.core.contracts import ContractCalendar
from pm_engine.core.engine import TradingEngine
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.core.models import Position
from pm_engine.ops.cluster import LocalCluster
from pm_engine.store.connection import DatabaseConfig
from pm_engine.store.deploy import deploy
from pm_engine.store.gateway import Store
from pm_engine.store.queries import QUERIES
from pm_engine.tools.children import EngineProcess, KeepAliveClient, fetch_all
from pm_engine.tools.clusters import temporary_cluster
from pm_engine.tools.samples import mixed_stream

SECRET = secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Sizes:
    """How many iterations each part runs."""

    floor: int = 3000
    saves: int = 2000
    cached_reads: int = 50000
    misses: int = 2000
    open_lists: int = 300
    signals: int = 2000
    webhooks: int = 2000
    stream: int = 10000
    writer_saves: int = 300
    broker_alerts: int = 200


QUICK = Sizes(floor=1000, saves=500, cached_reads=20000, misses=500, open_lists=50, signals=500, webhooks=500,
              stream=2000, writer_saves=50, broker_alerts=20)


@dataclass
class Stats:
    """Latency samples of one operation, in nanoseconds."""

    samples: list[int] = field(default_factory=list)

    def pct(self, q: float) -> float:
        ordered = sorted(self.samples)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000.0  # microseconds

    @property
    def p50(self) -> float:
        return self.pct(0.50)

    @property
    def p99(self) -> float:
        return self.pct(0.99)

    @property
    def max(self) -> float:
        return max(self.samples) / 1000.0


def timed(fn: Callable[[int], Any], n: int, warmup: int = 50) -> Stats:
    """Call ``fn(i)`` ``warmup`` times unmeasured, then ``n`` times measured one by one."""
    for i in range(warmup):
        fn(-1 - i)
    stats = Stats()
    clock = time.perf_counter_ns
    for i in range(n):
        start = clock()
        fn(i)
        stats.samples.append(clock() - start)
    return stats


class Databases:
    """Fresh, deployed databases for each part: on a private cluster or the DATABASE_URL server."""

    def __init__(self, url: Optional[str]) -> None:
        self.cluster: Optional[LocalCluster] = None
        self.created: list[str] = []
        if url:
            self.admin = DatabaseConfig.from_url(url)
            print(f"using the server of DATABASE_URL ({self.admin.url()}): scratch databases pm_bench_*")
        else:
            self.cluster = temporary_cluster(fsync=True)
            self.admin = self.cluster.config("postgres")
            print(f"private PostgreSQL cluster on 127.0.0.1:{self.cluster.port} (fsync on)")

    def new(self, name: str) -> DatabaseConfig:
        name = f"pm_bench_{name}"
        conn = psycopg2.connect(**self.admin.dsn_kwargs())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                ident = psycopg2.sql.Identifier(name)
                cur.execute(psycopg2.sql.SQL(QUERIES["bench_drop_database"]).format(ident))
                cur.execute(psycopg2.sql.SQL(QUERIES["bench_create_database"]).format(ident))
        finally:
            conn.close()
        self.created.append(name)
        config = replace(self.admin, database=name, minconn=4, maxconn=20)  # every host and option of the URL
        deploy(config)
        return config

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.destroy()
            return
        conn = psycopg2.connect(**self.admin.dsn_kwargs())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                for name in self.created:
                    cur.execute(psycopg2.sql.SQL(QUERIES["bench_drop_database"]).format(psycopg2.sql.Identifier(name)))
        finally:
            conn.close()


def bench_position(n: int) -> Position:
    now = datetime.now(timezone.utc)
    return Position(f"COPPER_Long_{n}", "COPPER", now, Decimal("800.00"), 3, 7500, Decimal("790.00"),
                    Decimal("790.00"), Decimal("800.00"), atr=Decimal("4.00"), is_base_position=True,
                    limiter="risk", risk_contribution=Decimal("0.4500"))


# -- parts ---------------------------------------------------------------------------------------
def part_floor(config: DatabaseConfig, sizes: Sizes) -> tuple[Stats, Stats]:
    """The ``SELECT 1`` round trip, and the durable-commit floor (the smallest version-checked update)."""
    conn = psycopg2.connect(**config.dsn_kwargs())
    conn.autocommit = True
    cur = conn.cursor()
    query = QUERIES["ping"]

    def ping(_: int) -> None:
        cur.execute(query)
        cur.fetchone()

    version = [1]

    def touch(_: int) -> None:
        cur.execute(QUERIES["bench_floor_update"], (version[0],))
        version[0] = cur.fetchone()[0]
    try:
        floor = timed(ping, sizes.floor, warmup=200)
        cur.execute(QUERIES["bench_floor_setup"])
        return floor, timed(touch, sizes.saves, warmup=100)
    finally:
        conn.close()


def part_store(config: DatabaseConfig, sizes: Sizes) -> dict[str, Stats]:
    store = Store(config)
    out: dict[str, Stats] = {}
    try:
        out["save_position_insert"] = timed(lambda i: store.book.save_position(bench_position(i + 100000)), sizes.saves)
        p = bench_position(1)
        store.book.save_position(p)

        def update(i: int) -> None:
            p.current_stop = Decimal(790 + (i % 9))
            store.book.save_position(p)
        out["save_position_update"] = timed(update, sizes.saves)
        out["get_position_cached"] = timed(lambda i: store.book.get_position("COPPER_Long_1"), sizes.cached_reads, 1000)

        def miss(i: int) -> None:
            store.book.invalidate()
            store.book.get_position("COPPER_Long_1")
        out["get_position_miss"] = timed(miss, sizes.misses)
    finally:
        store.close()
    return out


def part_open_lists(make: Callable[[str], DatabaseConfig], sizes: Sizes) -> dict[str, Stats]:
    out: dict[str, Stats] = {}
    for rows in (10, 1000):
        store = Store(make(f"open_{rows}"))
        try:
            for i in range(rows):
                store.book.save_position(bench_position(i))
            out[f"get_all_open_positions_{rows}"] = timed(lambda _: store.book.get_all_open_positions(),
                                                          sizes.open_lists, 10)
        finally:
            store.close()
    return out


def part_engine(config: DatabaseConfig, sizes: Sizes) -> tuple[Stats, dict[str, float]]:
    """Signals through the engine API as ``live`` runs it: validate, size, one atomic call; the paper
    fills go out on the background sender (their round trips counted apart, per batch)."""
    from pm_engine.store.outbox import DatabasePaperBroker

    store = Store(config)
    orders_db = Store(config)
    engine = TradingEngine(store=store, broker=DatabasePaperBroker(orders_db.orders), instance_id="bench",
                           max_signal_age=None, send_in_background=True)
    stream = mixed_stream(sizes.signals + 100, seed=11, duplicate_ratio=0.3)
    trips: dict[str, list[int]] = {}

    def one(i: int) -> None:
        before = store.round_trips
        result = engine.process_payload(stream[i + 100 if i >= 0 else -1 - i], check_time=False)
        trips.setdefault(result.outcome.value, []).append(store.round_trips - before)
    try:
        stats = timed(one, sizes.signals, warmup=100)
        engine.flush_orders(30)
        fills = orders_db.round_trips
    finally:
        engine.close()
        orders_db.close()
        store.close()
    per_outcome = {k: sum(v) / len(v) for k, v in trips.items()}
    total = sum(len(v) for v in trips.values())
    per_outcome["all"] = sum(sum(v) for v in trips.values()) / total
    per_outcome["max"] = max(max(v) for v in trips.values())
    per_outcome["order_sends"] = fills / (sizes.signals + 100)
    return stats, per_outcome


def engine_server(config: DatabaseConfig) -> EngineProcess:
    """A started ``live`` engine replaying recorded signals (no age limit)."""
    server = EngineProcess(config, SECRET, env={"PM_MAX_SIGNAL_AGE_S": "0"}).start()
    if not server.wait_ready():
        raise RuntimeError("engine did not start (run `pm-engine live` by hand to see why)")
    return server


class Client(KeepAliveClient):
    """A keep-alive sender of signals to one engine (one resend if the connection was dropped)."""

    def post_signal(self, body: bytes) -> tuple[int, Any]:
        headers = {"Content-Type": "text/plain", "X-PM-Secret": SECRET}
        try:
            return self.post("/webhook", body, headers)
        except (OSError, http.client.HTTPException):
            return self.post("/webhook", body, headers)


def part_webhook(config: DatabaseConfig, sizes: Sizes) -> Stats:
    server = engine_server(config)
    try:
        client = Client(server.port)
        bodies = [json.dumps(p).encode() for p in mixed_stream(sizes.webhooks + 100, seed=13, duplicate_ratio=0.0)]

        def send(i: int) -> None:
            status, answer = client.post_signal(bodies[i + 100 if i >= 0 else -1 - i])
            if status != 200:
                raise RuntimeError(f"webhook answered {status}: {answer}")
        return timed(send, sizes.webhooks, warmup=100)
    finally:
        server.stop()


def start_sim(api_key: str) -> tuple[subprocess.Popen[str], str]:
    """``pm-engine broker-sim`` on a free loopback port, with no latency: (the process, its base URL)."""
    sim = subprocess.Popen([sys.executable, "-m", "pm_engine", "broker-sim", "--port", "0", "--api-key", api_key],
                           stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert sim.stdout is not None
    line = sim.stdout.readline()
    if "OpenAlgo API on http://" not in line:
        sim.kill()
        raise RuntimeError(f"broker-sim did not start: {line!r}")
    return sim, line.split("on ", 1)[1].split("/api/v1/")[0]


def sim_control(url: str, name: str, document: dict[str, Any], key: str) -> Any:
    request = urllib.request.Request(f"{url}/sim/{name}", json.dumps(document).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def part_broker(config: DatabaseConfig, sizes: Sizes) -> dict[str, Stats]:
    """Alerts through a live engine to the broker simulator (no latency), one at a time: an entry, then its exit.

    Per alert, from the moment it is posted: until its order's ``sending`` is committed (the request leaves
    right after: alert → order request sent), and until the order is ``filled`` with its fills booked in the
    same transaction (alert → fill in the book); and the webhook's own answer time with a broker behind it.
    """
    key = secrets.token_urlsafe(24)
    sim, url = start_sim(key)
    server: Optional[EngineProcess] = None
    try:
        gold = ContractCalendar(DEFAULT_INSTRUMENTS).on("GOLD_MINI", date.today())
        assert gold is not None
        sim_control(url, "price", {"symbol": gold.symbol, "price": "75000"}, key)
        server = EngineProcess(config, SECRET, env={"PM_MAX_SIGNAL_AGE_S": "0", "PM_BROKER": "openalgo",
                                                    "PM_OPENALGO_URL": url, "PM_OPENALGO_API_KEY": key,
                                                    "PM_MARKET_HOURS": "always"}).start()
        if not server.wait_ready():
            raise RuntimeError("engine did not start (run `pm-engine live` by hand to see why)")
        client = Client(server.port)
        watch = psycopg2.connect(**config.dsn_kwargs())  # one connection polls for the fills (cheap beside them)
        watch.autocommit = True
        cur = watch.cursor()

        def filled() -> list[tuple[Any, ...]]:
            cur.execute(QUERIES["list_orders"], ("filled", None, 10000))
            return list(cur.fetchall())
        hook, posted = Stats(), []
        first = datetime.now(timezone.utc) - timedelta(minutes=sizes.broker_alerts + 1)
        for i in range(sizes.broker_alerts):
            now = (first + timedelta(minutes=i)).isoformat()  # one alert a bar: each its own fingerprint
            common = {"instrument": "GOLD_MINI", "price": 75000 + (i // 2) * 0.1, "atr": 400, "er": 0.8,
                      "supertrend": 74000, "lots": 1, "timestamp": now}
            body = ({**common, "type": "BASE_ENTRY", "position": "Long_1", "stop": 74300} if i % 2 == 0 else
                    {**common, "type": "EXIT", "position": "ALL", "reason": "SIGNAL"})
            wall, started = time.time(), time.perf_counter_ns()
            status, answer = client.post_signal(json.dumps(body).encode())
            hook.samples.append(time.perf_counter_ns() - started)
            if status != 200 or answer.get("outcome") != "executed":
                raise RuntimeError(f"webhook answered {status}: {answer}")
            posted.append(wall)
            deadline = time.monotonic() + 30
            while len(filled()) < i + 1:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"order {i + 1} not filled within 30 s")
                time.sleep(0.002)
        orders = sorted(filled(), key=lambda r: r[17])
        watch.close()
        sent, booked = Stats(), Stats()
        for wall, row in zip(posted, orders):
            sent.samples.append(int((row[18].timestamp() - wall) * 1e9))  # attempt_started_at: sending committed
            booked.samples.append(int((row[19].timestamp() - wall) * 1e9))  # state_changed_at: filled and booked
        return {"alert_to_order_sent": sent, "alert_to_fill_booked": booked, "webhook_with_broker": hook}
    finally:
        if server is not None:
            server.stop()
        sim.terminate()
        sim.wait(10)


@dataclass
class StreamResult:
    processes: int
    sent: int
    distinct: int
    seconds: float
    retried: int
    lost: int
    duplicated: int
    outcomes: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.sent / self.seconds


def part_stream(config: DatabaseConfig, processes: int, count: int, senders: int = 4) -> StreamResult:
    """``count`` mixed signals (30 % repeats, some to another process) through HTTP, then checked."""
    servers = [engine_server(config) for _ in range(processes)]
    stream = mixed_stream(count, seed=17, duplicate_ratio=0.3)
    work: "queue.Queue[tuple[int, bytes]]" = queue.Queue()
    for i, payload in enumerate(stream):
        work.put((i, json.dumps(payload).encode()))
    answers: list[Optional[str]] = [None] * len(stream)
    retried = [0]
    lock = threading.Lock()

    def sender(index: int) -> None:
        client = Client(servers[index % processes].port)
        while True:
            try:
                i, body = work.get_nowait()
            except queue.Empty:
                return
            for _ in range(50):
                try:
                    status, answer = client.post_signal(body)
                except (OSError, http.client.HTTPException):
                    status, answer = 0, {}
                if status == 200:
                    answers[i] = answer["outcome"]
                    break
                with lock:
                    retried[0] += 1  # 503 (nothing recorded) or no answer: resend, as TradingView would
                time.sleep(0.005)

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(max(senders, processes))]
    started = time.perf_counter()
    for t in threads:
        t.start()
    with tqdm(total=len(stream), desc=f"{processes} engine(s)", unit="sig", leave=False,
              disable=not sys.stderr.isatty()) as bar:
        while any(t.is_alive() for t in threads):
            time.sleep(0.2)
            bar.update(len(stream) - work.qsize() - bar.n)
    for t in threads:
        t.join()
    seconds = time.perf_counter() - started
    for server in servers:
        server.stop()
    return check_stream(config, stream, answers, processes, seconds, retried[0])


def check_stream(config: DatabaseConfig, stream: list[dict[str, Any]], answers: list[Optional[str]],
                 processes: int, seconds: float, retried: int) -> StreamResult:
    """Every distinct signal has exactly one outcome row; no fingerprint executed or ordered twice."""
    from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
    from pm_engine.core.signals import parse_signal

    fingerprints = [parse_signal(p, DEFAULT_INSTRUMENTS).fingerprint for p in stream]
    executed: dict[str, int] = {}
    for fp, answer in zip(fingerprints, answers):
        if answer == "executed":
            executed[fp] = executed.get(fp, 0) + 1
    logged = dict(fetch_all(config, "bench_logged_fingerprints"))
    multi_orders = int(fetch_all(config, "bench_orders_per_layer")[0][0])
    distinct = set(fingerprints)
    lost = len(distinct - set(logged)) + sum(1 for a in answers if a is None)
    duplicated = sum(1 for n in executed.values() if n > 1) + multi_orders
    outcomes: dict[str, int] = {}
    for status in logged.values():
        outcomes[status] = outcomes.get(status, 0) + 1
    return StreamResult(processes, len(stream), len(distinct), seconds, retried, lost, duplicated, outcomes)


def part_writers(config: DatabaseConfig, sizes: Sizes, writers: int = 10) -> tuple[float, int, int]:
    """``writers`` threads, each with its own connection pool, saving its own position repeatedly."""
    errors: list[BaseException] = []
    stores = [Store(config) for _ in range(writers)]

    def write(k: int) -> None:
        try:
            p = bench_position(k)
            stores[k].book.save_position(p)
            for i in range(sizes.writer_saves):
                p.current_stop = Decimal(790 + i % 9)
                stores[k].book.save_position(p)
        except BaseException as exc:  # noqa: BLE001 - counted and reported
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    seconds = time.perf_counter() - started
    saved = 0
    for k, store in enumerate(stores):
        stored = store.book.get_position(f"COPPER_Long_{k}")
        saved += int(stored is not None and stored.version == sizes.writer_saves + 1)
        store.close()
    return writers * (sizes.writer_saves + 1) / seconds, saved, len(errors)


# -- report --------------------------------------------------------------------------------------
def run_bench(quick: bool = False, json_path: Optional[str] = None, url: Optional[str] = None) -> dict[str, Any]:
    sizes = QUICK if quick else Sizes()
    dbs = Databases(url)
    results: dict[str, Any] = {"quick": quick, "machine": machine()}
    lines: list[str] = []
    try:
        floor_db = dbs.new("floor")
        floor, commit = part_floor(floor_db, sizes)
        f50 = floor.p50
        results["select1_p50_us"] = round(f50, 1)
        results["select1_p99_us"] = round(floor.p99, 1)

        def row(name: str, stats: Stats, target: str = "") -> None:
            results[f"{name}_p50_us"] = round(stats.p50, 2)
            results[f"{name}_p99_us"] = round(stats.p99, 2)
            results[f"{name}_max_us"] = round(stats.max, 2)
            line = (f"{name:<32} p50 {stats.p50:>9.1f} µs ({stats.p50 / f50:>6.2f}×)  p99 {stats.p99:>9.1f} µs "
                    f"({stats.p99 / f50:>6.2f}×)  max {stats.max:>9.1f} µs")
            lines.append(line + (f"   {target}" if target else ""))
            print(lines[-1], flush=True)

        print(f"\n{'operation':<32} (ratios to the SELECT 1 p50 of this run)")
        row("select1", floor)
        row("commit_floor", commit, "(smallest version-checked PL/pgSQL update: the fsync-bound floor)")
        store = part_store(dbs.new("store"), sizes)
        save_ok = store["save_position_update"].p50 <= 4 * f50
        cached_ok = store["get_position_cached"].p50 <= 5
        row("save_position_insert", store["save_position_insert"])
        row("save_position_update", store["save_position_update"],
            f"target ≤ 4× floor: {'MET' if save_ok else 'MISSED'} "
            f"({store['save_position_update'].p50 / commit.p50:.2f}× the commit floor)")
        row("get_position_cached", store["get_position_cached"], f"target ≤ 5 µs: {'MET' if cached_ok else 'MISSED'}")
        row("get_position_miss", store["get_position_miss"])
        for name, stats in part_open_lists(dbs.new, sizes).items():
            row(name, stats)
        engine_stats, trips = part_engine(dbs.new("engine"), sizes)
        row("engine_signal", engine_stats)
        results["round_trips_per_signal"] = round(trips["all"], 3)
        results["round_trips_by_outcome"] = {k: round(v, 3) for k, v in trips.items()}
        trips_ok = trips["max"] <= 2
        print(f"{'round trips per signal':<32} mean {trips['all']:.2f}, max {trips['max']:.0f}  "
              f"({', '.join(f'{k} {v:.2f}' for k, v in trips.items() if k not in ('all', 'max', 'order_sends'))}"
              f"; plus {trips['order_sends']:.2f} per signal for the batched paper fills)   "
              f"target ≤ 2: {'MET' if trips_ok else 'MISSED'}", flush=True)
        hook = part_webhook(dbs.new("webhook"), sizes)
        web_ok = hook.p99 <= 3000
        row("webhook", hook, f"target p99 ≤ 3 ms: {'MET' if web_ok else 'MISSED'}")
        results["webhook_p50_us"], results["webhook_p99_us"] = round(hook.p50, 1), round(hook.p99, 1)
        print(f"\nbroker: {sizes.broker_alerts} alerts (entry, exit, ...) one at a time through an engine to the "
              "broker simulator (no latency); ratios to the SELECT 1 p50, and to the commit floor's p50:")
        for name, stats in part_broker(dbs.new("broker"), sizes).items():
            row(name, stats, f"p50 {stats.p50 / commit.p50:.2f}×, p99 {stats.p99 / commit.p50:.2f}× the commit floor")
            results[f"{name}_commit_floor_ratio"] = {"p50": round(stats.p50 / commit.p50, 2),
                                                     "p99": round(stats.p99 / commit.p50, 2)}

        print(f"\nthroughput: {sizes.stream} mixed signals (30 % repeats) over HTTP from 4 concurrent senders, "
              "engines sharing one database")
        streams = []
        for processes in (1, 2, 4):
            result = part_stream(dbs.new(f"stream_{processes}"), processes, sizes.stream)
            streams.append(result)
            print(f"  {processes} process(es): {result.per_second:>7.0f} signals/s  ({result.sent} sent, "
                  f"{result.distinct} distinct, {result.retried} resent after 503, lost {result.lost}, "
                  f"duplicated {result.duplicated}; outcomes {result.outcomes})", flush=True)
        best = max(s.per_second for s in streams)
        results["streams"] = [{"processes": s.processes, "signals_per_s": round(s.per_second, 1), "sent": s.sent,
                               "retried": s.retried, "lost": s.lost, "duplicated": s.duplicated}
                              for s in streams]
        results["signals_per_s"] = round(best, 1)
        results["lost"] = sum(s.lost for s in streams)
        results["duplicated"] = sum(s.duplicated for s in streams)
        throughput_ok = best >= 1000 and results["lost"] == 0 and results["duplicated"] == 0
        print(f"  best {best:.0f} signals/s, lost {results['lost']}, duplicated {results['duplicated']}   "
              f"target ≥ 1000/s, 0 lost, 0 duplicated: {'MET' if throughput_ok else 'MISSED'}")

        rate, saved, errors = part_writers(dbs.new("writers"), sizes)
        results["concurrent_writers"] = {"writers": 10, "saves_per_s": round(rate, 1), "all_saved": saved == 10,
                                         "errors": errors}
        print(f"\n10 concurrent save_position writers: {rate:.0f} saves/s, {saved}/10 positions at their final "
              f"version, {errors} errors (no deadlock)")
        results["targets"] = {"save_position_update": save_ok, "get_position_cached": cached_ok,
                              "round_trips": trips_ok, "webhook_p99": web_ok, "throughput": throughput_ok}
    finally:
        dbs.close()
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults written to {json_path}")
    return results


def run_ha_bench(quick: bool = False, json_path: Optional[str] = None) -> dict[str, Any]:
    """What a synchronous standby costs a signal: the same parts on a single node and on the primary of a
    pg_auto_failover formation (monitor + primary + synchronous standby on loopback), in one run."""
    from pm_engine.tools.formation import Formation

    sizes = QUICK if quick else Sizes()
    results: dict[str, Any] = {"quick": quick, "machine": machine()}
    single = Databases(None)
    formation: Optional[Formation] = None
    ha: Optional[Databases] = None
    try:
        print("starting a pg_auto_failover formation (monitor, primary, synchronous standby) ...", flush=True)
        formation = Formation(synchronous=True).start()
        ha = Databases(replace(formation.config(), database="postgres").url(hide_password=False))
        measured: dict[str, dict[str, Stats]] = {}
        for label, dbs in (("single", single), ("ha", ha)):
            floor, commit = part_floor(dbs.new("floor"), sizes)
            engine_stats, _ = part_engine(dbs.new("engine"), sizes)
            hook = part_webhook(dbs.new("webhook"), sizes)
            measured[label] = {"select1": floor, "commit_floor": commit, "engine_signal": engine_stats,
                               "webhook": hook}
        print(f"\n{'operation':<16} {'single node p50':>16} {'p99':>10} {'sync standby p50':>18} {'p99':>10} "
              f"{'ratio p50':>10} {'ratio p99':>10}")
        for name in ("select1", "commit_floor", "engine_signal", "webhook"):
            one, two = measured["single"][name], measured["ha"][name]
            results[name] = {"single_p50_us": round(one.p50, 1), "single_p99_us": round(one.p99, 1),
                             "ha_p50_us": round(two.p50, 1), "ha_p99_us": round(two.p99, 1),
                             "ratio_p50": round(two.p50 / one.p50, 2), "ratio_p99": round(two.p99 / one.p99, 2)}
            r = results[name]
            print(f"{name:<16} {one.p50:>13.1f} µs {one.p99:>7.1f} µs {two.p50:>15.1f} µs {two.p99:>7.1f} µs "
                  f"{r['ratio_p50']:>9.2f}× {r['ratio_p99']:>9.2f}×", flush=True)
    finally:
        single.close()
        if ha is not None:
            ha.close()
        if formation is not None:
            formation.destroy()
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults written to {json_path}")
    return results


def machine() -> str:
    import platform

    return f"{platform.system()} {platform.release()}, Python {platform.python_version()}, {os.cpu_count()} cores"
