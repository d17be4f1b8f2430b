"""Issue 12: history and statistics in the database, checked against the in-memory engine and the backtest."""

from __future__ import annotations

import csv
import json
import os
import secrets
import subprocess
import sys
from contextlib import contextmanager
from decimal import Decimal as D
from pathlib import Path
from typing import Any, Iterator

import httpx
import psycopg2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pm_engine.config import DatabaseConfig
from pm_engine.core.backtest import run_backtest
from pm_engine.core.engine import TradingEngine
from pm_engine.core.portfolio import Book
from pm_engine.core.signals import IST
from pm_engine.core.replay.statistics import pnl_by_period
from pm_engine.core.statistics import Trade, as_json, in_exit_order
from pm_engine.ops.cluster import LocalCluster
from pm_engine.store.deploy import deploy
from pm_engine.store.errors import HistoryUnavailableError
from pm_engine.store.gateway import Store
from pm_engine.tools.children import EngineProcess
from pm_engine.tools.samples import mixed_stream
from tests.helpers import payload

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "signals.csv"
WORKED = [  # docs/domain.md#pyramiding, #stops-and-exits, #history-and-statistics
    payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30", stop=51650, atr=350, er=0.85),
    payload("PYRAMID", "BANK_NIFTY", "Long_2", 52800, "2026-10-30T11:30:00+05:30", stop=52300, atr=360),
    payload("EXIT", "BANK_NIFTY", "ALL", 53500, "2026-10-30T12:30:00+05:30", atr=360, reason="SIGNAL"),
]


@contextmanager
def fresh_database(cluster: LocalCluster) -> Iterator[DatabaseConfig]:
    """A newly deployed database of its own (history is append-only: no test can reset one)."""
    name = f"pm_hist_{secrets.token_hex(4)}"
    cluster.create_database(name)
    config = DatabaseConfig(host="127.0.0.1", port=cluster.port, database=name, user="postgres")
    deploy(config)
    try:
        yield config
    finally:
        admin = psycopg2.connect(**cluster.config().dsn_kwargs())
        admin.autocommit = True
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def book(p: Book) -> dict[str, Any]:
    """What a state comparison looks at: positions, lots, stops, closed equity, pyramiding."""
    return {
        "closed_equity": p.closed_equity.quantize(D("0.01")),
        "positions": {k: (v.lots, v.entry_price, v.initial_stop, v.current_stop, v.highest_close, v.is_base_position)
                      for k, v in p.positions.items()},
        "pyramiding": {k: (v.last_pyramid_price, v.base_position_id) for k, v in p.pyramiding.items()},
    }


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), count=st.integers(3, 40))
def test_state_as_of_each_commit_equals_the_in_memory_engine(pg_cluster: LocalCluster, seed: int, count: int) -> None:
    stream = mixed_stream(count, seed=seed, duplicate_ratio=0.2)
    memory = TradingEngine(max_signal_age=None)
    with fresh_database(pg_cluster) as config:
        store = Store(config)
        try:
            live = TradingEngine(store=store, max_signal_age=None)
            expected: dict[str, dict[str, Any]] = {}
            for body in stream:
                result = live.process_payload(body, check_time=False)
                assert memory.process_payload(body, check_time=False).outcome == result.outcome
                if result.outcome.value != "duplicate":
                    expected[result.fingerprint] = book(memory.portfolio)
            commits = {p["fingerprint"]: p["recorded_at"] for p in store.history.equity_curve() if p["fingerprint"]}
            assert set(commits) == set(expected)  # one equity point per committed signal, no other
            for fingerprint, then in expected.items():
                past = Book()
                past.load(store.history.state_as_of(commits[fingerprint]))
                assert book(past) == then, f"state_as_of after {fingerprint[:12]}"
            with pytest.raises(HistoryUnavailableError):
                store.history.state_as_of(min(commits.values()).replace(year=2000))
        finally:
            store.close()


