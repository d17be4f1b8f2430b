"""Concurrency parts: a signal stream over several engine processes (checked against the database) and
concurrent writers of one book."""

from __future__ import annotations

import http.client
import json
import queue
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Optional

from tqdm import tqdm

from pm_engine.store.connection import DatabaseConfig
from pm_engine.store.gateway import Store
from pm_engine.tools.bench.measure import Sizes, bench_position
from pm_engine.tools.bench.store import Client, engine_server
from pm_engine.tools.children import fetch_all
from pm_engine.tools.samples import mixed_stream


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
