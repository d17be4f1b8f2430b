"""Issue 23: capital in and out, through a real engine process, the real CLI and real HTTP on a real PostgreSQL.

The stream (docs/domain.md#sizing, #capital-flows): a BANK_NIFTY base at 5,000,000; `pm-engine capital deposit 1000000`;
a GOLD_MINI base that must be sized on 6,000,000; both exit; a withdrawal of 2,000,000; a BANK_NIFTY base on the
smaller book and a loss. The report keeps the flows out of net P&L, measures drawdown on the trading curve and
chains the return between the flows; every figure below is worked by hand from the sizing formula.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import time
from decimal import ROUND_HALF_UP, Decimal as D
from fractions import Fraction as F
from pathlib import Path
from typing import Any

import httpx
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.backtest import run_backtest
from pm_engine.core.engine import TradingEngine
from pm_engine.core.statistics import as_json
from pm_engine.store.gateway import Store
from pm_engine.tools.children import EngineProcess
from tests.helpers import payload, rows

SECRET, TOKEN = "capital-webhook-secret-0123456789", "capital-read-token-0123456789"
ROOT = Path(__file__).resolve().parents[2]


def cli(config: DatabaseConfig, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": config.url(hide_password=False)}
    return subprocess.run([sys.executable, "-m", "pm_engine", *argv], env=env, capture_output=True, text=True,
                          timeout=120)


def base_lots(equity: int, price: int, stop: int, er: str, point_value: int, margin_per_lot: int,
              margin_used: int) -> int:
    """docs/domain.md#sizing-a-base-entry by hand, in fractions: floor(min(Lot-R at 1 % risk, Lot-M on 60 % equity))."""
    lot_r = F(equity) / 100 / ((price - stop) * point_value) * F(er)
    lot_m = max(F(0), F(6, 10) * equity - margin_used) / margin_per_lot
    return math.floor(min(lot_r, lot_m))


def pct(value: F) -> str:
    """An exact ratio as a percentage with 4 decimals, half up (how the report rounds)."""
    return str((D(value.numerator) * 100 / D(value.denominator)).quantize(D("0.0001"), rounding=ROUND_HALF_UP))


def report(config: DatabaseConfig, out: Path) -> dict[str, Any]:
    done = cli(config, "report", "--json", str(out))
    assert done.returncode == 0, done.stderr
    return dict(json.loads(out.read_text()))


