"""Issue 22: rolls through the real broker simulator, real engine processes and the real ``pm-engine rollover``.

A Bank Nifty group (base + pyramid) and a Gold Mini position rolled with ``--all --force``: one close and
one open per layer, the book on the new contracts at the new fills, the old legs' P&L in closed equity and
rollover_pnl, stops shifted by the basis. A SIGKILL of the engine while the close is at the broker, and a
database restart while the open is, each end with exactly one open order. An open refused by the broker
leaves the position flat in the book and at the broker, failed, with an anomaly, and reconciliation agrees.
A synthetic Bank Nifty position rolls its four legs (in process: the shipped instrument table trades futures).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from decimal import Decimal as D
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.contracts import ContractCalendar
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.ops.cluster import LocalCluster
from tests.brokersim import Sim, sim, sim_process  # noqa: F401 - fixtures
from tests.helpers import payload, rows
from tests.integration.test_broker_orders import Engine, filled, reconcile_cli, stamp, start, wait_for


@pytest.fixture
def broker(sim: Sim) -> Sim:  # noqa: F811 - the simulator, reset
    return sim


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    started: list[Engine] = []
    yield started
    for engine in started:
        engine.stop()


CALENDAR = ContractCalendar(DEFAULT_INSTRUMENTS)
GOLD = CALENDAR.on("GOLD_MINI", date.today())
BANK = CALENDAR.on("BANK_NIFTY", date.today())
assert GOLD is not None and BANK is not None
GOLD_NEXT, BANK_NEXT = CALENDAR.after(GOLD), CALENDAR.after(BANK)


def rollover_cli(db_config: DatabaseConfig, broker: Sim, *args: str) -> tuple[int, Any]:
    env = {**os.environ, "DATABASE_URL": db_config.url(hide_password=False), "PM_BROKER": "openalgo",
           "PM_OPENALGO_URL": broker.url, "PM_OPENALGO_API_KEY": broker.api_key, "PM_MARKET_HOURS": "always"}
    done = subprocess.run([sys.executable, "-m", "pm_engine", "rollover", "--json", *args], env=env,
                          capture_output=True, text=True, timeout=120)
    assert broker.api_key not in done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout.strip() else done.stderr


def roll_states(db_config: DatabaseConfig) -> list[tuple[Any, ...]]:
    return rows(db_config, "SELECT instrument, state FROM pm.rolls ORDER BY roll_id")


def price(broker: Sim, symbol: str, value: str) -> None:
    broker.control("price", {"symbol": symbol, "price": value})


def gold_entry(engine: Engine, db_config: DatabaseConfig) -> int:
    answer = engine.send(payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 75000, stamp(), stop=74300, atr=400, er=0.8))
    assert answer["outcome"] == "executed", answer
    wait_for(lambda: filled(db_config))
    return int(answer["lots"])


def test_rollover_all_force_rolls_every_layer_through_the_broker(db_config: DatabaseConfig, broker: Sim,
                                                                 tmp_path: Path, engines: list[Engine]) -> None:
    price(broker, GOLD.symbol, "75000")
    price(broker, BANK.symbol, "52000")
    engine = start(db_config, broker, tmp_path, engines)
    base = engine.send(payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, stamp(), stop=51650, atr=350, er=0.85))
    assert base["outcome"] == "executed", base
    wait_for(lambda: filled(db_config))
    price(broker, BANK.symbol, "52800")
    pyramid = engine.send(payload("PYRAMID", "BANK_NIFTY", "Long_2", 52800, stamp(), stop=52300, atr=360))
    assert pyramid["outcome"] == "executed", pyramid
    wait_for(lambda: rows(db_config, "SELECT count(*) FROM pm.broker_orders WHERE status = 'filled'") == [(2,)])
    gold_entry(engine, db_config)
    wait_for(lambda: rows(db_config, "SELECT count(*) FROM pm.broker_orders WHERE status = 'filled'") == [(3,)])
    before = {r[0]: r[1:] for r in rows(db_config, "SELECT position_id, entry_price, lots, current_stop, initial_stop, "
                                                   "highest_close, quantity FROM pm.portfolio_positions")}
    # the old contracts close at these, the new ones open at these: basis +300 (Bank Nifty), +400 (Gold)
    price(broker, BANK.symbol, "52900")
    price(broker, GOLD.symbol, "75500")
    price(broker, BANK_NEXT.symbol, "53200")
    price(broker, GOLD_NEXT.symbol, "75900")

    code, dry = rollover_cli(db_config, broker, "--all", "--force", "--dry-run")
    assert code == 0 and sorted(s["instrument"] for s in dry["started"]) == ["BANK_NIFTY", "GOLD_MINI"]
    assert rows(db_config, "SELECT count(*) FROM pm.rolls") == [(0,)]  # a dry run changes nothing
    code, result = rollover_cli(db_config, broker, "--all", "--force", "--wait", "60")
    assert code == 0, result
    states = sorted((s["instrument"], s["state"]) for s in result["started"])
    assert states == [("BANK_NIFTY", "rolled"), ("GOLD_MINI", "rolled")]
    orders = broker.state()["orders"]
    assert len(orders) == 3 + 2 * 3  # one close and one open per layer
    roll_orders = [(o["symbol"], o["action"], int(o["quantity"])) for o in orders[3:]]
    old_fill = {"GOLD_MINI": D(75500), "BANK_NIFTY": D(52900)}
    new_fill = {"GOLD_MINI": D(75900), "BANK_NIFTY": D(53200)}
    total = D(0)
    after = rows(db_config, "SELECT position_id, instrument, futures_symbol, entry_price, lots, current_stop, "
                            "initial_stop, highest_close, rollover_pnl, rollover_count, rollover_status, "
                            "original_entry_price, quantity FROM pm.portfolio_positions ORDER BY position_id")
    assert len(after) == 3
    for pid, instrument, symbol, entry, lots, current, initial, high, pnl, count, status, original, qty in after:
        entry0, lots0, current0, initial0, high0, qty0 = before[pid]
        old, new = (GOLD, GOLD_NEXT) if instrument == "GOLD_MINI" else (BANK, BANK_NEXT)
        unit = lots0 if old.exchange == "MCX" else qty0
        assert (old.symbol, "SELL", unit) in roll_orders and (new.symbol, "BUY", unit) in roll_orders
        [(point_value,)] = rows(db_config, f"SELECT point_value FROM pm.broker_orders WHERE position_id = '{pid}' "
                                           "AND roll_leg = 'close'")
        basis = new_fill[instrument] - old_fill[instrument]
        assert (symbol, entry, lots, count, status, original) == (new.symbol, new_fill[instrument], lots0, 1, "none",
                                                                  entry0)
        assert (current, initial, high) == (current0 + basis, initial0 + basis, high0 + basis)
        assert pnl == ((old_fill[instrument] - entry0) * lots0 * point_value).quantize(D("0.01"))
        total += pnl
    assert rows(db_config, "SELECT closed_equity FROM pm.portfolio_state") == [(D("5000000.00") + total,)]
    assert rows(db_config, "SELECT DISTINCT basis FROM pm.roll_layers ORDER BY 1") == [(D("300.00"),), (D("400.00"),)]
    assert rows(db_config, "SELECT kind, count(*) FROM pm.notification_events WHERE kind LIKE 'roll%' GROUP BY 1") == \
        [("roll_done", 2)]

    def status_rolled() -> bool:
        positions = httpx.get(engine.url + "/status").json()["positions"]
        return all(p["rollover_count"] == 1 and p["rollover_status"] == "none" for p in positions)
    wait_for(status_rolled, 20)
    served = httpx.get(engine.url + "/rollover").json()
    assert {g["instrument"]: g["from_symbol"] for g in served["groups"]} == {"BANK_NIFTY": BANK_NEXT.symbol,
                                                                             "GOLD_MINI": GOLD_NEXT.symbol}
    assert all(g["roll_state"] == "none" and g["days_to_roll"] > 0 for g in served["groups"])
    assert [r["state"] for r in served["rolls"]] == ["rolled", "rolled"]
    code, reconciled = reconcile_cli(db_config, broker)
    assert (code, reconciled["matched"]) == (0, True), reconciled
    # the group trades again: a signal is decided on its merits, no longer held by the roll
    answer = engine.send(payload("PYRAMID", "GOLD_MINI", "Long_2", 76800, stamp(), stop=76300, atr=400))
    assert not str(answer.get("reason") or "").startswith("rolling"), answer


def test_sigkill_while_the_close_is_at_the_broker_resumes_with_one_open(db_config: DatabaseConfig, broker: Sim,
                                                                        tmp_path: Path,
                                                                        engines: list[Engine]) -> None:
    price(broker, GOLD.symbol, "75000")
    engine = start(db_config, broker, tmp_path, engines)
    lots = gold_entry(engine, db_config)
    price(broker, GOLD.symbol, "75300")
    price(broker, GOLD_NEXT.symbol, "75650")
    broker.control("faults", {"latency_ms": 3000})
    code, _ = rollover_cli(db_config, broker, "--all", "--force")
    assert code == 0
    wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE roll_leg = 'close' AND status = 'sending'"))
    time.sleep(1)  # the close is at the simulator, which holds it for its latency
    assert engine.proc is not None
    engine.proc.send_signal(signal.SIGKILL)
    engine.proc.wait(10)
    time.sleep(3)  # the simulator fills it: the close happened, the open was never sent
    broker.control("faults", {"latency_ms": 0})
    assert [o["action"] for o in broker.state()["orders"]] == ["BUY", "SELL"]
    assert roll_states(db_config) == [("GOLD_MINI", "closing")]
    assert rows(db_config, "SELECT count(*) FROM pm.broker_orders WHERE roll_leg = 'open'") == [(0,)]
    start(db_config, broker, tmp_path, engines)
    wait_for(lambda: roll_states(db_config) == [("GOLD_MINI", "rolled")], 60, lambda: roll_states(db_config))
    orders = broker.state()["orders"]
    assert [(o["symbol"], o["action"]) for o in orders] == [(GOLD.symbol, "BUY"), (GOLD.symbol, "SELL"),
                                                            (GOLD_NEXT.symbol, "BUY")]  # exactly one open
    assert rows(db_config, "SELECT entry_price, lots, rollover_pnl FROM pm.portfolio_positions") == \
        [(D("75650.00"), lots, D(300 * lots * 10).quantize(D("0.01")))]


def test_database_restart_mid_roll_completes_with_one_open(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                                           engines: list[Engine], pg_cluster: LocalCluster) -> None:
    price(broker, GOLD.symbol, "75000")
    engine = start(db_config, broker, tmp_path, engines)
    gold_entry(engine, db_config)
    price(broker, GOLD.symbol, "75200")
    price(broker, GOLD_NEXT.symbol, "75500")
    code, _ = rollover_cli(db_config, broker, "--all", "--force")
    assert code == 0
    wait_for(lambda: roll_states(db_config) == [("GOLD_MINI", "opening")], 30, lambda: roll_states(db_config))
    broker.control("faults", {"latency_ms": 2000})
    pg_cluster.stop("immediate")  # mid-roll: the close filled, the open on its way or about to be
    time.sleep(2)
    pg_cluster.start()
    broker.control("faults", {"latency_ms": 0})
    wait_for(lambda: roll_states(db_config) == [("GOLD_MINI", "rolled")], 90, lambda: roll_states(db_config))
    opens = [o for o in broker.state()["orders"] if o["symbol"] == GOLD_NEXT.symbol]
    assert len(opens) == 1, broker.state()["orders"]
    assert engine.proc is not None and engine.proc.poll() is None  # the engine rode the restart out


def test_open_rejected_leaves_the_position_flat_and_failed(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                                           engines: list[Engine]) -> None:
    price(broker, GOLD.symbol, "75000")
    engine = start(db_config, broker, tmp_path, engines)
    lots = gold_entry(engine, db_config)
    price(broker, GOLD.symbol, "75400")  # no price for the next contract: the simulator refuses the open
    code, result = rollover_cli(db_config, broker, "--all", "--force", "--wait", "60")
    assert code == 0 and result["started"][0]["state"] == "failed", result
    assert rows(db_config, "SELECT status, exit_price, exit_reason, rollover_status, rollover_pnl "
                           "FROM pm.portfolio_positions") == \
        [("closed", D("75400.00"), "ROLL_FAILED", "failed", D(400 * lots * 10).quantize(D("0.01")))]
    assert rows(db_config, "SELECT closed_equity FROM pm.portfolio_state") == \
        [(D("5000000.00") + 400 * lots * 10,)]
    assert rows(db_config, "SELECT kind FROM pm.anomalies") == [("roll_failed",)]
    assert rows(db_config, "SELECT kind FROM pm.notification_events WHERE kind LIKE 'roll%'") == [("roll_failed",)]
    assert [o["action"] for o in broker.state()["orders"]] == ["BUY", "SELL"]  # the open never reached the book
    wait_for(lambda: httpx.get(engine.url + "/status").json()["positions"] == [], 20)
    code, reconciled = reconcile_cli(db_config, broker)
    assert (code, reconciled["matched"]) == (0, True), reconciled  # flat in the book and at the broker
    time.sleep(1.5)
    assert rows(db_config, "SELECT count(*) FROM pm.broker_orders WHERE roll_id IS NOT NULL") == [(2,)]  # no re-entry


def test_a_rolling_group_blocks_its_signals(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                            engines: list[Engine]) -> None:
    price(broker, GOLD.symbol, "75000")
    engine = start(db_config, broker, tmp_path, engines)
    gold_entry(engine, db_config)
    broker.control("faults", {"session_expired": True})  # the close waits: the roll stays in flight
    code, _ = rollover_cli(db_config, broker, "--all", "--force")
    assert code == 0 and roll_states(db_config) == [("GOLD_MINI", "closing")]
    answer = engine.send(payload("PYRAMID", "GOLD_MINI", "Long_2", 75900, stamp(), stop=75300, atr=400))
    assert answer["outcome"] == "blocked" and answer["reason"].startswith("rolling: GOLD_MINI"), answer
    exit_ = engine.send(payload("EXIT", "GOLD_MINI", "ALL", 75900, stamp(), reason="SIGNAL"))
    assert exit_["outcome"] == "blocked"
    code, again = rollover_cli(db_config, broker, "--all", "--force")
    assert code == 0 and again["skipped"][0]["why"].startswith("rolling already"), again
    code, refused = rollover_cli(db_config, broker, "NO_SUCH_Long_1")
    assert code == 2 and "position_id" in refused


def test_a_synthetic_bank_nifty_rolls_its_four_legs(db_config: DatabaseConfig, broker: Sim) -> None:
    """In process (the engine's instrument table made synthetic), the real simulator over HTTP."""
    from dataclasses import replace

    from pm_engine.adapters.openalgo import OpenAlgoClient
    from pm_engine.core.engine import TradingEngine
    from pm_engine.core.instruments import BANK_NIFTY_CONTRACT
    from pm_engine.core.market_hours import MarketHours
    from pm_engine.ops.rollover import Roller
    from pm_engine.ops.sender import OrderSender
    from pm_engine.store.gateway import Store

    instruments = dict(DEFAULT_INSTRUMENTS)
    instruments["BANK_NIFTY"] = replace(instruments["BANK_NIFTY"],
                                        contract=replace(BANK_NIFTY_CONTRACT, execution="synthetic"))
    calendar = ContractCalendar(instruments)
    store = Store(db_config)
    sender = OrderSender(store, OpenAlgoClient(broker.url, broker.api_key), MarketHours(always=True))
    try:
        engine = TradingEngine(store=store, instruments=instruments, contracts=calendar, broker=sender,
                               max_signal_age=None)
        old = calendar.synthetic_legs("BANK_NIFTY", BANK.expiry, D(52000))
        price(broker, old.ce_symbol, "600")
        price(broker, old.pe_symbol, "550")
        entered = engine.process_payload(payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, stamp(), stop=51650,
                                                 atr=350, er=0.85), check_time=False)
        assert entered.outcome.value == "executed"

        def settled(query: str, expected: Any) -> bool:
            sender.tick()
            return rows(db_config, query) == expected
        wait_for(lambda: settled("SELECT count(*) FROM pm.broker_orders WHERE status = 'filled'", [(2,)]))
        [(lots, entry, point_value)] = rows(db_config, "SELECT p.lots, p.entry_price, o.point_value FROM "
                                                       "pm.portfolio_positions p JOIN pm.broker_orders o USING "
                                                       "(position_id) WHERE o.leg = 'CE'")
        assert entry == old.strike + 600 - 550
        new = calendar.synthetic_legs("BANK_NIFTY", BANK_NEXT.expiry, entry)  # the new strike from the price now
        price(broker, old.ce_symbol, "700")
        price(broker, old.pe_symbol, "500")
        price(broker, new.ce_symbol, "640")
        price(broker, new.pe_symbol, "560")
        result = Roller(store, calendar, instruments).check(force=True, instruments=["BANK_NIFTY"], respect_hours=False)
        assert [s["state"] for s in result.started] == ["closing"]
        wait_for(lambda: settled("SELECT state FROM pm.rolls", [("rolled",)]), 40, lambda: roll_states(db_config))
        legs = [(o["symbol"], o["action"]) for o in broker.state()["orders"][2:]]
        assert legs == [(old.ce_symbol, "SELL"), (old.pe_symbol, "BUY"), (new.ce_symbol, "BUY"),
                        (new.pe_symbol, "SELL")]  # two to close, two to open: never a naked option
        closed_at = old.strike + 700 - 500
        assert rows(db_config, "SELECT strike, ce_symbol, pe_symbol, entry_price, futures_symbol, rollover_pnl "
                               "FROM pm.portfolio_positions") == \
            [(new.strike, new.ce_symbol, new.pe_symbol, D(new.strike + 640 - 560), BANK_NEXT.symbol,
              ((closed_at - entry) * lots * point_value).quantize(D("0.01")))]
    finally:
        sender.stop()
        store.close()
