"""What the bench measures with: the sizes of a run, a timing and its statistics, fresh databases per part."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Optional

import psycopg2
import psycopg2.sql

from pm_engine.core.models import Position
from pm_engine.ops.cluster import LocalCluster, temporary_cluster
from pm_engine.store.connection import DatabaseConfig
from pm_engine.store.deploy import deploy
from pm_engine.tools.queries import QUERIES


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
