"""Issue 19 through real HTTP against real engine processes on a real PostgreSQL: bodies streamed with a cap,
the allow-list before the body, the refusal audit's global budget, guessing slowed for the read token, clear 4xx
for hostile input, secrets masked after decoding, revocable sessions, slow headers timed out, framing and nosniff
headers, retention floors, the dashboard's sampled curve, and the cross-site rules for non-browser clients (the
browser's own attack is tests/browser/test_cross_site.py)."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import psycopg2
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.store.errors import RetentionFloorError
from pm_engine.store.gateway import Store
from pm_engine.tools.children import EngineProcess, KeepAliveClient
from pm_engine.web.access import SESSION_COOKIE
from tests.helpers import rows
from tests.integration.test_access import SECRET, TOKEN, Server, bearer, entry

MiB = 1024 * 1024


@pytest.fixture
def server(db_config: DatabaseConfig, tmp_path: Path) -> Iterator[Server]:
    started = Server(db_config, tmp_path / "engine.log")
    yield started
    started.stop()


def peak_rss_kb(pid: int) -> int:
    """The process's resident-set high-water mark (VmHWM): the most memory it has ever held."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def chunked_flood(port: int, path: str, total: int, headers: str = "") -> bytes:
    """Send a ``total``-byte chunked body in 1 MiB chunks until done or the server closes; what it answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    answer = b""
    try:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
                     f"Content-Type: application/json\r\n{headers}\r\n".encode())
        chunk = b"%x\r\n" % MiB + b"7" * MiB + b"\r\n"
        try:
            for _ in range(total // MiB):
                sock.sendall(chunk)
        except OSError:  # closed by the server once the cap was passed: the point
            pass
        try:
            while True:
                got = sock.recv(65536)
                if not got:
                    break
                answer += got
        except OSError:
            pass
    finally:
        sock.close()
    return answer


def test_hostile_bodies_are_capped_while_streaming(server: Server, db_config: DatabaseConfig) -> None:
    assert server.proc is not None
    for _ in range(20):  # warm up every route the flood meets, so what follows is the flood's own cost
        server.post(entry())
        httpx.post(server.url + "/login", data={"token": "x" * 30})
        httpx.post(server.url + "/webhook", content=b"x" * 70_000)
    time.sleep(0.5)
    before = peak_rss_kb(server.proc.pid)
    answers = [chunked_flood(server.port, path, 100 * MiB) for path in ("/webhook", "/login", "/webhook", "/login")]
    declared = httpx.post(server.url + "/webhook", content=b"y" * (2 * MiB))  # a declared length past the cap
    after = peak_rss_kb(server.proc.pid)
    assert after - before < 20 * 1024, f"peak memory grew {after - before} kB"
    assert all(a == b"" or a.startswith(b"HTTP/1.1 413") for a in answers), answers
    assert declared.status_code == 413
    assert server.post(entry("GOLD_MINI", 2, 78000)).json()["outcome"] == "executed"  # still serving
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not rows(db_config, "SELECT count(*) FROM pm.request_log "
                                                              "WHERE status = 413 AND route = '/login'")[0][0]:
        time.sleep(0.1)
    assert rows(db_config, "SELECT count(*) FROM pm.request_log WHERE status = 413 AND route = '/login'")[0][0] >= 1


def test_the_allow_list_answers_before_the_body_is_read(db_config: DatabaseConfig, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"local": {"allowed_ips": ["203.0.113.7"]}}))
    engine = EngineProcess(db_config, SECRET, log=tmp_path / "e.log", args=("--db-config", str(config))).start()
    try:
        assert engine.wait_ready(30)
        sock = socket.create_connection(("127.0.0.1", engine.port), timeout=5)
        try:  # the head alone, and a body that never comes: the answer must not wait for it
            sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            answer = sock.recv(65536)
        finally:
            sock.close()
        assert answer.startswith(b"HTTP/1.1 403"), answer
    finally:
        engine.stop()


def test_refusals_from_rotating_addresses_stay_inside_the_global_budget(db_config: DatabaseConfig,
                                                                        tmp_path: Path) -> None:
    engine = EngineProcess(db_config, SECRET, log=tmp_path / "e.log", env={"PM_READ_TOKEN": TOKEN},
                           args=("--proxy-headers",)).start()
    try:
        assert engine.wait_ready(30)
        body = json.dumps({**entry(), "secret": "wrong", "padding": "p" * 1500}).encode()
        sent = [0]

        def flood(seconds: float) -> None:
            client = KeepAliveClient(engine.port)
            rng = random.Random()
            stop = time.monotonic() + seconds
            while time.monotonic() < stop:
                address = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
                try:
                    status, _ = client.post("/webhook", body, {"X-Forwarded-For": address,
                                                               "Content-Type": "application/json"})
                except OSError:
                    continue
                assert status in (401, 429)
                sent[0] += 1
            client.close()

        started = time.monotonic()
        threads = [threading.Thread(target=flood, args=(10,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started

        def audit() -> dict[str, int]:
            """The engine's counters once every refusal sent is written or counted (the writer's last batches)."""
            deadline = time.monotonic() + 15
            while True:
                counters = httpx.get(f"http://127.0.0.1:{engine.port}/status", headers=bearer()).json()
                counters = counters["refusal_audit"]
                if counters["written"] + counters["dropped"] >= sent[0] or time.monotonic() > deadline:
                    return dict(counters)
                time.sleep(0.2)

        status = audit()
        written, stored = rows(db_config, "SELECT count(*), coalesce(sum(pm.refusal_bytes(to_jsonb(r))), 0) "
                                          "FROM pm.request_log r")[0]
        seconds = int(elapsed) + 2  # whole seconds the flood touched
        assert written <= 100 * seconds and stored <= 256 * 1024 * seconds, (sent[0], written, stored, seconds)
        assert status["written"] == written and status["written"] + status["dropped"] == sent[0], (status, sent)
        # and every instance together: the day's budget in the database (the owner sets it here)
        with psycopg2.connect(**db_config.dsn_kwargs()) as conn, conn.cursor() as cur:
            cur.execute("UPDATE pm.audit_budget SET rows_per_day = (SELECT rows_written + 30 FROM pm.request_log_days)")
        conn.close()
        flood(3)
        audit()
        usage = rows(db_config, "SELECT rows_written, rows_dropped, (SELECT count(*) FROM pm.request_log) "
                                "FROM pm.request_log_days")[0]
        assert usage[2] == written + 30 and usage[0] == usage[2]  # 30 more and no more; the rest counted
        assert usage[1] > 0
    finally:
        engine.stop()


def test_guessing_the_read_token_is_slowed_and_short_secrets_refused(server: Server, db_config: DatabaseConfig,
                                                                     tmp_path: Path) -> None:
    guesses = [httpx.post(server.url + "/login", json={"token": f"guess-{i}"}).status_code for i in range(10)]
    assert guesses == [401] * 10
    right = httpx.post(server.url + "/login", json={"token": TOKEN})
    assert right.status_code == 429 and 1 <= int(right.headers["Retry-After"]) <= 60  # the right token too
    assert httpx.get(server.url + "/status", headers=bearer()).status_code == 429  # and as a Bearer
    assert server.post(entry()).json()["outcome"] == "executed"  # the webhook's own rule is untouched
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and rows(db_config, "SELECT count(*) FROM pm.request_log")[0][0] < 12:
        time.sleep(0.1)
    logged = rows(db_config, "SELECT status, route FROM pm.request_log ORDER BY id")
    assert logged == [(401, "/login")] * 10 + [(429, "/login"), (429, "/status")]

    other = Server(db_config, tmp_path / "other.log")  # bad Bearer tokens count as guesses too
    try:
        answers = [httpx.get(other.url + "/status", headers=bearer(f"wrong-{i}")).status_code for i in range(10)]
        assert answers == [401] * 10 and httpx.get(other.url + "/status", headers=bearer()).status_code == 429
    finally:
        other.stop()
    log = (tmp_path / "other.log").read_text()
    assert log.count("read token refused (Bearer)") == 1 and "wrong-" not in log

    env = {**os.environ, "DATABASE_URL": db_config.url(False)}
    for name, value in (("PM_WEBHOOK_SECRET", "short-secret"), ("PM_READ_TOKEN", "x")):
        run = subprocess.run([sys.executable, "-m", "pm_engine", "live", "--port", "1"], capture_output=True,
                             text=True, timeout=60, env={**env, "PM_WEBHOOK_SECRET": SECRET, name: value})
        assert run.returncode == 2 and "at least 24" in run.stderr, run.stderr
        assert value not in run.stderr


def test_hostile_input_gets_a_clear_4xx_and_one_log_line(server: Server, db_config: DatabaseConfig,
                                                         tmp_path: Path) -> None:
    huge = b'{"type": "BASE_ENTRY", "lots": ' + b"9" * 5000 + b"}"
    answer = httpx.post(server.url + "/webhook", content=huge, headers={"X-PM-Secret": SECRET})
    assert answer.status_code == 400 and "too many digits" in answer.json()["error"]
    unauthenticated = httpx.post(server.url + "/webhook", content=huge)
    assert unauthenticated.status_code == 401  # counted as a guess like any other
    for field, value in (("reason", "a\u0000b"), ("instrument", "\ud800")):
        body = {**entry(), "type": "EXIT", "position": "ALL", field: value, "secret": SECRET}
        raw = json.dumps(body).encode()  # ensure_ascii: the NUL and the surrogate travel as \u escapes
        refused = httpx.post(server.url + "/webhook", content=raw)
        assert refused.status_code == 422 and refused.json()["field"] == field, refused.text
    control = httpx.post(server.url + "/control", content=json.dumps({"mode": "halted", "reason": "x\u0000"}),
                         headers={**bearer(), "Content-Type": "application/json"})
    assert control.status_code == 422 and control.json()["field"] == "reason"
    assert server.post(entry()).json()["outcome"] == "executed"
    for price in ("sNaN", "NaN", "Infinity", "-5", "abc"):
        exited = httpx.post(server.url + "/positions/BANK_NIFTY_Long_1/exit", json={"reason": "x", "price": price},
                            headers=bearer())
        assert exited.status_code == 422 and exited.json()["field"] == "price", (price, exited.text)
    far = httpx.post(server.url + "/positions/BANK_NIFTY_Long_1/exit", json={"reason": "x", "price": 1},
                     headers=bearer())
    assert far.status_code == 422 and "5%" in far.json()["error"]  # the price band: no P&L of -6 million
    assert rows(db_config, "SELECT count(*) FROM pm.portfolio_positions WHERE status = 'open'") == [(1,)]
    env = {**os.environ, "DATABASE_URL": db_config.url(False)}
    cli = [sys.executable, "-m", "pm_engine", "exit", "BANK_NIFTY", "--reason", "fat finger", "--price", "40000"]
    refused_cli = subprocess.run(cli, capture_output=True, text=True, env=env, timeout=60)
    assert refused_cli.returncode == 2 and "--force" in refused_cli.stderr
    forced = subprocess.run(cli + ["--force"], capture_output=True, text=True, env=env, timeout=60)
    assert forced.returncode == 0 and forced.stdout.startswith("executed"), forced.stderr
    server.stop()
    log = (tmp_path / "engine.log").read_text()
    assert "Traceback" not in log and "Exceeds the limit" not in log


def test_control_and_dashboard_answer_503_with_the_database_down(tmp_path: Path) -> None:
    from pm_engine.store.deploy import deploy
    from pm_engine.ops.cluster import temporary_cluster

    cluster = temporary_cluster(fsync=False)
    try:
        cluster.create_database("pm_down")
        config = cluster.config("pm_down")
        deploy(config)
        engine = EngineProcess(config, SECRET, log=tmp_path / "e.log").start()  # no token: loopback reads
        try:
            assert engine.wait_ready(30)
            url = f"http://127.0.0.1:{engine.port}"
            assert httpx.get(url + "/control").status_code == 200 and httpx.get(url + "/").status_code == 200
            cluster.stop("immediate")
            assert httpx.get(url + "/control", timeout=10).status_code == 503
            assert httpx.get(url + "/", timeout=10).status_code == 503
        finally:
            engine.stop()
    finally:
        cluster.destroy()
    assert "Traceback" not in (tmp_path / "e.log").read_text()


def test_secrets_are_masked_after_decoding(server: Server, db_config: DatabaseConfig) -> None:
    escaped_secret = "".join(f"\\u{ord(c):04x}" for c in SECRET)
    bodies = [b'{"\\u0073ecret": "' + SECRET.encode() + b'", "type": 5}',
              b'{"note": "' + escaped_secret.encode() + b'", "type": 5, "secret": "' + SECRET.encode() + b'"}',
              b'{"\\u0073ecret": "' + escaped_secret.encode() + b'", "broken']
    for body in bodies:
        assert httpx.post(server.url + "/webhook", content=body).status_code in (400, 401, 422)
    assert httpx.post(server.url + "/webhook", json={"secret": "x"},
                      headers={"User-Agent": f"bot {SECRET} {TOKEN}"}).status_code == 401
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and rows(db_config, "SELECT count(*) FROM pm.request_log")[0][0] < 4:
        time.sleep(0.1)
    stored = rows(db_config, "SELECT body_excerpt, coalesce(user_agent, '') FROM pm.request_log")
    assert len(stored) == 4
    for excerpt, agent in stored:
        for secret in (SECRET, TOKEN, escaped_secret, escaped_secret[:30]):
            assert secret not in excerpt and secret not in agent, (excerpt, agent)
    shown = httpx.get(server.url + "/dashboard/data", headers=bearer()).text
    assert SECRET not in shown and TOKEN not in shown


def test_logout_revokes_the_session_on_every_instance(server: Server, db_config: DatabaseConfig,
                                                      tmp_path: Path) -> None:
    other = Server(db_config, tmp_path / "other.log")
    try:
        first, second = (httpx.post(server.url + "/login", data={"token": TOKEN}) for _ in range(2))
        a, b = first.cookies[SESSION_COOKIE], second.cookies[SESSION_COOKIE]
        assert a != b  # two logins in the same second are two sessions
        for url in (server.url, other.url):
            assert httpx.get(url + "/status", cookies={SESSION_COOKIE: a}).status_code == 200
        out = httpx.post(other.url + "/logout", cookies={SESSION_COOKIE: a})  # logged out on the other instance
        assert out.status_code == 303
        for url in (server.url, other.url):
            assert httpx.get(url + "/status", cookies={SESSION_COOKIE: a}).status_code == 401
            assert httpx.get(url + "/status", cookies={SESSION_COOKIE: b}).status_code == 200
        assert rows(db_config, "SELECT count(*), count(revoked_at) FROM pm.sessions") == [(2, 1)]
        stored = rows(db_config, "SELECT digest FROM pm.sessions")
        assert all(a not in d and b not in d for (d,) in stored)  # only the MAC of a cookie is stored
    finally:
        other.stop()


def test_slow_request_heads_are_cut_off(server: Server) -> None:
    sockets = []
    for _ in range(50):
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=2)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        sockets.append(sock)
    open_ = set(range(len(sockets)))
    deadline = time.monotonic() + 20
    while open_ and time.monotonic() < deadline:
        for i in list(open_):
            try:
                sockets[i].sendall(b"X-Slow: 1\r\n")  # a header line a second: the head never ends
                sockets[i].settimeout(0.01)
                if sockets[i].recv(1) == b"":
                    open_.discard(i)
            except socket.timeout:
                pass
            except OSError:
                open_.discard(i)
        time.sleep(1)
    for sock in sockets:
        sock.close()
    assert not open_, f"{len(open_)} slow connections still open after 20 s"
    assert httpx.get(server.url + "/health").status_code == 200


def test_framing_and_sniffing_headers(server: Server) -> None:
    for route in ("/docs", "/redoc", "/status", "/"):
        answer = httpx.get(server.url + route, headers=bearer())
        assert answer.headers["x-frame-options"] == "DENY", route
        assert "frame-ancestors 'none'" in answer.headers["content-security-policy"], route
        assert answer.headers["x-content-type-options"] == "nosniff", route
    for answer in (server.post(entry()), httpx.get(server.url + "/health"), httpx.get(server.url + "/static/app.js")):
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_the_app_role_cannot_erase_its_traces(db_config: DatabaseConfig, pg2: Any) -> None:
    role = "pm_app_floor"
    with pg2.cursor() as cur:
        cur.execute(f"CREATE ROLE {role} LOGIN")
        cur.execute("SELECT pm.grant_app_role(%s)", (role,))
    app = Store(DatabaseConfig(host=db_config.host, port=db_config.port, database=db_config.database, user=role))
    try:
        app.audit.log_refusals([{"source": "x", "status": 401, "reason": "r", "body_sha256": "", "body_excerpt": "",
                                 "received_at": "2999-01-01T00:00:00Z"},
                                {"source": "y", "status": 401, "reason": "r", "body_sha256": "", "body_excerpt": "",
                                 "received_at": "2000-01-01T00:00:00Z"}])
        with pytest.raises(RetentionFloorError):
            app.audit.cleanup_request_log("0 seconds")
        with pytest.raises(RetentionFloorError):
            app.signals.cleanup_signal_log("1 hour")
        assert app.audit.cleanup_request_log("1 day") == 0
    finally:
        app.close()
    assert rows(db_config, "SELECT count(*) FROM pm.request_log WHERE received_at <= now() "
                           "AND received_at >= now() - interval '61 minutes'") == [(2,)]  # neither forged time stuck


def test_the_dashboard_gets_a_curve_the_width_of_its_chart(server: Server, pg2: Any) -> None:
    with pg2.cursor() as cur:  # 3,000 commits of history (a year of a busy book)
        cur.execute("SELECT pm.save_portfolio_state(jsonb_build_object('closed_equity', 5000000 + (v % 37) * 1000 "
                    "- CASE v WHEN 1500 THEN 900000 ELSE 0 END), v) FROM generate_series(1, 3000) v")
    data = httpx.get(server.url + "/dashboard/data", headers=bearer(), timeout=20)
    curve = data.json()["curve"]
    assert len(curve) <= 602 and len(data.content) < 200_000, (len(curve), len(data.content))
    every = httpx.get(server.url + "/dashboard/data?range=all&points=4000", headers=bearer()).json()["curve"]
    assert len(every) == 3001
    lowest = min(float(p["open_equity"]) for p in every)
    assert min(float(p["open_equity"]) for p in curve) == lowest < 4_200_000  # the deepest dip survives sampling
    assert httpx.get(server.url + "/dashboard/data?points=1", headers=bearer()).status_code == 422


def test_changes_need_proof_of_intent_and_a_known_host(db_config: DatabaseConfig, tmp_path: Path) -> None:
    engine = EngineProcess(db_config, SECRET, log=tmp_path / "e.log").start()  # no token: loopback principal
    try:
        assert engine.wait_ready(30)
        url = f"http://127.0.0.1:{engine.port}"
        form = {"mode": "halted", "reason": "pwned"}
        assert httpx.post(url + "/control", data=form).status_code == 403  # a form: no proof of intent
        plain = httpx.post(url + "/control", content=json.dumps(form), headers={"Content-Type": "text/plain"})
        assert plain.status_code == 403
        cross = httpx.post(url + "/control", json=form, headers={"Origin": "http://evil.example"})
        assert cross.status_code == 403 and cross.json()["field"] == "origin"
        site = httpx.post(url + "/control", json=form, headers={"Sec-Fetch-Site": "cross-site"})
        assert site.status_code == 403
        rebound = httpx.get(url + "/status", headers={"Host": "evil.example"})  # DNS rebinding
        assert rebound.status_code == 400 and rebound.json()["field"] == "host"
        assert httpx.get(url + "/status", headers={"Host": f"localhost:{engine.port}"}).status_code == 200
        assert httpx.post(url + "/webhook", json={**entry(), "secret": SECRET},
                          headers={"Host": "pm.example.com"}).status_code == 200  # the webhook keeps its host
        assert rows(db_config, "SELECT mode FROM pm.trading_control") == [("active",)]
        same = httpx.post(url + "/control", json=form, headers={"Origin": url, "Sec-Fetch-Site": "same-origin"})
        assert same.status_code == 200 and same.json()["mode"] == "halted"
    finally:
        engine.stop()
