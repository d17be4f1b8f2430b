"""The broker part: orders over HTTP to the broker simulator in a child process, as the live sender sends them."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from datetime import date, datetime, timedelta, timezone
from typing import Any, Optional

import psycopg2

from pm_engine.core.contracts import ContractCalendar
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.store.connection import DatabaseConfig
from pm_engine.tools.queries import QUERIES
from pm_engine.tools.bench.measure import SECRET, Sizes, Stats
from pm_engine.tools.bench.store import Client
from pm_engine.tools.children import EngineProcess


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