def test_a_deposit_between_two_alerts_sizes_the_second_and_never_counts_as_profit(
        db_config: DatabaseConfig, tmp_path: Path) -> None:
    server = EngineProcess(db_config, SECRET, log=tmp_path / "engine.log",
                           env={"PM_READ_TOKEN": TOKEN, "PM_MAX_SIGNAL_AGE_S": "0"}).start()
    try:
        assert server.wait_ready(30), "engine did not start"
        url = f"http://127.0.0.1:{server.port}"

        def alert(body: dict[str, Any]) -> dict[str, Any]:
            answer = httpx.post(url + "/webhook", json={**body, "secret": SECRET}, timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.json()["outcome"] == "executed", answer.json()
            return dict(answer.json())

        first = alert(payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-01T10:00:00+05:30",
                              stop=51650, atr=350, er=0.85))
        assert first["lots"] == base_lots(5_000_000, 52000, 51650, "0.85", 30, 270_000, 0) == 4

        deposited = cli(db_config, "capital", "deposit", "1000000", "--note", "added from savings")
        assert deposited.returncode == 0, deposited.stderr
        assert "closed equity now 6000000.00" in deposited.stdout and "equity high 6000000.00" in deposited.stdout

        # the engine process never heard of the deposit: its next decision must be on the committed book,
        # blended equity 6,000,000 + 0.5 x 0 (BANK_NIFTY still at its entry price), 4 BANK_NIFTY lots of margin in use
        second = alert(payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 78000, "2026-10-01T10:15:00+05:30",
                               stop=77880, atr=600, er=0.12))
        expected = base_lots(6_000_000, 78000, 77880, "0.12", 10, 105_000, 4 * 270_000)
        assert expected == 6 and base_lots(5_000_000, 78000, 77880, "0.12", 10, 105_000, 4 * 270_000) == 5
        assert second["lots"] == expected and second["limiter"] == "risk"

        alert(payload("EXIT", "BANK_NIFTY", "ALL", 53500, "2026-10-01T11:00:00+05:30", atr=350, reason="SIGNAL"))
        alert(payload("EXIT", "GOLD_MINI", "ALL", 77900, "2026-10-01T11:15:00+05:30", atr=600, reason="SIGNAL"))
        before = report(db_config, tmp_path / "before.json")
        # +1,500 x 4 x 30 on BANK_NIFTY, -100 x 6 x 10 on GOLD_MINI: the deposit is no part of it
        assert before["net_pnl"] == "174000.00" and before["trades"] == 2 and before["wins"] == 1
        assert before["deposits"] == "1000000.00" and before["final_closed_equity"] == "6174000.00"

        taken = cli(db_config, "capital", "withdraw", "2000000", "--note", "profit out")
        assert taken.returncode == 0, taken.stderr
        after = report(db_config, tmp_path / "after.json")
        assert {k: after[k] for k in ("net_pnl", "trades", "win_rate", "profit_factor", "expectancy", "max_drawdown")} \
            == {k: before[k] for k in ("net_pnl", "trades", "win_rate", "profit_factor", "expectancy", "max_drawdown")}
        assert after["final_closed_equity"] == "4174000.00" and after["withdrawals"] == "2000000.00"

        third = alert(payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-01T12:00:00+05:30",
                              stop=51650, atr=350, er=0.85))
        assert third["lots"] == base_lots(4_174_000, 52000, 51650, "0.85", 30, 270_000, 0) == 3
        alert(payload("EXIT", "BANK_NIFTY", "ALL", 51800, "2026-10-01T12:30:00+05:30", atr=350, reason="SIGNAL"))
        final = report(db_config, tmp_path / "final.json")
    finally:
        server.stop()

    assert final["net_pnl"] == "156000.00"  # 180,000 - 6,000 - 18,000 (-200 x 3 x 30)
    assert (final["deposits"], final["withdrawals"], final["net_flows"]) == ("1000000.00", "2000000.00", "-1000000.00")
    assert final["final_closed_equity"] == "4156000.00"
    # closed equity ran 5.0M, 5.0M, 6.0M (deposit), 6.0M, 6.18M, 6.174M, 4.174M (withdrawal), 4.174M, 4.156M;
    # minus the net flows so far: 5.0M, 5.0M, 5.0M, 5.0M, 5.18M, 5.174M, 5.174M, 5.174M, 5.156M. The withdrawal
    # is no drawdown; the worst fall is 5,180,000 -> 5,156,000 (the GOLD_MINI loss, then the BANK_NIFTY one)
    assert final["max_drawdown"] == "24000.00"
    assert final["max_drawdown_pct"] == pct(F(24_000, 5_180_000)) == "0.4633"
    assert final["max_open_drawdown"] == "24000.00"
    # time-weighted: 5.0M -> 5.0M before the deposit, 6.0M -> 6.174M before the withdrawal, 4.174M -> 4.156M
    growth = F(5_000_000, 5_000_000) * F(6_174_000, 6_000_000) * F(4_156_000, 4_174_000)
    assert final["time_weighted_return"] == pct(growth - 1) == "2.4563"

    flows = rows(db_config, "SELECT f.kind, f.amount, f.recorded_by, f.note, f.xmin::text = h.xmin::text "
                            "FROM pm.capital_flows f JOIN pm.portfolio_history h ON h.version = f.portfolio_version "
                            "ORDER BY f.id")
    assert [(k, a, note) for k, a, _, note, _ in flows] == [
        ("deposit", D("1000000.00"), "added from savings"), ("withdrawal", D("2000000.00"), "profit out")]
    assert all(who.startswith("cli:") for _, _, who, _, _ in flows)
    assert all(same for *_, same in flows), "a flow's ledger row and its history row are one transaction"
    points = rows(db_config, "SELECT fingerprint, flow FROM pm.equity_curve() WHERE flow IS NOT NULL")
    assert points == [(None, D("1000000.00")), (None, D("-2000000.00"))]


