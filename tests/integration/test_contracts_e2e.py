"""Issue 20 end to end: real engine processes on a real PostgreSQL over real HTTP, and the real CLI.

A BASE_ENTRY records its contract in the database (and its history), its outbox order names the exchange, symbol
and quantity, `/status` and `pm-engine status` show it; `GET /contracts` needs the read token and answers what
`pm-engine contracts --json` prints; the engine's holidays file (PM_HOLIDAYS_FILE) wins over the shipped lists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx

from pm_engine.config import DatabaseConfig
from pm_engine.core.contracts import ContractCalendar, ist_date
from pm_engine.core.holidays import load_holidays
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.tools.children import EngineProcess
from tests.helpers import payload, rows

SECRET = "contracts-webhook-secret-0123456789"
TOKEN = "contracts-read-token-abcdefghijklm"
FOUR = {"BANK_NIFTY": "BANKNIFTY29DEC26FUT", "GOLD_MINI": "GOLDM05JAN27FUT", "SILVER_MINI": "SILVERM26FEB27FUT",
        "COPPER": "COPPER31DEC26FUT"}


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pm_engine", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_contracts_on_1_december_2026_from_the_cli() -> None:
    done = cli("contracts", "--on", "2026-12-01", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {c["instrument"]: c["symbol"] for c in report["contracts"]} == FOUR
    assert {c["instrument"]: (c["exchange"], c["expiry"], c["roll_date"], c["lot_size"], c["days_to_roll"])
            for c in report["contracts"]} == {
        "BANK_NIFTY": ("NFO", "2026-12-29", "2026-12-22", 30, 21),
        "GOLD_MINI": ("MCX", "2027-01-05", "2026-12-28", 100, 27),
        "SILVER_MINI": ("MCX", "2027-02-26", "2027-02-18", 5, 79),
        "COPPER": ("MCX", "2026-12-31", "2026-12-23", 2500, 22)}
    assert report["contracts"][0]["next"]["symbol"] == "BANKNIFTY25JAN27FUT"
    assert any("MCX holidays are known for 2024-2026 only: 2027" in w for w in report["warnings"])  # never silent
    text = cli("contracts", "--on", "2026-12-01")
    assert "GOLDM05JAN27FUT" in text.stdout and "warning: MCX holidays" in text.stderr
    bad = cli("contracts", "--on", "1 Dec")
    assert bad.returncode == 2 and "--on: not a date" in bad.stderr


def test_a_base_entry_shows_its_contract_everywhere(db_config: DatabaseConfig, tmp_path: Path) -> None:
    today = ist_date(datetime.now(timezone.utc))
    shipped = ContractCalendar(DEFAULT_INSTRUMENTS).on("BANK_NIFTY", today)
    assert shipped is not None
    # the engine's own holidays file closes today's contract's expiry day: the user's file wins
    holidays = tmp_path / "holidays.json"
    holidays.write_text(json.dumps({"NSE": {"add": [shipped.expiry.isoformat()]}}))
    expected = ContractCalendar(DEFAULT_INSTRUMENTS, load_holidays(holidays)).on("BANK_NIFTY", today)
    assert expected is not None and expected.expiry < shipped.expiry
    engine = EngineProcess(db_config, SECRET, log=tmp_path / "engine.log",
                           env={"PM_READ_TOKEN": TOKEN, "PM_HOLIDAYS_FILE": str(holidays)}).start()
    try:
        assert engine.wait_ready(30), "engine did not start"
        url, auth = f"http://127.0.0.1:{engine.port}", {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(url + "/contracts").status_code == 401  # a read: the token is needed
        listed = httpx.get(url + "/contracts", params={"on": "2026-12-01"}, headers=auth)
        assert listed.status_code == 200
        assert {c["instrument"]: c["symbol"] for c in listed.json()["contracts"]} == {
            **FOUR, "BANK_NIFTY": listed.json()["contracts"][0]["symbol"]}
        assert listed.json() == json.loads(cli("contracts", "--on", "2026-12-01", "--json", env={
            "PM_HOLIDAYS_FILE": str(holidays)}).stdout)  # the same document
        bad = httpx.get(url + "/contracts", params={"on": "tomorrow"}, headers=auth)
        assert bad.status_code == 422 and bad.json()["field"] == "on"
        now = httpx.get(url + "/contracts", headers=auth).json()
        assert now["on"] == today.isoformat() and now["contracts"][0]["symbol"] == expected.symbol

        stamp = (datetime.now(timezone.utc) - timedelta(minutes=2)).isoformat()
        body = {**payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, stamp, stop=51650, atr=350, er=0.85),
                "secret": SECRET}
        entered = httpx.post(url + "/webhook", json=body, timeout=10).json()
        assert entered["outcome"] == "executed" and entered["contract"] == expected.symbol, entered
        lots = entered["lots"]

        status: Any = httpx.get(url + "/status", headers=auth).json()
        [position] = status["positions"]
        assert (position["contract"], position["expiry"], position["exchange"], position["quantity"]) == (
            expected.symbol, expected.expiry.isoformat(), "NFO", lots * expected.lot_size)
        assert position["days_to_expiry"] == (expected.expiry - today).days and position["roll_due"] is False

        shown = cli("status", env={"DATABASE_URL": db_config.url(False)})
        assert shown.returncode == 0 and f"{expected.symbol} (expiry {expected.expiry.isoformat()}" in shown.stdout
        as_json = json.loads(cli("status", "--json", env={"DATABASE_URL": db_config.url(False)}).stdout)
        assert as_json["positions"][0]["contract"] == expected.symbol

        assert rows(db_config, "SELECT futures_symbol, expiry, contract_month FROM pm.portfolio_positions") == [
            (expected.symbol, expected.expiry.isoformat(), expected.contract_month)]
        assert rows(db_config, "SELECT row_data ->> 'futures_symbol' FROM pm.position_history") == [(expected.symbol,)]
        deadline = time.monotonic() + 10  # the sender thread fills it just after the answer
        while rows(db_config, "SELECT status FROM pm.broker_orders") != [("filled",)] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rows(db_config, "SELECT exchange, symbol, lots, quantity, product, leg FROM pm.broker_orders") == [
            ("NFO", expected.symbol, lots, lots * expected.lot_size, "NRML", "FUT")]
        assert rows(db_config, "SELECT status FROM pm.broker_orders") == [("filled",)]  # at the signal price
    finally:
        engine.stop()


def test_live_trades_bank_nifty_synthetic_from_an_instrument_file(db_config: DatabaseConfig, tmp_path: Path) -> None:
    """`live --instruments` / PM_INSTRUMENTS_FILE: a user's table makes Bank Nifty a synthetic future (two legs)."""
    from pm_engine.core.instruments import load_instruments

    table = tmp_path / "instruments.json"
    table.write_text(json.dumps({"instruments": {"BANK_NIFTY": {"contract": {"execution": "synthetic"}}}}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"instruments": {"BANK_NIFTY": {"contract": {"execution": "options"}}}}))
    env = {"DATABASE_URL": db_config.url(False), "PM_WEBHOOK_SECRET": SECRET}
    refused = cli("live", "--instruments", str(bad), "--port", "1", env=env)
    assert refused.returncode != 0 and "contract.execution must be futures or synthetic" in refused.stderr

    today = ist_date(datetime.now(timezone.utc))
    calendar = ContractCalendar(load_instruments(table))
    contract = calendar.on("BANK_NIFTY", today)
    assert contract is not None
    legs = calendar.synthetic_legs("BANK_NIFTY", contract.expiry, Decimal("52040"))
    engine = EngineProcess(db_config, SECRET, log=tmp_path / "engine.log", args=("--instruments", str(table))).start()
    try:
        assert engine.wait_ready(30), "engine did not start"
        stamp = (datetime.now(timezone.utc) - timedelta(minutes=2)).isoformat()
        body = {**payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52040, stamp, stop=51690, atr=350, er=0.85),
                "secret": SECRET}
        entered = httpx.post(f"http://127.0.0.1:{engine.port}/webhook", json=body, timeout=10).json()
        assert entered["outcome"] == "executed", entered
        assert rows(db_config, "SELECT strike, ce_symbol, pe_symbol FROM pm.portfolio_positions") == [
            (legs.strike, legs.ce_symbol, legs.pe_symbol)]
        assert sorted(rows(db_config, "SELECT leg, side, symbol FROM pm.broker_orders")) == [
            ("CE", "BUY", legs.ce_symbol), ("PE", "SELL", legs.pe_symbol)]  # a long synthetic: no futures order
    finally:
        engine.stop()