def test_worked_example_from_pm_engine_report(db_config: DatabaseConfig, tmp_path: Path) -> None:
    store = Store(db_config)
    try:
        engine = TradingEngine(store=store, max_signal_age=None)
        assert [engine.process_payload(p, check_time=False).outcome.value for p in WORKED] == ["executed"] * 3
        # a replay's trades are dated by when the book changed (now), not by the 2025 alerts
        exit_day = store.history.trades()[-1]["exit_time"].astimezone(IST).date().isoformat()
    finally:
        store.close()
    out, trades, png = tmp_path / "stats.json", tmp_path / "trades.csv", tmp_path / "equity.png"
    env = {**os.environ, "DATABASE_URL": db_config.url(hide_password=False)}
    done = subprocess.run([sys.executable, "-m", "pm_engine", "report", "--json", str(out), "--trades", str(trades),
                           "--plot", str(png)], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    stats = json.loads(out.read_text())
    assert {k: stats[k] for k in ("trades", "wins", "losses", "win_rate", "gross_profit", "gross_loss", "net_pnl",
                                  "profit_factor", "expectancy", "max_drawdown", "final_closed_equity")} == {
        "trades": 2, "wins": 2, "losses": 0, "win_rate": "100.00", "gross_profit": "201000.00",
        "gross_loss": "0.00", "net_pnl": "201000.00", "profit_factor": None, "expectancy": "100500.00",
        "max_drawdown": "0.00", "final_closed_equity": "5201000.00"}
    assert stats["by_instrument"]["BANK_NIFTY"]["trades"] == 2
    assert stats["pnl_by_period"]["day"] == [{"period_start": exit_day, "realized_pnl": "201000.00",
                                              "trades": 2, "net_flows": "0.00",
                                              "closing_equity": "5201000.00"}]
    rows = list(csv.DictReader(trades.open()))
    assert [(r["position_id"], r["layer"], r["pnl"], r["initial_risk"], r["r_multiple"]) for r in rows] == [
        ("BANK_NIFTY_Long_1", "base", "180000.00", "42000.00", "4.2857"),
        ("BANK_NIFTY_Long_2", "pyramid", "21000.00", "15000.00", "1.4000")]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "expectancy per trade" in done.stdout and "100500.00" in done.stdout


def test_backtest_and_database_statistics_agree_to_the_paisa(db_config: DatabaseConfig) -> None:
    memory = run_backtest(SAMPLE, progress=False)
    store = Store(db_config)
    try:
        replay = run_backtest(SAMPLE, TradingEngine(store=store, max_signal_age=None), progress=False)
        assert replay.outcomes == memory.outcomes
        assert memory.stats["trades"] > 20 and memory.stats["losses"] > 0 and memory.stats["wins"] > 0
        assert as_json(store.history.trade_stats()) == as_json(memory.stats)
        # the database times a trade by the instants its signals were processed (now, in a replay), the
        # backtest by the alerts' times (it has no commit): everything else is equal to the paisa
        timeless = ("entry_time", "exit_time", "holding_time")
        stored = [Trade.from_row(r) for r in store.history.trades()]
        assert [{k: v for k, v in as_json(t).items() if k not in timeless} for t in stored] == [
            {k: v for k, v in as_json(t).items() if k not in timeless} for t in in_exit_order(memory.trades)]
        for period in ("day", "week", "month"):  # and SQL groups the stored trades by period as Python does
            assert (as_json(store.history.pnl_by_period(period))
                    == as_json(pnl_by_period(stored, period, memory.initial_capital)))
    finally:
        store.close()


def test_status_as_of_and_the_http_history_routes(db_config: DatabaseConfig) -> None:
    store = Store(db_config)
    try:
        engine = TradingEngine(store=store, max_signal_age=None)
        engine.process_payload(WORKED[0], check_time=False)
        between = store.history.equity_curve()[-1]["recorded_at"]
        for body in WORKED[1:]:
            engine.process_payload(body, check_time=False)
        live_keys = set(engine.status())
    finally:
        store.close()
    env = {**os.environ, "DATABASE_URL": db_config.url(hide_password=False)}
    done = subprocess.run([sys.executable, "-m", "pm_engine", "status", "--as-of", between.isoformat(), "--json"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    then = json.loads(done.stdout)
    assert live_keys | {"outcomes", "instance_id"} <= set(then)  # the keys of GET /status
    assert [(p["position_id"], p["lots"], p["current_stop"]) for p in then["positions"]] == [
        ("BANK_NIFTY_Long_1", 4, "51650.00")]
    assert then["closed_equity"] == "5000000.00"
    bad = subprocess.run([sys.executable, "-m", "pm_engine", "status", "--as-of", "yesterday"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--as-of" in bad.stderr and "ISO 8601" in bad.stderr

    server = EngineProcess(db_config, "history-secret-0123456789abcdef").start()
    try:
        assert server.wait_ready(30)
        url = f"http://127.0.0.1:{server.port}"
        points = httpx.get(url + "/equity").json()["points"]
        assert [p["closed_equity"] for p in points] == ["5000000.00", "5000000.00", "5000000.00", "5201000.00"]
        assert [t["r_multiple"] for t in httpx.get(url + "/trades").json()["trades"]] == ["4.2857", "1.4000"]
        stats = httpx.get(url + "/stats").json()
        assert stats["expectancy"] == "100500.00" and stats["pnl_by_period"]["month"][0]["trades"] == 2
        assert httpx.get(url + "/trades", params={"from": "2030-01-01T00:00:00Z"}).json() == {"trades": []}
        wrong = httpx.get(url + "/stats", params={"to": "soon"})
        assert wrong.status_code == 422 and wrong.json()["field"] == "to"
        reversed_ = httpx.get(url + "/equity", params={"from": "2030-01-01T00:00:00Z", "to": "2029-01-01T00:00:00Z"})
        assert reversed_.status_code == 422 and reversed_.json()["field"] == "from"
    finally:
        server.stop()


def test_history_is_append_only_even_for_the_owner(pg2: Any) -> None:
    with pg2.cursor() as cur:
        for statement in ("UPDATE pm.portfolio_history SET version = 7", "DELETE FROM pm.position_history",
                          "TRUNCATE pm.portfolio_history"):
            with pytest.raises(psycopg2.Error) as caught:
                cur.execute(statement)
            assert caught.value.pgcode == "PM007"
