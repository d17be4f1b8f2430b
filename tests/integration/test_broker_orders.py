"""Issue 21: real engine processes sending to a real broker-sim process over HTTP, on a real PostgreSQL.

Each fault the gateway can play after accepting an order (a timeout, a cut connection, a 500) must end
with exactly one order at the broker, resolved from its order book and filled from its trade book;
a refusal before the broker is retried once the broker is back; a SIGKILL while an order is on its way
resumes without a second order; two instances never send one order twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.contracts import ContractCalendar
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.tools import children
from tests.brokersim import Sim, sim, sim_process  # noqa: F401 - fixtures
from tests.helpers import payload, rows

SECRET = "broker-orders-webhook-secret-0123456789"
GOLD = ContractCalendar(DEFAULT_INSTRUMENTS).on("GOLD_MINI", date.today())
assert GOLD is not None


class Engine(children.EngineProcess):
    def __init__(self, config: DatabaseConfig, broker: Sim, log: Path, **env: str) -> None:
        super().__init__(config, SECRET, log=log,
                         env={"PM_BROKER": "openalgo", "PM_OPENALGO_URL": broker.url,
                              "PM_OPENALGO_API_KEY": broker.api_key,
                              "PM_MARKET_HOURS": "always", "PM_OPENALGO_TIMEOUT_S": "2", **env})
        self.start()
        self.url = f"http://127.0.0.1:{self.port}"
        if not self.wait_ready(30):
            raise RuntimeError(f"engine did not start: {log.read_text()[-2000:]}")

    def send(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = httpx.post(self.url + "/webhook", json={**body, "secret": SECRET}, timeout=5)
        assert answer.status_code == 200, answer.text
        return dict(answer.json())


@pytest.fixture
def broker(sim: Sim) -> Sim:  # noqa: F811 - the simulator, reset
    return sim


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    started: list[Engine] = []
    yield started
    for engine in started:
        engine.stop()


def stamp(minutes_ago: float = 0.1) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat()


def entry(price: float = 75000) -> dict[str, Any]:
    return payload("BASE_ENTRY", "GOLD_MINI", "Long_1", price, stamp(), stop=price - 700, atr=400, er=0.8)


def wait_for(check: Callable[[], Any], timeout: float = 30.0, show: Callable[[], Any] = lambda: None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting: {show()}")


def order_states(config: DatabaseConfig) -> list[tuple[Any, ...]]:
    return rows(config, "SELECT client_order_id, status, broker_order_id, fill_price, quantity, attempts "
                        "FROM pm.broker_orders ORDER BY created_at")


def filled(config: DatabaseConfig) -> bool:
    return bool(rows(config, "SELECT 1 FROM pm.broker_orders WHERE status = 'filled'"))


def start(db_config: DatabaseConfig, broker: Sim, tmp_path: Path, engines: list[Engine], **env: str) -> Engine:
    engine = Engine(db_config, broker, tmp_path / f"engine{len(engines)}.log", **env)
    engines.append(engine)
    return engine


def test_entry_sent_once_and_filled_from_the_trade_book(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                                        engines: list[Engine]) -> None:
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75012.5"})
    engine = start(db_config, broker, tmp_path, engines)
    answer = engine.send(entry())
    assert answer["outcome"] == "executed"
    wait_for(lambda: filled(db_config))
    [(order_id, state, broker_id, fill_price, quantity, attempts)] = order_states(db_config)
    assert (state, fill_price, attempts) == ("filled", D("75012.50"), 1)
    orders = broker.state()["orders"]
    assert len(orders) == 1 and orders[0]["orderid"] == broker_id and orders[0]["symbol"] == GOLD.symbol
    assert orders[0]["product"] == "NRML" and int(orders[0]["quantity"]) == quantity
    events = rows(db_config, f"SELECT from_state, to_state FROM pm.order_events WHERE client_order_id = '{order_id}' "
                             "ORDER BY id")
    assert events == [("queued", "sending"), ("sending", "open"), ("open", "filled")]
    assert rows(db_config, "SELECT entry_price, signal_price, slippage_points FROM pm.portfolio_positions") == \
        [(D("75012.50"), D("75000.00"), D("12.50"))]
    [(lots, rupees)] = rows(db_config, "SELECT lots, slippage_rupees FROM pm.broker_orders")
    assert rupees == D("12.50") * lots * 10  # GOLD_MINI: 10 rupees per point per lot
    listed = httpx.get(engine.url + "/orders?state=filled").json()
    [row] = listed["orders"]
    assert (row["client_order_id"], row["broker_order_id"], row["filled_quantity"]) == (order_id, broker_id, quantity)
    assert (row["average_price"], row["signal_price"], row["slippage"]) == ("75012.50", "75000.00", "12.50")
    assert listed["broker"]["state"] == "ok" and broker.api_key not in httpx.get(engine.url + "/orders").text
    [position] = httpx.get(engine.url + "/status").json()["positions"]
    assert (position["symbol"], position["signal_price"], position["entry_price"]) == \
        (GOLD.symbol, "75000.00", "75012.50")  # the fill, not the alert
    assert httpx.get(engine.url + "/orders?state=bogus").json()["field"] == "state"
    cli = subprocess.run([sys.executable, "-m", "pm_engine", "orders", "--json", "--state", "filled"],
                         env={**os.environ, "DATABASE_URL": db_config.url(hide_password=False)},
                         capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert [o["client_order_id"] for o in json.loads(cli.stdout)] == [order_id]


@pytest.mark.parametrize("fault", ["timeout", "cut", "500"])
def test_unclear_answer_after_acceptance_is_resolved_never_resent(fault: str, db_config: DatabaseConfig, broker: Sim,
                                                                  tmp_path: Path, engines: list[Engine]) -> None:
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75040"})
    broker.control("faults", {"after_accept": fault, "hang_s": 4, "times": 1})
    engine = start(db_config, broker, tmp_path, engines)
    engine.send(entry())
    wait_for(lambda: filled(db_config), 40)
    [(order_id, state, broker_id, fill_price, _, attempts)] = order_states(db_config)
    assert (state, fill_price, attempts) == ("filled", D("75040.00"), 1)
    assert [o["orderid"] for o in broker.state()["orders"]] == [broker_id]  # exactly one order at the broker
    path = rows(db_config, f"SELECT to_state FROM pm.order_events WHERE client_order_id = '{order_id}' ORDER BY id")
    assert [p for (p,) in path] == ["sending", "unknown", "open", "filled"]


def test_expired_session_waits_then_sends_once(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                               engines: list[Engine]) -> None:
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75000"})
    broker.control("faults", {"session_expired": True})
    engine = start(db_config, broker, tmp_path, engines)
    engine.send(entry())
    wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE attempts >= 2"), 20)
    health = httpx.get(engine.url + "/orders/broker").json()
    assert health["state"] == "session_expired" and health["text"] == "broker session expired"
    status = httpx.get(engine.url + "/status").json()["broker"]
    assert status["state"] == "session_expired" and status["seconds_since"] >= 0
    assert broker.state()["orders"] == [] and not filled(db_config)
    broker.control("faults", {"session_expired": False})
    wait_for(lambda: filled(db_config), 40)
    assert len(broker.state()["orders"]) == 1


def test_rejected_at_placement_is_never_sent_again(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                                   engines: list[Engine]) -> None:
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75000"})
    broker.control("faults", {"reject": "place"})
    engine = start(db_config, broker, tmp_path, engines)
    engine.send(entry())
    wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE status = 'rejected'"))
    time.sleep(1.5)
    [(_, state, broker_id, _, _, attempts)] = order_states(db_config)
    assert (state, broker_id, attempts) == ("rejected", None, 1)
    assert rows(db_config, "SELECT count(*) FROM pm.portfolio_positions") == [(0,)]  # the entry never happened
    assert rows(db_config, "SELECT count(*) FROM pm.pyramiding_state") == [(0,)]
    assert rows(db_config, "SELECT closed_equity FROM pm.portfolio_state") == [(D("5000000.00"),)]
    assert rows(db_config, "SELECT kind FROM pm.anomalies") == [("entry_rejected",)]
    wait_for(lambda: httpx.get(engine.url + "/status").json()["positions"] == [], 20)  # every instance reloads


def test_rejected_exit_leaves_the_position_open(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                                engines: list[Engine]) -> None:
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75000"})
    engine = start(db_config, broker, tmp_path, engines)
    engine.send(entry())
    wait_for(lambda: filled(db_config))
    broker.control("faults", {"reject": "book"})  # accepted, then rejected in the order book
    engine.send(payload("EXIT", "GOLD_MINI", "ALL", 76000, stamp(), reason="SIGNAL"))
    wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE status = 'rejected'"))
    assert rows(db_config, "SELECT status, exit_price, realized_pnl FROM pm.portfolio_positions") == \
        [("open", None, D("0.00"))]
    assert rows(db_config, "SELECT closed_equity FROM pm.portfolio_state") == [(D("5000000.00"),)]
    assert rows(db_config, "SELECT kind FROM pm.anomalies") == [("exit_rejected",)]
    wait_for(lambda: len(httpx.get(engine.url + "/status").json()["positions"]) == 1, 20)


def test_exit_books_its_fill_price(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                   engines: list[Engine]) -> None:
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75010"})
    engine = start(db_config, broker, tmp_path, engines)
    lots = engine.send(entry())["lots"]
    wait_for(lambda: filled(db_config))
    broker.control("price", {"symbol": GOLD.symbol, "price": "75980"})
    engine.send(payload("EXIT", "GOLD_MINI", "ALL", 76000, stamp(), reason="SIGNAL"))
    wait_for(lambda: rows(db_config, "SELECT count(*) FROM pm.broker_orders WHERE status = 'filled'") == [(2,)])
    realized = (D(75980) - D(75010)) * lots * 10
    assert rows(db_config, "SELECT entry_price, exit_price, realized_pnl FROM pm.portfolio_positions") == \
        [(D("75010.00"), D("75980.00"), realized)]
    assert rows(db_config, "SELECT closed_equity FROM pm.portfolio_state") == [(D("5000000.00") + realized,)]


def test_partial_fill_keeps_what_filled(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                        engines: list[Engine]) -> None:
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75000"})
    broker.control("faults", {"partial": "0.5"})
    engine = start(db_config, broker, tmp_path, engines)
    answer = engine.send(entry())
    assert answer["lots"] >= 2, answer  # half of it fills, in whole lots
    wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE status = 'cancelled'"))
    [(quantity, got)] = rows(db_config, "SELECT o.quantity, pm.order_filled_quantity(o.client_order_id) "
                                        "FROM pm.broker_orders o WHERE status = 'cancelled'")
    assert got == quantity // 2
    assert rows(db_config, "SELECT lots FROM pm.portfolio_positions") == [(got,)]  # MCX quantity is in lots


def test_sigkill_while_sending_resumes_without_a_second_order(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                                              engines: list[Engine]) -> None:
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75100"})
    broker.control("faults", {"latency_ms": 3000})
    engine = start(db_config, broker, tmp_path, engines)
    engine.send(entry())
    wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE status = 'sending'"), 10)
    time.sleep(1)  # the request is at the simulator now, which holds it for its latency
    assert engine.proc is not None
    engine.proc.send_signal(signal.SIGKILL)
    engine.proc.wait(10)
    time.sleep(3)  # the simulator books the order after its latency: it reached the broker
    broker.control("faults", {"latency_ms": 0})
    assert len(broker.state()["orders"]) == 1
    start(db_config, broker, tmp_path, engines)
    wait_for(lambda: filled(db_config), 40)
    assert len(broker.state()["orders"]) == 1
    [(order_id, *_)] = order_states(db_config)
    path = rows(db_config, f"SELECT to_state FROM pm.order_events WHERE client_order_id = '{order_id}' ORDER BY id")
    assert [p for (p,) in path] == ["sending", "unknown", "open", "filled"]


def test_two_instances_never_send_one_order_twice(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                                  engines: list[Engine]) -> None:
    prices = {}
    instruments = ("GOLD_MINI", "SILVER_MINI")
    for name in instruments:
        contract = ContractCalendar(DEFAULT_INSTRUMENTS).on(name, date.today())
        assert contract is not None
        prices[name] = {"GOLD_MINI": 75000, "SILVER_MINI": 90000, "BANK_NIFTY": 52000}[name]
        broker.control("price", {"symbol": contract.symbol, "price": str(prices[name])})
    first = start(db_config, broker, tmp_path, engines)
    second = start(db_config, broker, tmp_path, engines)
    for i, name in enumerate(instruments):
        target = (first, second)[i % 2]
        price = prices[name]
        answer = target.send(payload("BASE_ENTRY", name, "Long_1", price, stamp(), stop=price * 0.99,
                                     atr=price * 0.005, er=0.8))
        assert answer["outcome"] == "executed", (name, answer)
    wait_for(lambda: rows(db_config, "SELECT count(*) FROM pm.broker_orders WHERE status = 'filled'")[0][0] == 2, 40,
             lambda: order_states(db_config))
    exit_ = payload("EXIT", "GOLD_MINI", "ALL", 75200, stamp(), reason="SIGNAL")
    assert second.send(exit_)["outcome"] == "executed"  # the other instance: both senders see every order
    wait_for(lambda: rows(db_config, "SELECT count(*) FROM pm.broker_orders WHERE status = 'filled'")[0][0] == 3, 40,
             lambda: order_states(db_config))
    broker_orders = broker.state()["orders"]
    assert len(broker_orders) == 3
    assert rows(db_config, "SELECT count(*) FROM pm.order_events WHERE to_state = 'sending'") == [(3,)]


def reconcile_cli(db_config: DatabaseConfig, broker: Sim) -> tuple[int, dict[str, Any]]:
    env = {**os.environ, "DATABASE_URL": db_config.url(hide_password=False), "PM_BROKER": "openalgo",
           "PM_OPENALGO_URL": broker.url, "PM_OPENALGO_API_KEY": broker.api_key}
    done = subprocess.run([sys.executable, "-m", "pm_engine", "reconcile", "--json"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert broker.api_key not in done.stdout + done.stderr
    return done.returncode, json.loads(done.stdout) if done.stdout else {}


def test_reconcile_finds_a_position_opened_by_hand(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                                   engines: list[Engine]) -> None:
    assert GOLD is not None
    silver = ContractCalendar(DEFAULT_INSTRUMENTS).on("SILVER_MINI", date.today())
    assert silver is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75000"})
    broker.control("price", {"symbol": silver.symbol, "price": "90000"})
    engine = start(db_config, broker, tmp_path, engines)
    lots = engine.send(entry())["lots"]
    wait_for(lambda: filled(db_config))
    code, result = reconcile_cli(db_config, broker)
    assert (code, result["matched"], result["differences"]) == (0, True, [])

    def by_hand(symbol: str, action: str) -> None:
        status, body = broker.post("placeorder", {"apikey": broker.api_key, "strategy": "by hand", "exchange": "MCX",
                                                  "symbol": symbol, "action": action, "quantity": "1",
                                                  "product": "NRML"})
        assert status == 200, body

    by_hand(silver.symbol, "BUY")  # other activity on the account: listed, not ours
    by_hand(GOLD.symbol, "BUY")
    code, result = reconcile_cli(db_config, broker)
    assert code == 3 and result["matched"] is False
    assert result["differences"] == [{"symbol": GOLD.symbol, "exchange": "MCX", "product": "NRML",
                                      "book_quantity": lots, "broker_quantity": lots + 1}]
    assert [o["symbol"] for o in result["other_positions"]] == [silver.symbol]
    served = httpx.get(engine.url + "/reconcile").json()
    assert served["matched"] is False and served["differences"] == result["differences"]
    text = subprocess.run([sys.executable, "-m", "pm_engine", "reconcile"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DATABASE_URL": db_config.url(hide_password=False),
                               "PM_BROKER": "openalgo", "PM_OPENALGO_URL": broker.url,
                               "PM_OPENALGO_API_KEY": broker.api_key})
    assert text.returncode == 3 and "book and broker differ:" in text.stdout
    assert "next:" in text.stdout and "pm-engine unlock INSTRUMENT" in text.stdout  # what to do (issue 28)
    by_hand(GOLD.symbol, "SELL")
    code, result = reconcile_cli(db_config, broker)
    assert (code, result["matched"]) == (0, True)
    assert len(broker.state()["orders"]) == 4  # reconciliation never places an order of its own


def test_session_restored_sends_the_waiting_exit_once_and_expires_the_stale_entry(
        db_config: DatabaseConfig, broker: Sim, tmp_path: Path, engines: list[Engine]) -> None:
    assert GOLD is not None
    silver = ContractCalendar(DEFAULT_INSTRUMENTS).on("SILVER_MINI", date.today())
    assert silver is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75000"})
    broker.control("price", {"symbol": silver.symbol, "price": "90000"})
    engine = start(db_config, broker, tmp_path, engines, PM_MAX_ORDER_AGE_S="3")
    engine.send(entry())
    wait_for(lambda: filled(db_config))
    broker.control("faults", {"session_expired": True})
    assert engine.send(payload("EXIT", "GOLD_MINI", "ALL", 75500, stamp(), reason="SIGNAL"))["outcome"] == "executed"
    assert engine.send(payload("BASE_ENTRY", "SILVER_MINI", "Long_1", 90000, stamp(), stop=89000, atr=450,
                               er=0.8))["outcome"] == "executed"
    wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE status = 'expired'"), 20)
    broker.control("faults", {"session_expired": False})
    wait_for(lambda: rows(db_config, "SELECT count(*) FROM pm.broker_orders WHERE status = 'filled'") == [(2,)], 40)
    time.sleep(1)
    assert [(o["symbol"], o["action"]) for o in broker.state()["orders"]] == [(GOLD.symbol, "BUY"),
                                                                              (GOLD.symbol, "SELL")]
    assert rows(db_config, "SELECT instrument, status FROM pm.portfolio_positions") == [("GOLD_MINI", "closed")]
    assert rows(db_config, "SELECT instrument, status FROM pm.broker_orders WHERE status = 'expired'") == \
        [("SILVER_MINI", "expired")]


def test_price_guard_refuses_an_entry_when_the_market_moved(db_config: DatabaseConfig, broker: Sim, tmp_path: Path,
                                                            engines: list[Engine]) -> None:
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "76000"})  # 1.33 % above the signal's 75000
    engine = start(db_config, broker, tmp_path, engines, PM_PRICE_GUARD_BASE_PCT="1")
    engine.send(entry())
    wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE status = 'rejected'"))
    [(reason,)] = rows(db_config, "SELECT reason FROM pm.broker_orders")
    assert reason.startswith("market moved: the quote 76000")
    assert broker.state()["orders"] == []  # never sent
    assert rows(db_config, "SELECT count(*) FROM pm.portfolio_positions") == [(0,)]
    broker.control("price", {"symbol": GOLD.symbol, "price": "75500"})  # 0.67 %: within the guard
    engine.send(payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 75000, stamp(0.05), stop=74300, atr=400, er=0.8))
    wait_for(lambda: filled(db_config))
    assert rows(db_config, "SELECT entry_price FROM pm.portfolio_positions") == [(D("75500.00"),)]


def test_the_leader_locks_an_instrument_the_broker_disagrees_on(db_config: DatabaseConfig, broker: Sim,
                                                                tmp_path: Path, engines: list[Engine]) -> None:
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75000"})
    engine = start(db_config, broker, tmp_path, engines, PM_RECONCILE_EVERY_S="1")
    engine.send(entry())
    wait_for(lambda: filled(db_config))
    status, body = broker.post("placeorder", {"apikey": broker.api_key, "strategy": "by hand", "exchange": "MCX",
                                              "symbol": GOLD.symbol, "action": "BUY", "quantity": "1",
                                              "product": "NRML"})
    assert status == 200, body
    wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.instrument_locks WHERE source = 'reconcile'"), 30)
    time.sleep(2.5)  # more rounds: locked once, not once a round
    assert rows(db_config, "SELECT instrument, released_at FROM pm.instrument_locks") == [("GOLD_MINI", None)]
    assert rows(db_config, "SELECT kind FROM pm.anomalies") == [("reconcile_difference",)]
    pyramid = payload("PYRAMID", "GOLD_MINI", "Long_2", 75900, stamp(), stop=75300, atr=400)
    assert engine.send(pyramid)["outcome"] == "blocked"  # no new entries until the trader looks
    assert len(broker.state()["orders"]) == 2  # nothing placed to "fix" it


def review_cli(db_config: DatabaseConfig, *args: str, broker: Sim | None = None,
               command: tuple[str, ...] = ("orders", "review")) -> subprocess.CompletedProcess[str]:
    """``pm-engine orders review`` (or another command) as the trader runs it, with the broker's settings if given."""
    env = {**os.environ, "DATABASE_URL": db_config.url(hide_password=False)}
    if broker is not None:
        env |= {"PM_BROKER": "openalgo", "PM_OPENALGO_URL": broker.url, "PM_OPENALGO_API_KEY": broker.api_key}
    return subprocess.run([sys.executable, "-m", "pm_engine", *command, *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_the_trader_resolves_a_needs_review_order_from_the_broker_book(db_config: DatabaseConfig, broker: Sim,
                                                                       tmp_path: Path, engines: list[Engine]) -> None:
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75030"})
    broker.control("faults", {"after_accept": "timeout", "hang_s": 4, "times": 1})
    engine = start(db_config, broker, tmp_path, engines)
    engine.send(entry())
    [ours] = wait_for(lambda: broker.state()["orders"], 20)  # at the broker, its answer held back
    status, body = broker.post("placeorder", {"apikey": broker.api_key, "strategy": "by hand", "exchange": "MCX",
                                              "symbol": GOLD.symbol, "action": "BUY", "quantity": ours["quantity"],
                                              "product": "NRML"})  # the same order placed by hand meanwhile
    assert status == 200, body
    wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE status = 'needs_review'"), 30,
             lambda: order_states(db_config))
    [(order_id, _, broker_id, *_)] = order_states(db_config)
    assert broker_id is None  # two broker orders match: the engine does not guess
    assert rows(db_config, "SELECT instrument FROM pm.instrument_locks WHERE released_at IS NULL") == [("GOLD_MINI",)]
    pyramid = payload("PYRAMID", "GOLD_MINI", "Long_2", 75900, stamp(), stop=75300, atr=400)
    assert engine.send(pyramid)["outcome"] == "blocked"

    refused = review_cli(db_config, order_id, "--at-broker", body["orderid"], "--not-at-broker")
    assert refused.returncode == 2 and "not allowed with argument" in refused.stderr
    done = review_cli(db_config, order_id, "--at-broker", ours["orderid"], "--reason", "the 10:30 order is mine",
                      broker=broker)
    assert done.returncode == 0, done.stderr
    assert "open (reviewed by" in done.stdout and "the 10:30 order is mine" in done.stdout
    wait_for(lambda: filled(db_config), 30, lambda: order_states(db_config))
    assert rows(db_config, "SELECT broker_order_id, fill_price FROM pm.broker_orders") == \
        [(ours["orderid"], D("75030.00"))]
    assert rows(db_config, "SELECT entry_price, signal_price FROM pm.portfolio_positions") == \
        [(D("75030.00"), D("75000.00"))]
    assert rows(db_config, "SELECT count(*) FROM pm.instrument_locks WHERE released_at IS NULL") == [(0,)]
    path = rows(db_config, f"SELECT to_state FROM pm.order_events WHERE client_order_id = '{order_id}' ORDER BY id")
    assert [p for (p,) in path] == ["sending", "unknown", "needs_review", "open", "filled"]
    again = review_cli(db_config, order_id, "--not-at-broker")
    assert again.returncode == 2 and "is filled, not needs_review" in again.stderr
    assert len(broker.state()["orders"]) == 2  # the review placed nothing


def _needs_review(db_config: DatabaseConfig, broker: Sim, tmp_path: Path, engines: list[Engine],
                  **env: str) -> tuple[Engine, str, dict[str, Any]]:
    """An entry whose answer the gateway held back while the same order was placed by hand: needs_review."""
    assert GOLD is not None
    broker.control("price", {"symbol": GOLD.symbol, "price": "75030"})
    broker.control("faults", {"after_accept": "timeout", "hang_s": 4, "times": 1})
    engine = start(db_config, broker, tmp_path, engines, **env)
    engine.send(entry())
    [ours] = wait_for(lambda: broker.state()["orders"], 20)
    status, body = broker.post("placeorder", {"apikey": broker.api_key, "strategy": "by hand", "exchange": "MCX",
                                              "symbol": GOLD.symbol, "action": "BUY", "quantity": ours["quantity"],
                                              "product": "NRML"})
    assert status == 200, body
    wait_for(lambda: rows(db_config, "SELECT 1 FROM pm.broker_orders WHERE status = 'needs_review'"), 30,
             lambda: order_states(db_config))
    [(order_id, *_)] = order_states(db_config)
    return engine, order_id, ours


def state_of(db_config: DatabaseConfig, order_id: str) -> tuple[Any, ...]:
    return rows(db_config, f"SELECT status, broker_order_id, review_link FROM pm.broker_orders "
                           f"WHERE client_order_id = '{order_id}'")[0]


def test_a_review_link_must_be_in_the_broker_book_and_stay_there(db_config: DatabaseConfig, broker: Sim,
                                                                 tmp_path: Path, engines: list[Engine]) -> None:
    """Issue 29 item 3: ``--at-broker "$(printf 'a\\x01b')"`` opened a needs_review order forever. The id must be
    in the broker's order book with the order's symbol, side and quantity; a checked link the books no longer
    show goes back to needs_review; a --force link stays, and reconciliation judges its contract."""
    assert GOLD is not None
    engine, order_id, ours = _needs_review(db_config, broker, tmp_path, engines, PM_ORDER_REVIEW_AFTER_S="2")
    typo = review_cli(db_config, order_id, "--at-broker", "a\x01b", broker=broker)
    assert typo.returncode == 2 and "is not in the broker's order book" in typo.stderr, typo.stderr
    said = typo.stderr.strip().splitlines()  # the first line names the database read (issue 28), then the error
    assert "Traceback" not in typo.stderr and len(said) == 2 and said[0].startswith("pm-engine orders: database ")
    blind = review_cli(db_config, order_id, "--at-broker", ours["orderid"])  # no broker to look in
    assert blind.returncode == 2 and "--force" in blind.stderr
    bare = review_cli(db_config, order_id, "--at-broker", "B-GONE", "--force")
    assert bare.returncode == 2 and "--force needs --reason" in bare.stderr
    assert state_of(db_config, order_id) == ("needs_review", None, None)  # nothing changed by any of them

    engine.stop()  # nobody follows the books while they lose the order (as overnight)
    done = review_cli(db_config, order_id, "--at-broker", ours["orderid"], broker=broker)
    assert done.returncode == 0, done.stderr
    assert state_of(db_config, order_id) == ("open", ours["orderid"], "checked")
    broker.control("reset")  # the broker's books no longer show it
    engine = start(db_config, broker, tmp_path, engines, PM_ORDER_REVIEW_AFTER_S="2")
    wait_for(lambda: state_of(db_config, order_id)[0] == "needs_review", 30, lambda: state_of(db_config, order_id))
    path = rows(db_config, f"SELECT to_state FROM pm.order_events WHERE client_order_id = '{order_id}' ORDER BY id")
    assert [p for (p,) in path][-2:] == ["open", "needs_review"]
    assert rows(db_config, "SELECT instrument FROM pm.instrument_locks WHERE released_at IS NULL") == [("GOLD_MINI",)]

    forced = review_cli(db_config, order_id, "--at-broker", "B-GONE", "--force", "--reason",
                        "yesterday's order, no longer in the books")
    assert forced.returncode == 0, forced.stderr
    assert state_of(db_config, order_id) == ("open", "B-GONE", "forced")
    time.sleep(4)  # twice the review window: a forced link does not go back by itself
    assert state_of(db_config, order_id) == ("open", "B-GONE", "forced")
    judged = review_cli(db_config, "--json", broker=broker, command=("reconcile",))
    assert judged.returncode == 3, judged.stdout + judged.stderr  # the book holds the entry, the broker nothing
    result = json.loads(judged.stdout)
    assert not result["matched"] and [d["symbol"] for d in result["differences"]] == [GOLD.symbol]
