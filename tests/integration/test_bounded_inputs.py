"""Issue 29, items 6-8: inputs that gave 500s or tracebacks, reads without a bound, and loose input.

A real engine process on a real PostgreSQL, real HTTP, the real CLI. Before the fix: ``/capital`` with
9999999999999.99 (numeric overflow) or a note holding a NUL or a lone surrogate answered 500,
``/contracts?on=9999-12-31`` and ``?on=0001-01-01`` too, and ``pm-engine contracts --on 9999-12-31`` or a
holidays file closing every day or nesting 100,000 brackets printed a traceback; ``/dashboard/data``
returned every anomaly of 24 h and ``GET /capital`` every flow; " 5 ", "٥" and "1_000" were amounts,
``text/plain; x=application/json`` passed for JSON, and the error for Infinity said NaN.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Iterator

import httpx
import psycopg2
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.tools.children import EngineProcess
from tests.helpers import rows

SECRET = "bounded-inputs-webhook-secret-0123456789"


@pytest.fixture
def server(db_config: DatabaseConfig, tmp_path: Path) -> Iterator[str]:
    engine = EngineProcess(db_config, SECRET, log=tmp_path / "engine.log").start()
    try:
        assert engine.wait_ready(30), (tmp_path / "engine.log").read_text()[-2000:]
        yield f"http://127.0.0.1:{engine.port}"
    finally:
        engine.stop()


def capital(url: str, raw: str, content_type: str = "application/json") -> httpx.Response:
    return httpx.post(url + "/capital", content=raw.encode(), headers={"Content-Type": content_type}, timeout=10)


def flows(config: DatabaseConfig) -> int:
    return int(rows(config, "SELECT count(*) FROM pm.capital_flows")[0][0])


def cli(config: DatabaseConfig, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": config.url(hide_password=False)}
    return subprocess.run([sys.executable, "-m", "pm_engine", *argv], env=env, capture_output=True, text=True,
                          timeout=120)


def test_what_answered_500_is_a_4xx_naming_the_field(server: str, db_config: DatabaseConfig) -> None:
    for raw, field in (('{"kind": "deposit", "amount": "9999999999999.99"}', "amount"),
                       ('{"kind": "deposit", "amount": "100", "note": "a\\u0000b"}', "note"),
                       ('{"kind": "deposit", "amount": "100", "note": "a\\ud800b"}', "note")):
        answer = capital(server, raw)
        assert answer.status_code == 422 and answer.json()["field"] == field, (raw, answer.text)
    assert flows(db_config) == 0  # nothing written
    for on in ("9999-12-31", "0001-01-01"):
        answer = httpx.get(server + "/contracts", params={"on": on}, timeout=10)
        assert answer.status_code == 422 and answer.json()["field"] == "on", answer.text
        assert "between 1900-01-01 and 2199-12-31" in answer.json()["error"]
    assert httpx.get(server + "/contracts", params={"on": "2199-12-31"}, timeout=10).status_code == 200


def test_the_contracts_command_says_one_line_not_a_traceback(db_config: DatabaseConfig, tmp_path: Path) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"NSE": ' + "[" * 100_000 + "]" * 100_000 + "}")
    every_day = tmp_path / "closed.json"
    days = [(date(2026, 1, 1) + timedelta(days=n)).isoformat() for n in range(730)]
    every_day.write_text(json.dumps({"NSE": {"add": days}}))
    for argv, words in ((("--on", "9999-12-31"), "--on: must be between 1900-01-01 and 2199-12-31"),
                        (("--on", "0001-01-01"), "--on: must be between"),
                        (("--holidays", str(deep)), "nested too deeply"),
                        (("--holidays", str(every_day)), "no trading day in the 31 days")):
        done = cli(db_config, "contracts", *argv)
        assert done.returncode == 2 and words in done.stderr, (argv, done.stderr[-500:])
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr[-500:]


def test_the_dashboard_and_the_ledger_read_a_bounded_page(server: str, db_config: DatabaseConfig) -> None:
    conn = psycopg2.connect(**db_config.dsn_kwargs())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("INSERT INTO pm.anomalies (kind, fingerprint, instrument, signal_type, position) "
                        "SELECT 'exit_never_open', md5(n::text), 'GOLD_MINI', 'EXIT', 'Long_2' "
                        "FROM generate_series(1, 120) n")
    finally:
        conn.close()
    data = httpx.get(server + "/dashboard/data", timeout=10).json()
    assert len(data["anomalies"]) == 50 and data["anomaly_counts"] == {"exit_never_open": 120}
    for amount in ("100", "200", "300"):
        assert capital(server, json.dumps({"kind": "deposit", "amount": amount})).status_code == 200
    first = httpx.get(server + "/capital", params={"limit": 2}, timeout=10).json()
    assert [f["amount"] for f in first["flows"]] == ["300.00", "200.00"] and first["next_offset"] == 2
    assert first["deposits"] == "600.00"  # the totals are of the whole ledger
    rest = httpx.get(server + "/capital", params={"limit": 2, "offset": 2}, timeout=10).json()
    assert [f["amount"] for f in rest["flows"]] == ["100.00"] and rest["next_offset"] is None
    for params, field in (({"limit": 100000}, "limit"), ({"limit": "x"}, "limit"), ({"offset": -1}, "offset"),
                          ({"offset": 10**9}, "offset")):
        refused = httpx.get(server + "/capital", params=params, timeout=10)
        assert refused.status_code == 422 and refused.json()["field"] == field, refused.text


def test_only_ascii_decimal_amounts_and_a_parsed_media_type(server: str, db_config: DatabaseConfig) -> None:
    for amount in (" 5 ", "\u0665", "1_000", "5\u00a0", "\uff15"):
        answer = capital(server, json.dumps({"kind": "deposit", "amount": amount}))
        assert answer.status_code == 422 and answer.json()["field"] == "amount", (amount, answer.text)
    for raw in ('{"kind": "deposit", "amount": "Infinity"}', '{"kind": "deposit", "amount": Infinity}'):
        answer = capital(server, raw)
        assert answer.status_code == 422 and "NaN" not in answer.text and "finite" in answer.json()["error"], \
            answer.text
    assert flows(db_config) == 0
    sneaky = "text/plain; x=application/json"  # what a cross-site form may not send, but a substring test took
    assert capital(server, '{"kind": "deposit", "amount": "5"}', sneaky).status_code == 415
    control = httpx.post(server + "/control", content=b'{"mode": "halted", "reason": "x"}',
                         headers={"Content-Type": sneaky}, timeout=10)
    assert control.status_code == 403, control.text
    assert rows(db_config, "SELECT mode FROM pm.trading_control") == [("active",)]
    assert capital(server, '{"kind": "deposit", "amount": "1,000.50"}', "application/json; charset=utf-8") \
        .status_code == 200  # parameters of the JSON media type are fine
