"""Issue 13 through real HTTP against real engine processes on a real PostgreSQL: read access, sessions,
brute force, the refusal audit, trading mode across instances, manual exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.tools.children import EngineProcess
from pm_engine.web.access import SESSION_COOKIE, Access
from tests.helpers import payload, rows

SECRET = "access-webhook-secret-0123456789"
TOKEN = "access-read-token-abcdefghijklmnop"
READ_ROUTES = ["/status", "/db/status", "/equity", "/trades", "/stats", "/control", "/docs", "/redoc",
               "/openapi.json", "/metrics", "/dashboard/data", "/"]


def now_minus(minutes: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat()


def entry(instrument: str = "BANK_NIFTY", minutes: float = 3, price: float = 52000) -> dict[str, Any]:
    return payload("BASE_ENTRY", instrument, "Long_1", price, now_minus(minutes), stop=price * 0.993,
                   atr=price * 0.0067, er=0.85)


class Server(EngineProcess):
    def __init__(self, config: DatabaseConfig, log: Path, **env: str) -> None:
        super().__init__(config, SECRET, log=log, env={"PM_READ_TOKEN": TOKEN, **env})
        self.start()
        assert self.wait_ready(30), "engine did not start"
        self.url = f"http://127.0.0.1:{self.port}"

    def post(self, body: dict[str, Any], **kwargs: Any) -> httpx.Response:
        return httpx.post(self.url + "/webhook", json={**body, "secret": SECRET}, timeout=10, **kwargs)


@pytest.fixture
def servers(db_config: DatabaseConfig, tmp_path: Path) -> Iterator[list[Server]]:
    started: list[Server] = []

    def make(**env: str) -> Server:
        server = Server(db_config, tmp_path / f"engine{len(started)}.log", **env)
        started.append(server)
        return server
    yield started  # type: ignore[misc]
    for server in started:
        server.stop()


def bearer(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_read_route_needs_the_token_or_a_live_session(db_config: DatabaseConfig, tmp_path: Path) -> None:
    server = Server(db_config, tmp_path / "engine.log")
    try:
        expired = Access(TOKEN, session_s=60, clock=lambda: time.time() - 3600).new_session()
        forged = Access("another-token", session_s=3600).new_session()
        for i, route in enumerate(READ_ROUTES):
            refused = 303 if route == "/" else 401  # the dashboard sends a browser to its login page
            assert httpx.get(server.url + route).status_code == refused, route
            if i < 8:  # a bad Bearer token counts as a guess: ten this minute lock the address out (with the bad login)
                assert httpx.get(server.url + route, headers=bearer("wrong")).status_code == 401, route
            assert httpx.get(server.url + route, cookies={SESSION_COOKIE: expired}).status_code == refused, route
            assert httpx.get(server.url + route, cookies={SESSION_COOKIE: forged}).status_code == refused, route
            assert httpx.get(server.url + route, headers=bearer()).status_code == 200, route
        login = httpx.post(server.url + "/login", data={"token": TOKEN}, follow_redirects=False)
        assert login.status_code == 303
        cookie = login.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=43200" in cookie
        session = {SESSION_COOKIE: login.cookies[SESSION_COOKIE]}
        assert httpx.get(server.url + "/status", cookies=session).status_code == 200
        assert httpx.post(server.url + "/login", data={"token": "nope"}).status_code == 401
        health, ready = httpx.get(server.url + "/health"), httpx.get(server.url + "/ready")
        # nothing about the book or the database; the broker's state (issue 21), without its message
        assert health.json() == {"status": "ok"}
        assert ready.json() == {"ready": True, "broker": {"state": "paper", "text": "paper broker"}}
        # a session may steer only with its CSRF token; the token's bearer needs none
        body = {"mode": "exits_only", "reason": "test"}
        assert httpx.post(server.url + "/control", json=body, cookies=session).status_code == 403
        scripted = httpx.post(server.url + "/login", json={"token": TOKEN})  # a session of its own, and its CSRF token
        csrf, session = scripted.json()["csrf_token"], {SESSION_COOKIE: scripted.cookies[SESSION_COOKIE]}
        assert csrf == Access(TOKEN).csrf_token(scripted.cookies[SESSION_COOKIE])
        other = Access(TOKEN).csrf_token(login.cookies[SESSION_COOKIE])  # bound to its session: not another's
        assert httpx.post(server.url + "/control", json=body, cookies=session,
                          headers={"X-CSRF-Token": other if other != csrf else "x"}).status_code == 403
        changed = httpx.post(server.url + "/control", json=body, cookies=session, headers={"X-CSRF-Token": csrf})
        assert changed.status_code == 200 and changed.json()["changed_by"].startswith("dashboard:")
        assert httpx.post(server.url + "/control", json={"mode": "active"}, headers=bearer()).json()["mode"] == "active"
        bad = httpx.post(server.url + "/control", json={"mode": "exits_only"}, headers=bearer())
        assert bad.status_code == 422 and bad.json()["field"] == "reason"
    finally:
        server.stop()
    log = (tmp_path / "engine.log").read_text()
    assert TOKEN not in log and SECRET not in log


def test_without_a_token_reads_answer_this_machine_only(db_config: DatabaseConfig, tmp_path: Path) -> None:
    server = EngineProcess(db_config, SECRET, log=tmp_path / "e.log").start()
    try:
        assert server.wait_ready(30)
        url = f"http://127.0.0.1:{server.port}"
        assert httpx.get(url + "/status").status_code == 200  # loopback
        relayed = httpx.get(url + "/status", headers={"X-Forwarded-For": "198.51.100.7"})
        assert relayed.status_code == 401 and "this machine only" in relayed.json()["error"]
    finally:
        server.stop()


def test_the_eleventh_bad_secret_in_a_minute_gets_429_and_each_refusal_its_audit_row(
        db_config: DatabaseConfig, tmp_path: Path) -> None:
    server = Server(db_config, tmp_path / "engine.log")
    try:
        body = entry()
        answers = [httpx.post(server.url + "/webhook", json={**body, "secret": f"guess-{i}"}) for i in range(11)]
        assert [a.status_code for a in answers] == [401] * 10 + [429]
        assert 1 <= int(answers[-1].headers["Retry-After"]) <= 60
        assert server.post(body).json()["outcome"] == "executed"  # the right secret is still served
        bad = server.post({**body, "price": "lots"})
        assert bad.status_code == 422
        assert httpx.post(server.url + "/webhook", content=b"x" * 70_000).status_code == 413
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and rows(db_config, "SELECT count(*) FROM pm.request_log")[0][0] < 13:
            time.sleep(0.1)
        logged = rows(db_config, "SELECT status, field, body_excerpt, body_sha256, user_agent FROM pm.request_log "
                                 "ORDER BY id")
        assert [r[0] for r in logged] == [401] * 10 + [429, 422, 413]
        assert logged[11][1] == "price" and all(len(r[3]) == 64 for r in logged)
        assert all("guess-" not in r[2] and SECRET not in r[2] for r in logged)  # secrets masked
        assert len(logged[12][2].encode()) <= 2048 and logged[0][4].startswith("python-httpx")
        assert rows(db_config, "SELECT count(*) FROM pm.signal_log") == [(1,)]  # refusals wrote nothing else
        status = httpx.get(server.url + "/status", headers=bearer()).json()
        assert status["refusal_audit"]["written"] == 13 and status["refusal_audit"]["dropped"] == 0
        listed = subprocess.run([sys.executable, "-m", "pm_engine", "refusals", "--json"], capture_output=True,
                                text=True, timeout=60, env={**os.environ, "DATABASE_URL": db_config.url(False)})
        assert listed.returncode == 0 and len(json.loads(listed.stdout)) == 13
    finally:
        server.stop()
    log = (tmp_path / "engine.log").read_text()
    assert log.count("webhook refused: missing or bad secret") == 1  # one line per address and window
    assert SECRET not in log and "guess-" not in log


def test_pause_is_obeyed_by_every_instance_at_once(db_config: DatabaseConfig, servers: list[Server],
                                                   tmp_path: Path) -> None:
    a = Server(db_config, tmp_path / "a.log")
    b = Server(db_config, tmp_path / "b.log")
    servers.extend([a, b])
    env = {**os.environ, "DATABASE_URL": db_config.url(False)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pm_engine", *args], capture_output=True, text=True, env=env,
                              timeout=60)

    assert a.post(entry("GOLD_MINI", 4, 78000)).json()["outcome"] == "executed"
    paused = cli("pause", "--reason", "results day")
    assert paused.returncode == 0 and "exits_only" in paused.stdout
    answers = [a.post(entry("BANK_NIFTY", 3)).json(), b.post(entry("COPPER", 3, 800)).json()]
    assert [x["outcome"] for x in answers] == ["blocked", "blocked"]
    assert all(x["reason"] == "trading paused (exits only): results day" for x in answers)
    exit_ = payload("EXIT", "GOLD_MINI", "ALL", 78100, now_minus(2), reason="SIGNAL")
    assert b.post(exit_).json()["outcome"] == "executed"
    mode = json.loads(cli("mode", "--json").stdout)
    assert mode["mode"] == "exits_only" and mode["changed_by"].startswith("cli:")
    assert cli("resume", "--reason", "done").returncode == 0
    again = [a.post(entry("BANK_NIFTY", 1)).json(), b.post(entry("COPPER", 1, 800)).json()]
    assert [x["outcome"] for x in again] == ["executed", "executed"]
    assert rows(db_config, "SELECT count(*) FROM pm.signal_log WHERE reason LIKE 'trading paused%'") == [(2,)]


def test_manual_exit_over_http_and_cli_and_anomalies(db_config: DatabaseConfig, servers: list[Server],
                                                     tmp_path: Path) -> None:
    server = Server(db_config, tmp_path / "engine.log")
    servers.append(server)
    entered = server.post(entry("BANK_NIFTY", 5)).json()
    assert entered["outcome"] == "executed"
    assert server.post(entry("GOLD_MINI", 5, 78000)).json()["outcome"] == "executed"
    missing = httpx.post(server.url + "/positions/BANK_NIFTY_Long_4/exit", json={"reason": "x"}, headers=bearer())
    assert missing.status_code == 404
    closed = httpx.post(server.url + "/positions/BANK_NIFTY_Long_1/exit", json={"reason": "flatten", "price": 52100},
                        headers=bearer())
    assert closed.status_code == 200 and closed.json()["outcome"] == "executed"
    assert closed.json()["realized_pnl"] == f"{100 * entered['lots'] * 30}.00"  # (52,100 - 52,000) x lots x 30
    env = {**os.environ, "DATABASE_URL": db_config.url(False)}
    done = subprocess.run([sys.executable, "-m", "pm_engine", "exit", "GOLD_MINI", "--reason", "risk off"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0 and done.stdout.startswith("executed")
    reasons = rows(db_config, "SELECT exit_reason FROM pm.portfolio_positions WHERE status = 'closed' ORDER BY 1")
    assert reasons == [("MANUAL: FLATTEN",), ("MANUAL: RISK OFF",)]
    assert rows(db_config, "SELECT count(*), count(DISTINCT fingerprint) FROM pm.broker_orders WHERE side = 'SELL'") \
        == [(2, 2)]
    # anomalies: an exit for a layer never open, a pyramid with no base
    assert server.post(payload("EXIT", "COPPER", "Long_1", 800, now_minus(1), reason="SIGNAL")).json()["outcome"] \
        == "blocked"
    assert server.post(payload("PYRAMID", "COPPER", "Long_2", 800, now_minus(1), stop=790, atr=5)).json()["anomaly"] \
        == "pyramid_without_base"
    listed = subprocess.run([sys.executable, "-m", "pm_engine", "anomalies", "--json"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert sorted(r["kind"] for r in json.loads(listed.stdout)) == ["exit_never_open", "pyramid_without_base"]
    assert httpx.get(server.url + "/status", headers=bearer()).json()["anomalies"] == {
        "exit_never_open": 1, "pyramid_without_base": 1}


def test_locks_and_breakers_from_the_cli(db_config: DatabaseConfig, servers: list[Server], tmp_path: Path) -> None:
    server = Server(db_config, tmp_path / "engine.log")
    servers.append(server)
    env = {**os.environ, "DATABASE_URL": db_config.url(False)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "pm_engine", *args], capture_output=True, text=True, env=env,
                              timeout=60)

    assert cli("lock", "COPPER", "--for", "2h", "--reason", "contract roll").returncode == 0
    blocked = server.post(entry("COPPER", 1, 800)).json()
    assert blocked["outcome"] == "blocked" and blocked["reason"].startswith("instrument COPPER locked until")
    assert "contract roll" in cli("mode").stdout
    assert cli("unlock", "COPPER").stdout.strip() == "COPPER: 1 lock(s) released"
    assert server.post(entry("COPPER", 0.5, 800)).json()["outcome"] == "executed"
    set_ = cli("breakers", "set", "--max-entries-per-day", "3", "--daily-loss-pct", "2.5")
    assert set_.returncode == 0, set_.stderr
    shown = json.loads(cli("breakers", "--json").stdout)
    assert shown["max_entries_per_day"] == 3 and shown["daily_loss_pct"] == "2.500"
    assert cli("breakers", "set", "--daily-loss-pct", "off").returncode == 0
    assert json.loads(cli("breakers", "--json").stdout)["daily_loss_pct"] is None
    wrong = cli("breakers", "set", "--cooling-off-losses", "2")
    assert wrong.returncode == 2 and "cooling" in wrong.stderr
    assert cli("lock", "COPPER", "--for", "soon", "--reason", "x").returncode == 2
    assert cli("pause", "--reason", "").returncode == 2


METRICS = ["pm_signals_total", "pm_webhook_latency_seconds_count", "pm_refusals_total", "pm_anomalies",
           "pm_database_round_trip_seconds", "pm_pool_connections_in_use", "pm_leader", "pm_trading_mode",
           "pm_closed_equity_rupees", "pm_open_equity_rupees", "pm_orders_pending", "pm_seconds_since_last_signal"]


def test_metrics_with_the_token_or_on_the_loopback_port(db_config: DatabaseConfig, tmp_path: Path) -> None:
    from pm_engine.ops.cluster import free_port

    port = free_port()
    server = EngineProcess(db_config, SECRET, log=tmp_path / "engine.log", env={"PM_READ_TOKEN": TOKEN},
                           args=("--metrics-port", str(port))).start()
    try:
        assert server.wait_ready(30)
        url = f"http://127.0.0.1:{server.port}"
        httpx.post(url + "/webhook", json={**entry(), "secret": SECRET})
        httpx.post(url + "/webhook", json={**entry(), "secret": "wrong"})
        assert httpx.get(url + "/metrics").status_code == 401
        text = httpx.get(url + "/metrics", headers=bearer()).text
        values = {line.split(" ")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith("pm_")}
        for name in METRICS:
            assert any(key.split("{")[0] == name for key in values), name
        assert values['pm_signals_total{outcome="executed"}'] == 1.0
        assert values['pm_refusals_total{status="401"}'] == 1.0
        assert values['pm_trading_mode{mode="active"}'] == 1.0 and values["pm_closed_equity_rupees"] == 5e6
        assert 0 <= values["pm_seconds_since_last_signal"] < 60
        side = httpx.get(f"http://127.0.0.1:{port}/metrics")  # no token: loopback only
        assert side.status_code == 200 and "pm_signals_total" in side.text
    finally:
        server.stop()