def test_cli_and_http_refuse_bad_flows_and_write_nothing(db_config: DatabaseConfig, tmp_path: Path) -> None:
    def footprint() -> list[tuple[Any, ...]]:
        return rows(db_config, "SELECT (SELECT count(*) FROM pm.capital_flows), version, closed_equity, equity_high, "
                               "(SELECT count(*) FROM pm.portfolio_history) FROM pm.portfolio_state")

    start = footprint()
    for argv, field, words in ((("deposit", "ten"), "amount", "must be a number"),
                               (("deposit", "0"), "amount", "positive number of rupees"),
                               (("deposit", "100.001"), "amount", "at most two decimals"),
                               (("withdraw", "5000000.01"), "amount", "below zero")):
        done = cli(db_config, "capital", *argv)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert f"error: {field}:" in done.stderr and words in done.stderr, done.stderr
    assert footprint() == start

    server = EngineProcess(db_config, SECRET, log=tmp_path / "engine.log",
                           env={"PM_READ_TOKEN": TOKEN, "PM_MAX_SIGNAL_AGE_S": "0"}).start()
    try:
        assert server.wait_ready(30)
        url = f"http://127.0.0.1:{server.port}"
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        entered = httpx.post(url + "/webhook", json={**payload(
            "BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-01T10:00:00+05:30", stop=51650, atr=350, er=0.85),
            "secret": SECRET}, timeout=10).json()
        assert entered["lots"] == 4  # margin in use: 4 x 270,000 = 1,080,000
        start = footprint()

        def post(body: Any, headers: dict[str, str], **kwargs: Any) -> httpx.Response:
            return httpx.post(url + "/capital", headers=headers, timeout=10, **kwargs,
                              **({} if "content" in kwargs else {"json": body}))

        assert post({"kind": "deposit", "amount": "10"}, {}).status_code == 401  # no token, no session
        form = post(None, {**bearer, "Content-Type": "application/x-www-form-urlencoded"},
                    content=b"kind=deposit&amount=10")
        assert form.status_code == 415  # JSON only: a cross-site form cannot record a flow
        for body, status, field in (({"kind": "gift", "amount": "10"}, 422, "kind"),
                                    ({"kind": "deposit"}, 422, "amount"),
                                    ({"kind": "deposit", "amount": True}, 422, "amount"),
                                    ({"kind": "deposit", "amount": -10}, 422, "amount"),
                                    ({"kind": "deposit", "amount": 10.005}, 422, "amount"),
                                    ({"kind": "deposit", "amount": "10", "note": "x" * 501}, 422, "note"),
                                    ({"kind": "withdrawal", "amount": "3920000.01"}, 409, "amount")):
            answer = post(body, bearer)
            assert (answer.status_code, answer.json().get("field")) == (status, field), (body, answer.text)
        assert "below the margin in use 1080000.00" in post({"kind": "withdrawal", "amount": "3920000.01"},
                                                            bearer).json()["error"]
        assert footprint() == start, "a refused flow writes nothing ..."
        audited: list[Any] = []
        for _ in range(50):  # the audit writer batches off the request path
            audited = rows(db_config, "SELECT status, field FROM pm.request_log WHERE route = '/capital' ORDER BY id")
            if len(audited) >= 10:
                break
            time.sleep(0.1)
        assert (415, None) in audited and (409, "amount") in audited and (422, "note") in audited, \
            "... but its audit row"

        login = httpx.post(url + "/login", json={"token": TOKEN}, timeout=10)
        session = {"Cookie": f"pm_session={login.cookies['pm_session']}"}
        no_csrf = post({"kind": "deposit", "amount": "10"}, session)
        assert (no_csrf.status_code, no_csrf.json()["field"]) == (403, "csrf_token")
        assert footprint() == start

        # exactly down to the margin in use: 5,000,000 - 3,920,000 = 1,080,000
        done = post({"kind": "withdrawal", "amount": "3920000.00", "note": "to the margin"},
                    {**session, "X-CSRF-Token": login.json()["csrf_token"]})
        assert done.status_code == 200, done.text
        assert done.json()["closed_equity"] == "1080000.00" and done.json()["recorded_by"].startswith("dashboard:")
        status = httpx.get(url + "/status", headers=bearer, timeout=10).json()
        assert status["closed_equity"] == "1080000.00" and status["equity_high"] == "1080000.00"
        deposit = post({"kind": "deposit", "amount": 20000.5}, bearer)  # a JSON number, read exactly
        assert deposit.status_code == 200 and deposit.json()["amount"] == "20000.50"
        ledger = httpx.get(url + "/capital", headers=bearer, timeout=10).json()
        assert [(f["kind"], f["amount"], f["recorded_by"].split(":")[0]) for f in ledger["flows"]] == [
            ("deposit", "20000.50", "api"), ("withdrawal", "3920000.00", "dashboard")]
        totals = (ledger["deposits"], ledger["withdrawals"], ledger["net_flows"])
        assert totals == ("20000.50", "3920000.00", "-3899999.50")
        assert httpx.get(url + "/capital", timeout=10).status_code == 401  # the ledger needs the read token
    finally:
        server.stop()
    shown = cli(db_config, "capital", "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["net_flows"] == "-3899999.50"
    text = cli(db_config, "capital")
    assert "withdrawal" in text.stdout and "to the margin" in text.stdout and "net -3899999.50" in text.stdout


FLOW_STREAM = [  # the first test's stream as a backtest CSV, the flows as rows of their own
    {"type": "BASE_ENTRY", "instrument": "BANK_NIFTY", "position": "Long_1", "price": "52000", "stop": "51650",
     "atr": "350", "er": "0.85", "timestamp": "2026-10-01T10:00:00+05:30"},
    {"type": "DEPOSIT", "amount": "1000000", "note": "added", "timestamp": "2026-10-01T10:05:00+05:30"},
    {"type": "BASE_ENTRY", "instrument": "GOLD_MINI", "position": "Long_1", "price": "78000", "stop": "77880",
     "atr": "600", "er": "0.12", "timestamp": "2026-10-01T10:15:00+05:30"},
    {"type": "WITHDRAWAL", "amount": "99000000", "timestamp": "2026-10-01T10:20:00+05:30"},  # refused: skipped
    {"type": "EXIT", "instrument": "BANK_NIFTY", "position": "ALL", "price": "53500", "atr": "350", "reason": "SIGNAL",
     "timestamp": "2026-10-01T11:00:00+05:30"},
    {"type": "EXIT", "instrument": "GOLD_MINI", "position": "ALL", "price": "77900", "atr": "600", "reason": "SIGNAL",
     "timestamp": "2026-10-01T11:15:00+05:30"},
    {"type": "WITHDRAWAL", "amount": "2000000", "timestamp": "2026-10-01T11:30:00+05:30"},
    {"type": "BASE_ENTRY", "instrument": "BANK_NIFTY", "position": "Long_1", "price": "52000", "stop": "51650",
     "atr": "350", "er": "0.85", "timestamp": "2026-10-01T12:00:00+05:30"},
    {"type": "EXIT", "instrument": "BANK_NIFTY", "position": "ALL", "price": "51800", "atr": "350", "reason": "SIGNAL",
     "timestamp": "2026-10-01T12:30:00+05:30"},
]


def write_stream(path: Path, stream: list[dict[str, str]]) -> Path:
    names = list(dict.fromkeys(["type", "instrument", "position", "price", "stop", "lots", "atr", "er", "supertrend",
                                "reason", "timestamp", "amount", "note", *(k for row in stream for k in row)]))
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for row in stream:
            writer.writerow({"lots": "1", "er": "0.5", "supertrend": row.get("price", ""), **row})
    return path


@pytest.mark.parametrize("sample", ["flows", "signals.csv"])
def test_a_backtest_with_flows_and_the_same_stream_live_agree(db_config: DatabaseConfig, tmp_path: Path,
                                                              sample: str) -> None:
    if sample == "flows":
        path = write_stream(tmp_path / "flows.csv", FLOW_STREAM)
    else:  # the sample stream with a deposit after its 20th row and a withdrawal after its 60th
        original = list(csv.DictReader((ROOT / "examples" / "signals.csv").open()))
        stream = (original[:20] + [{"type": "DEPOSIT", "amount": "2500000.50"}] + original[20:60]
                  + [{"type": "WITHDRAWAL", "amount": "1000000"}] + original[60:])
        path = write_stream(tmp_path / "sample.csv", stream)
    memory = run_backtest(path, progress=False)
    store = Store(db_config)
    try:
        live = run_backtest(path, TradingEngine(store=store, max_signal_age=None), progress=False)
        assert live.outcomes == memory.outcomes and live.malformed == memory.malformed
        assert as_json(store.history.trade_stats()) == as_json(memory.stats)  # every key, flows and returns included
    finally:
        store.close()
    stats = memory.stats
    assert stats["deposits"] > 0 and stats["withdrawals"] > 0
    if sample == "flows":
        assert [f["kind"] for f in memory.flows] == ["deposit", "withdrawal"]
        assert memory.malformed == [
            "line 5: withdrawal of 99000000 would leave closed equity -93000000.00 below zero"]
        assert [s["outcome"] for s in memory.signals] == ["executed"] * 6
        assert as_json({k: stats[k] for k in ("net_pnl", "max_drawdown", "time_weighted_return", "net_flows")}) == {
            "net_pnl": "156000.00", "max_drawdown": "24000.00", "time_weighted_return": "2.4563",
            "net_flows": "-1000000.00"}
        assert memory.final_closed_equity == D("4156000")


def test_pm_engine_backtest_reports_flows(tmp_path: Path) -> None:
    path = write_stream(tmp_path / "flows.csv", FLOW_STREAM)
    out, png = tmp_path / "out.json", tmp_path / "equity.png"
    done = subprocess.run([sys.executable, "-m", "pm_engine", "backtest", str(path), "--json", str(out), "--plot",
                           str(png)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "time-weighted return %" in done.stdout and "2.4563" in done.stdout
    assert "line 5 skipped: withdrawal of 99000000" in done.stderr
    body = json.loads(out.read_text())
    assert [(f["line"], f["kind"], f["amount"], f["closed_equity"]) for f in body["flows"]] == [
        (3, "deposit", "1000000", "6000000.00"), (8, "withdrawal", "2000000", "4174000.00")]
    assert body["net_pnl"] == "156000.00" and body["max_drawdown"] == "24000.00"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
