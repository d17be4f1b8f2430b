"""The store's parts: the SELECT 1 floor, saves and cached reads, open-position lists, the engine in process, and
the webhook of an engine child process."""

from __future__ import annotations

import http.client
import json
from decimal import Decimal
from typing import Any, Callable

import psycopg2

from pm_engine.core.engine import TradingEngine
from pm_engine.store.connection import DatabaseConfig
from pm_engine.store.gateway import Store
from pm_engine.tools.queries import QUERIES
from pm_engine.tools.bench.measure import SECRET, Sizes, Stats, bench_position, timed
from pm_engine.tools.children import EngineProcess, KeepAliveClient
from pm_engine.tools.samples import mixed_stream


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
