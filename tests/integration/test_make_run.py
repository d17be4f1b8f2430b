"""`make run` end to end: embedded cluster, printed curl line, status, Ctrl+C, and state kept across runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from typing import Any

import httpx
import psycopg2
import pytest

from pm_engine.core.contracts import ContractCalendar, ist_date
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.ops.cluster import find_bindir, free_port


def start(var: Path, port: int, embedded: str, *extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PM_WEBHOOK_SECRET", "PM_READ_TOKEN")}
    env.update(PM_VAR_DIR=str(var), PM_EMBEDDED=embedded)
    proc = subprocess.Popen([sys.executable, "-m", "pm_engine", "run", "--port", str(port), *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "serving http" in line:  # printed just before uvicorn binds: wait until it answers
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        return proc, lines
                except httpx.TransportError:
                    time.sleep(0.05)
            break
    proc.kill()
    raise AssertionError("make run did not start:\n" + "".join(lines))


def status(var: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "pm_engine", "status"], env={**env, "PM_VAR_DIR": str(var)},
                          capture_output=True, text=True, timeout=30, check=True).stdout


def assert_private(var: Path, port: int, state: dict[str, Any], lines: list[str]) -> None:
    """Issue 19: the database asks everyone for its password, and the dashboard for the printed read token."""
    host = state.get("socket_dir") or "127.0.0.1"
    with pytest.raises(psycopg2.OperationalError):  # no password: refused, whoever asks
        psycopg2.connect(host=host, port=state["port"], user="postgres", dbname="postgres", password="",
                         connect_timeout=5).close()
    psycopg2.connect(host=host, port=state["port"], user="postgres", dbname="postgres",
                     password=state["db_password"], connect_timeout=5).close()
    psql = find_bindir() / "psql"  # type: ignore[operator]
    as_nobody = (["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []) + [
        str(psql), "-h", host, "-p", str(state["port"]), "-U", "postgres", "-w", "-c", "SELECT 1", "postgres"]
    tried = subprocess.run(as_nobody, capture_output=True, text=True, timeout=30,
                           env={k: v for k, v in os.environ.items() if not k.startswith("PG")})
    assert tried.returncode != 0, tried.stdout
    token = state["read_token"]
    assert len(token) >= 24 and any(token in line and "log in" in line for line in lines)
    assert httpx.get(f"http://127.0.0.1:{port}/status").status_code == 401  # no longer open to every local page
    assert httpx.get(f"http://127.0.0.1:{port}/status", headers={"Authorization": f"Bearer {token}"}).status_code \
        == 200


@pytest.mark.parametrize("embedded", ["installed", "pgserver"])
def test_make_run_curl_status_restart(tmp_path: Path, embedded: str) -> None:
    var, port = tmp_path / "var", free_port()
    proc, lines = start(var, port, embedded)
    try:
        assert any(f"embedded PostgreSQL folder: {var}" in line for line in lines), lines  # said at start (issue 28)
        curl = next(line for line in lines if "curl -s -X POST" in line)
        body = re.search(r"-d '(.*)'", curl)
        assert body is not None
        sent = httpx.post(f"http://127.0.0.1:{port}/webhook", content=body.group(1),
                          headers={"Content-Type": "text/plain"}, timeout=10)
        assert sent.json()["outcome"] == "executed", sent.text
        shown = status(var)
        assert "BANK_NIFTY_Long_1" in shown
        contract = ContractCalendar(DEFAULT_INSTRUMENTS).on("BANK_NIFTY", ist_date(datetime.now(timezone.utc)))
        assert contract is not None and f"{contract.symbol} (expiry {contract.expiry.isoformat()}" in shown
        state = json.loads((var / "embedded.json").read_text())
        secret = state["webhook_secret"]
        assert oct((var / "embedded.json").stat().st_mode)[-3:] == "600" and secret in curl
        assert_private(var, port, state, lines)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    stopped = subprocess.run([sys.executable, "-m", "pm_engine", "status"], capture_output=True, text=True,
                             env={**os.environ, "PM_VAR_DIR": str(var)}, timeout=30)
    assert stopped.returncode == 1 and "is `make run` running?" in stopped.stderr  # clear, and fast
    proc, _ = start(var, port, embedded)
    try:
        assert "BANK_NIFTY_Long_1" in status(var)  # the same state on the next run
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0


def test_make_run_switches_an_older_trusting_cluster_to_a_password(tmp_path: Path) -> None:
    """A var/ made before issue 19 (trust authentication, no password or token in the state file) is upgraded."""
    from pm_engine.ops.cluster import LocalCluster

    var, port = tmp_path / "var", free_port()
    old = LocalCluster(var / "pgdata", port=free_port())  # what an older make run created: trust
    old.start()
    old.stop()
    var.joinpath("embedded.json").write_text(json.dumps({"port": old.port, "webhook_secret": "s" * 32}))
    os.chmod(var / "embedded.json", 0o644)
    proc, lines = start(var, port, "installed")
    try:
        assert any("asks every connection for its password" in line for line in lines)
        state = json.loads((var / "embedded.json").read_text())
        assert oct((var / "embedded.json").stat().st_mode)[-3:] == "600" and state["webhook_secret"] == "s" * 32
        assert_private(var, port, state, lines)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0


def test_make_run_with_the_broker_simulator_trades_the_whole_loop(tmp_path: Path) -> None:
    """Issue 21: `pm-engine run --broker sim` starts the simulator beside the engine; the printed alert's order
    goes over HTTP to it, fills at the signal's price and is booked from its trade book."""
    var, port = tmp_path / "var", free_port()
    proc, lines = start(var, port, "installed", "--broker", "sim", "--sim-port", "0")
    try:
        [sim] = [line for line in lines if line.startswith("broker-sim: OpenAlgo API on http://127.0.0.1:")]
        sim_url = sim.split("on ", 1)[1].split("/api/v1/")[0]
        # issue 29: the simulator's book is a database of its own (var/sim/), never the one make run trades from
        assert any(f"its own database under {var / 'sim'}" in line for line in lines), lines
        assert not (var / "embedded.json").exists() and not (var / "pgdata").exists()
        token = json.loads((var / "sim" / "embedded.json").read_text())["read_token"]
        [key] = [line.rsplit(": ", 1)[1].strip() for line in lines
                 if line.startswith("broker-sim: the API and the controls")]
        auth = {"Authorization": f"Bearer {token}"}
        curl = next(line for line in lines if "curl -s -X POST" in line)
        body = re.search(r"-d '(.*)'", curl)
        assert body is not None
        alert = json.loads(body.group(1))
        sent = httpx.post(f"http://127.0.0.1:{port}/webhook", content=body.group(1),
                          headers={"Content-Type": "text/plain"}, timeout=10)
        assert sent.json()["outcome"] == "executed", sent.text
        deadline = time.monotonic() + 30
        orders: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not (orders and orders[0]["state"] == "filled"):
            time.sleep(0.2)
            orders = httpx.get(f"http://127.0.0.1:{port}/orders", headers=auth, timeout=5).json()["orders"]
        [order] = orders
        assert order["state"] == "filled", order
        # issue 29: the controls need the simulator's key; a body of unknown length is refused unread
        assert httpx.get(sim_url + "/sim/state", timeout=5).status_code == 401
        price = httpx.post(sim_url + "/sim/price", json={"symbol": order["symbol"], "price": 1}, timeout=5)
        assert price.status_code == 401 and "need its API key" in price.text
        wrong = httpx.post(sim_url + "/sim/reset", json={}, headers={"Authorization": "Bearer " + key[:-1]},
                           timeout=5)
        assert wrong.status_code == 401
        at_sim = httpx.get(sim_url + "/sim/state", headers={"Authorization": f"Bearer {key}"}, timeout=5).json()
        assert [o["orderid"] for o in at_sim["orders"]] == [order["broker_order_id"]]
        [position] = httpx.get(f"http://127.0.0.1:{port}/status", headers=auth, timeout=5).json()["positions"]
        price = f"{alert['price']:.2f}"
        assert (position["symbol"], position["entry_price"], position["signal_price"]) == \
            (order["symbol"], price, price)
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=5).json()
        assert ready["ready"] is True and ready["broker"]["state"] == "ok"
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", headers=auth, timeout=5).text
        assert 'pm_broker_state{state="ok"} 1.0' in metrics and "pm_broker_state_seconds" in metrics
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
