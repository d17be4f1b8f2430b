"""Notifications end to end: real engine processes, a real local HTTP receiver (Apprise ``json://``)
and a real SMTP server (aiosmtpd, ``mailto://``); SIGKILL mid-send, two instances, a service down,
a flood; and no URL credential anywhere in what the run shows."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import psycopg2
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.tools import children
from tests.brokersim import Sim, sim, sim_process  # noqa: F401 - fixtures
from tests.helpers import payload, rows
from tests.receivers import JsonReceiver, SmtpReceiver

SECRET = "notifications-webhook-secret-0123456789"
JSON_TOKEN = "TOKEN-7f3a9c"  # stands for a bot token in a URL: it must never be shown
JSON_PASSWORD = "json-pass-Q8x"
FAST = {"PM_NOTIFY_RETRY_S": "1", "PM_NOTIFY_RETRY_MAX_S": "3", "PM_NOTIFY_EVENTS": "-daily_report"}

pytestmark = pytest.mark.slow


class Engine(children.EngineProcess):
    def __init__(self, config: DatabaseConfig, log: Path, urls: list[str], **env: str) -> None:
        super().__init__(config, SECRET, log=log, env={"PM_NOTIFY_URLS": " ".join(urls), **FAST, **env})
        self.start()
        self.url = f"http://127.0.0.1:{self.port}"
        if not self.wait_ready(30):
            raise RuntimeError("engine did not start: " + log.read_text()[-2000:])

    def send(self, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.url + "/webhook", json={**body, "secret": SECRET}, timeout=5)

    def leads(self) -> bool:
        return "pm_leader 1.0" in httpx.get(self.url + "/metrics", timeout=5).text


@pytest.fixture
def engines() -> Iterator[list[Engine]]:
    started: list[Engine] = []
    yield started
    for engine in started:
        engine.stop()


def json_url(receiver: JsonReceiver) -> str:
    return f"json://trader:{JSON_PASSWORD}@127.0.0.1:{receiver.port}/hook/{JSON_TOKEN}"


def stamp(minutes_ago: float = 0.5) -> str:
    return (datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)).isoformat()


def entry(instrument: str = "BANK_NIFTY", price: float = 52000) -> dict[str, Any]:
    stop = price * 0.99
    return payload("BASE_ENTRY", instrument, "Long_1", price, stamp(), stop=stop, atr=price * 0.007, er=0.85)


def outbox(messages: list[Any]) -> list[Any]:
    """The messages sent from the outbox (titles start with the event id), not the start/stop notices."""
    return [m for m in messages if re.match(r"pm-engine #\d+ ", m.title)]


def event_id(title: str) -> int:
    match = re.match(r"pm-engine #(\d+) ", title)
    assert match, title
    return int(match.group(1))


def wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return bool(predicate())


def no_secret(text: str) -> None:
    for secret in (JSON_TOKEN, JSON_PASSWORD, "smtp-pass-S3CRET"):
        assert secret not in text


def test_an_executed_entry_reaches_the_phone_once_within_5_s(db_config: DatabaseConfig, engines: list[Engine],
                                                             tmp_path: Path) -> None:
    hook, mail = JsonReceiver().start(), SmtpReceiver().start()
    try:
        engine = Engine(db_config, tmp_path / "engine.log", [json_url(hook), mail.url()])
        engines.append(engine)
        assert wait(engine.leads, 10)
        answer = engine.send(entry())
        sent_at = time.monotonic()
        assert answer.status_code == 200, answer.text
        assert wait(lambda: outbox(hook.messages), 5), "no message within 5 s"
        message = outbox(hook.messages)[0]
        assert message.at - sent_at < 5
        assert wait(lambda: any(s.startswith("pm-engine #") for s in mail.subjects()), 10), "no mail"
        lots = rows(db_config, "SELECT lots FROM pm.portfolio_positions WHERE position_id = 'BANK_NIFTY_Long_1'")[0][0]
        assert "BASE_ENTRY BANK_NIFTY Long_1 executed" in message.title
        assert f"BUY {lots} lots BANK_NIFTY_Long_1 fill 52,000.00" in message.body
        assert "slippage 0.00" in message.body
        assert any("BASE_ENTRY BANK_NIFTY Long_1 executed" in s for s in mail.subjects())
        time.sleep(2)
        assert len(outbox(hook.messages)) == 1 and len([s for s in mail.subjects() if s.startswith("pm-engine #")]) == 1
        assert any(m.title.startswith("pm-engine started") for m in hook.messages)
        # nothing the run shows carries a URL credential: log, pages, API answers, CLI, database
        shown = [httpx.get(engine.url + path, timeout=5).text for path in ("/status", "/metrics", "/health")]
        cli = children_cli(db_config, ["notify", "--json"], {"PM_NOTIFY_URLS": json_url(hook)})
        assert '"state": "sent"' in cli
        shown += [cli, children_cli(db_config, ["notify"], {})]
        shown += [json.dumps(r, default=str) for r in rows(db_config, "SELECT * FROM pm.notification_targets")]
        shown += [json.dumps(r, default=str) for r in rows(db_config, "SELECT * FROM pm.notification_deliveries")]
        engine.stop()
        assert wait(lambda: any(m.title.startswith("pm-engine stopped") for m in hook.messages), 5)
        shown.append((tmp_path / "engine.log").read_text())
        for text in shown:
            no_secret(text)
    finally:
        hook.stop()
        mail.stop()


def test_blocked_exits_never_reach_the_phone_as_executed(db_config: DatabaseConfig, engines: list[Engine],
                                                         tmp_path: Path) -> None:
    """Issue 29 item 1: an EXIT for a layer never open is logged blocked, and is signal_blocked (off by
    default), so a webhook-secret holder cannot send the trader 55 false "EXIT ... executed" messages."""
    hook = JsonReceiver().start()
    try:
        engine = Engine(db_config, tmp_path / "engine.log", [json_url(hook)])
        engines.append(engine)
        assert wait(engine.leads, 10)
        for n in range(55):
            exit_ = payload("EXIT", "GOLD_MINI", "Long_2", 71000 + n, stamp(0.5 + n / 30), reason="SIGNAL")
            answer = engine.send(exit_)
            assert answer.status_code == 200, answer.text
        assert engine.send(entry()).status_code == 200  # one real execution after them, so its message is the marker
        assert wait(lambda: any("BASE_ENTRY BANK_NIFTY Long_1 executed" in m.title for m in outbox(hook.messages)),
                    15), [m.title for m in hook.messages]
        counts = dict(rows(db_config, "SELECT processing_status, count(*)::int FROM pm.signal_log "
                                      "WHERE signal_type = 'EXIT' GROUP BY 1"))
        assert counts == {"blocked": 55}, counts
        kinds = dict(rows(db_config, "SELECT kind, count(*)::int FROM pm.notification_events GROUP BY 1"))
        assert kinds.get("signal_blocked") == 55 and kinds.get("signal_executed") == 1, kinds
        assert not [m.title for m in outbox(hook.messages) if "EXIT" in m.title or "EXIT" in m.body]
    finally:
        hook.stop()


def children_cli(config: DatabaseConfig, args: list[str], env: dict[str, str]) -> str:
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "pm_engine", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DATABASE_URL": config.url(hide_password=False), **env})
    return done.stdout + done.stderr


def metric_lines(engine: Engine) -> set[str]:
    return {line for line in httpx.get(engine.url + "/metrics", timeout=5).text.splitlines()
            if line.startswith("pm_notifications{")}


def test_a_service_down_for_30_s_gets_the_message_once_when_back(db_config: DatabaseConfig, engines: list[Engine],
                                                                 tmp_path: Path) -> None:
    hook = JsonReceiver()  # not started: nothing listens on its port
    engine = Engine(db_config, tmp_path / "engine.log", [json_url(hook)])
    engines.append(engine)
    assert engine.send(entry()).status_code == 200
    time.sleep(30)
    attempts, error = rows(db_config, "SELECT attempts, last_error FROM pm.notification_deliveries")[0]
    assert attempts >= 3 and error and "json" in error
    no_secret(error)
    down = {'pm_notifications{state="failed"} 1.0', 'pm_notifications{state="sent"} 0.0'}
    assert wait(lambda: down <= metric_lines(engine), 5), metric_lines(engine)  # (not while an attempt is on)
    hook.start()
    try:
        assert wait(lambda: outbox(hook.messages), 10)
        time.sleep(3)
        assert len(outbox(hook.messages)) == 1
        assert rows(db_config, "SELECT state FROM pm.notification_deliveries") == [("sent",)]
        back = metric_lines(engine)
        assert {'pm_notifications{state="failed"} 0.0', 'pm_notifications{state="sent"} 1.0',
                'pm_notifications{state="pending"} 0.0'} <= back, back
    finally:
        hook.stop()
    no_secret((tmp_path / "engine.log").read_text())


def test_the_leader_killed_mid_send_loses_nothing_and_a_resend_carries_its_id(
        db_config: DatabaseConfig, engines: list[Engine], tmp_path: Path) -> None:
    hook = JsonReceiver(delay_s=4).start()  # holds its answer: the leader is mid-send when it dies
    try:
        leader = Engine(db_config, tmp_path / "a.log", [json_url(hook)])
        engines.append(leader)
        assert wait(leader.leads, 10)
        other = Engine(db_config, tmp_path / "b.log", [json_url(hook)])
        engines.append(other)
        hook.messages.clear()
        for instrument, price in (("BANK_NIFTY", 52000), ("GOLD_MINI", 78000), ("COPPER", 800)):
            assert other.send(entry(instrument, price)).status_code == 200
        assert wait(lambda: outbox(hook.messages), 10)
        leader.kill()
        hook.delay_s = 0
        events = {r[0] for r in rows(db_config, "SELECT id FROM pm.notification_events")}
        assert len(events) == 3
        assert wait(lambda: {event_id(m.title) for m in outbox(hook.messages)} == events, 30), hook.messages
        time.sleep(3)
        titles = [m.title for m in outbox(hook.messages)]
        for event in events:
            copies = [t for t in titles if event_id(t) == event]
            # once, or — the one in flight when the leader died — once more, marked as a resend of the same id
            assert len(copies) == 1 or (len(copies) == 2 and "(resent" in copies[1]), titles
        assert sum(len([t for t in titles if event_id(t) == e]) for e in events) <= 4
        assert rows(db_config, "SELECT DISTINCT state FROM pm.notification_deliveries") == [("sent",)]
    finally:
        hook.stop()


def test_two_instances_send_each_event_once(db_config: DatabaseConfig, engines: list[Engine], tmp_path: Path) -> None:
    hook = JsonReceiver().start()
    try:
        a = Engine(db_config, tmp_path / "a.log", [json_url(hook)])
        b = Engine(db_config, tmp_path / "b.log", [json_url(hook)])
        engines.extend([a, b])
        for n, (instrument, price) in enumerate((("BANK_NIFTY", 52000), ("GOLD_MINI", 78000), ("COPPER", 800),
                                                 ("SILVER_MINI", 90000))):
            assert (a if n % 2 else b).send(entry(instrument, price)).status_code == 200
        assert wait(lambda: len(outbox(hook.messages)) >= 4, 15)
        time.sleep(3)
        ids = [event_id(m.title) for m in outbox(hook.messages)]
        assert sorted(ids) == sorted(r[0] for r in rows(db_config, "SELECT id FROM pm.notification_events"))
        assert len(ids) == len(set(ids)) == 4
    finally:
        hook.stop()


def test_a_flood_of_100_events_becomes_a_digest(db_config: DatabaseConfig, engines: list[Engine],
                                                tmp_path: Path) -> None:
    hook = JsonReceiver().start()
    try:
        engine = Engine(db_config, tmp_path / "engine.log", [json_url(hook)])
        engines.append(engine)
        assert wait(engine.leads, 10)
        conn = psycopg2.connect(**db_config.dsn_kwargs())
        conn.autocommit = True
        with conn.cursor() as cur:
            for n in range(100):  # a hundred mode changes in a few seconds
                cur.execute("SELECT pm.set_trading_mode(%s, 'flood', 'test')", ("halted" if n % 2 else "active",))
                time.sleep(0.03)
        conn.close()
        assert wait(lambda: _covered(hook) >= 100, 60), _covered(hook)
        messages = [m for m in hook.messages if m.title.startswith("pm-engine #") or "digest" in m.title]
        times = [m.at for m in messages]
        busiest = max(sum(1 for t in times if start <= t < start + 59) for start in times)
        assert busiest <= 20, [(round(m.at - times[0], 1), m.title) for m in messages]  # Telegram's limit per chat
        assert len(messages) < 50 and any("digest" in m.title for m in messages)
    finally:
        hook.stop()


def _covered(hook: JsonReceiver) -> int:
    """How many distinct event ids the receiver has heard of, one by one or inside digests."""
    ids: set[int] = set()
    for m in hook.messages:
        if m.title.startswith("pm-engine #"):
            ids.add(event_id(m.title))
        elif "digest" in m.title:
            ids.update(int(x) for x in re.findall(r"^#(\d+) ", m.body, re.M))
    return len(ids)


def _dead_port() -> int:
    import socket

    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_broker_session_is_one_event_per_episode_whichever_instance_sees_it(
        db_config: DatabaseConfig, sim: Sim) -> None:  # noqa: F811 - the simulator fixture
    from pm_engine.adapters.openalgo import OpenAlgoClient, Timeouts
    from pm_engine.core.errors import PmError
    from pm_engine.core.market_hours import MarketHours
    from pm_engine.ops.sender import OrderSender, SenderSettings
    from pm_engine.store.gateway import Store

    store = Store(db_config)
    quick = Timeouts(connect_s=1, order_read_s=2, query_read_s=2)
    hours = MarketHours(True)

    def sender(url: str, instance: str, unreachable_after_s: float = 0.0) -> OrderSender:
        return OrderSender(store, OpenAlgoClient(url, sim.api_key, "test", quick), hours,
                           SenderSettings(unreachable_after_s=unreachable_after_s, reassert_s=3.0),
                           instance_id=instance)

    def told() -> list[tuple[Any, ...]]:
        return rows(db_config, "SELECT data ->> 'state', data ->> 'previous', data ->> 'instance' "
                               "FROM pm.notification_events WHERE kind = 'broker_session' ORDER BY id")

    def check(s: OrderSender) -> None:
        try:
            s.reconcile_and_record()
        except PmError:
            pass
    try:
        a, b = sender(sim.url, "inst-a"), sender(sim.url, "inst-b")
        check(a)
        assert a.health.state == "ok" and told() == []  # fine from the start: nothing to tell
        sim.control("faults", {"session_expired": True})
        for _ in range(3):  # every minute's check, on two instances: one episode
            check(a)
            check(b)
        assert told() == [("session_expired", "ok", "inst-a")]
        sim.control("faults", {"session_expired": False})
        check(b)
        check(a)
        assert told()[1:] == [("ok", "session_expired", "inst-b")]
        patient = sender(f"http://127.0.0.1:{_dead_port()}", "inst-c", unreachable_after_s=60)
        check(patient)
        assert patient.health.state == "unreachable" and len(told()) == 2  # one refused call is not an episode yet
        dead = sender(f"http://127.0.0.1:{_dead_port()}", "inst-d")
        check(dead)
        check(dead)
        check(a)  # reported ok a moment ago: not again yet
        assert told()[2:] == [("unreachable", "ok", "inst-d")]
        time.sleep(3.1)
        check(a)  # a fresh answer, reported again: the broker is back (the instance that saw it down may be gone)
        assert told()[2:] == [("unreachable", "ok", "inst-d"), ("ok", "unreachable", "inst-a")]
    finally:
        store.close()
    sim.control("reset")


def test_the_broker_path_tells_the_fill_the_session_and_a_difference_once(
        db_config: DatabaseConfig, sim: Sim, engines: list[Engine], tmp_path: Path) -> None:  # noqa: F811
    from datetime import date

    from pm_engine.core.contracts import ContractCalendar
    from pm_engine.core.instruments import DEFAULT_INSTRUMENTS

    gold = ContractCalendar(DEFAULT_INSTRUMENTS).on("GOLD_MINI", date.today())
    assert gold is not None
    sim.control("price", {"symbol": gold.symbol, "price": "75030"})  # fills 30 points above the signal
    hook = JsonReceiver().start()
    try:
        engine = Engine(db_config, tmp_path / "engine.log", [json_url(hook)], PM_BROKER="openalgo",
                        PM_OPENALGO_URL=sim.url, PM_OPENALGO_API_KEY=sim.api_key, PM_MARKET_HOURS="always",
                        PM_RECONCILE_EVERY_S="1")
        engines.append(engine)

        def titled(text: str) -> list[Any]:
            return [m for m in outbox(hook.messages) if text in m.title]
        engine.send(payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 75000, stamp(0.1), stop=74300, atr=400, er=0.8))
        assert wait(lambda: titled("filled"), 30), hook.messages
        [(lots, points, rupees)] = rows(db_config,
                                        "SELECT lots, slippage_points, slippage_rupees FROM pm.broker_orders")
        [executed], [fill] = titled("executed"), titled("filled")
        assert "sent to the broker at the signal price 75,000.00; its fill follows" in executed.body
        assert "paper" not in executed.body
        assert fill.title.endswith(f"BUY {lots} lots GOLD_MINI_Long_1 filled 75,030.00")
        assert f"slippage {points:,.2f} points, {rupees:,.2f} rupees" in fill.body and points == 30
        sim.control("faults", {"session_expired": True})  # the overnight expiry: seen by the minute's check
        assert wait(lambda: titled("broker session expired"), 15), hook.messages
        time.sleep(3)  # three more checks: still one message
        sim.control("faults", {"session_expired": False})
        assert wait(lambda: titled("broker session restored"), 15), hook.messages
        status, body = sim.post("placeorder", {"apikey": sim.api_key, "strategy": "by hand", "exchange": "MCX",
                                               "symbol": gold.symbol, "action": "BUY", "quantity": "1",
                                               "product": "NRML"})
        assert status == 200, body
        assert wait(lambda: titled("the book and the broker differ: GOLD_MINI"), 15), hook.messages
        time.sleep(3)  # more checks, the difference still there: told once
        assert [len(titled(t)) for t in ("broker session expired", "broker session restored", "differ")] == [1, 1, 1]
        assert not titled("locked")  # the lock is part of the difference's message, not one of its own
        [difference] = titled("differ")
        assert "book holds" in difference.body and "locked for new entries" in difference.body
        assert not [m for m in hook.messages if sim.api_key in m.title + m.body]  # the broker's key is never told
        no_secret((tmp_path / "engine.log").read_text())
    finally:
        hook.stop()
