"""Notification settings, the Apprise adapter against a real local receiver, messages, the daily
report against ``status`` and ``report``, the leader's pass and the database-outage episodes."""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stdout
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterator
from unittest import mock

import psycopg2
import pytest

from pm_engine import cli
from pm_engine.config import DatabaseConfig, load_settings
from pm_engine.core.engine import TradingEngine
from pm_engine.core.errors import ConfigError, DatabaseUnavailableError
from pm_engine.core.replay.notification_kinds import DEFAULT_EVENTS, KINDS
from pm_engine.notify.messages import Event, digest, render
from pm_engine.notify.notifier import Notifier, redact
from pm_engine.notify.settings import NotifySettings, notify_settings, parse_events
from pm_engine.notify.report import DailyReport
from pm_engine.ops.daily_report import IST, build_daily_report, next_rolls, report_due
from pm_engine.ops.delivery import DatabaseWatch, NotificationDelivery
from pm_engine.store.gateway import Store
from tests.helpers import payload, rows
from tests.receivers import JsonReceiver

TOKEN = "bot-TOKEN-123456"


@pytest.fixture
def hook() -> Iterator[JsonReceiver]:
    receiver = JsonReceiver().start()
    yield receiver
    receiver.stop()


def url(receiver: JsonReceiver) -> str:
    return f"json://user:{TOKEN}@127.0.0.1:{receiver.port}/path/{TOKEN}"


def test_events_tokens_kinds_levels_and_removal() -> None:
    assert parse_events([]) == frozenset()
    assert parse_events(["-daily_report"]) == DEFAULT_EVENTS - {"daily_report"}
    assert parse_events(["critical"]) == {k for k, v in KINDS.items() if v.level == "critical"}
    assert "signal_blocked" not in DEFAULT_EVENTS and "signal_blocked" in parse_events(["default", "signal_blocked"])
    assert parse_events(["all", "-warning"]) == {k for k, v in KINDS.items() if v.level == "info"}
    with pytest.raises(ConfigError, match="unknown event 'fills'"):
        parse_events(["fills"])


def test_settings_from_the_environment_and_the_config_file(tmp_path: Any) -> None:
    env = {"PM_NOTIFY_URLS": f"tgram://{TOKEN}/42, json://h/p", "PM_NOTIFY_EVENTS": "critical,daily_report"}
    s = notify_settings({"report_time": "23:59", "burst": 5}, env)
    assert s.urls == (f"tgram://{TOKEN}/42", "json://h/p") and s.report_time == time(23, 59) and s.burst == 5
    assert "daily_report" in s.events and "signal_executed" not in s.events
    assert TOKEN not in repr(s)
    with pytest.raises(ConfigError) as bad:
        notify_settings({}, {"PM_NOTIFY_URLS": f"{TOKEN}-no-scheme"})
    assert "entry 1 is not a URL" in str(bad.value) and TOKEN not in str(bad.value)
    for section, message in (({"report_time": "25:00"}, "HH:MM"), ({"burst": 0}, "at least"), ({"x": 1}, "unknown")):
        with pytest.raises(ConfigError, match=message):
            notify_settings(section, {})
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"local": {"host": "h", "notify": {"urls": [f"ntfy://{TOKEN}"]}}}))
    assert load_settings(str(config), {}).notify.urls == (f"ntfy://{TOKEN}",)
    assert load_settings(str(config), {"PM_NOTIFY_URLS": "json://a/b"}).notify.urls == ("json://a/b",)
    assert not load_settings(None, {}).notify.enabled


def test_an_unknown_service_is_refused_by_scheme_only() -> None:
    with pytest.raises(ConfigError) as bad:
        Notifier(NotifySettings(urls=(f"nosuchservice://{TOKEN}@host",)))
    assert "nosuchservice://" in str(bad.value) and TOKEN not in str(bad.value)


def test_redact_removes_every_piece_of_a_url() -> None:
    u = f"mailtos://trader:{TOKEN}@smtp.example.com:587?to=me@example.com"
    text = redact(f"login failed for trader with {TOKEN} at smtp.example.com ({u})", (u,))
    assert TOKEN not in text and u not in text and "trader" not in text


def test_a_send_to_a_receiver_and_to_nothing(hook: JsonReceiver) -> None:
    down = JsonReceiver()  # never started
    notifier = Notifier(NotifySettings(urls=(url(hook), url(down))))
    results = notifier.send_all("pm-engine #1 title", "body", "critical")
    assert [r.ok for _, r in results] == [True, False]
    assert hook.messages[0].title == "pm-engine #1 title" and hook.messages[0].body == "body"
    error = results[1][1].error or ""
    assert error.startswith("json: ") and TOKEN not in error
    assert all(TOKEN not in t.label and TOKEN not in repr(t) for t in notifier.targets)


def test_messages_name_the_fill_and_slippage_and_unknown_kinds_show_their_data() -> None:
    at = datetime(2025, 11, 28, 5, 0, tzinfo=timezone.utc)
    data = {"instrument": "GOLD_MINI", "signal_type": "PYRAMID", "position": "Long_2", "price": 78500,
            "signal_timestamp": at.isoformat(), "reason": "pyramid 2 lots",
            "orders": [{"side": "BUY", "lots": 2, "position_id": "GOLD_MINI_Long_2", "price": 78500,
                        "fill_price": 78512.5}]}
    title, body = render(Event(7, "signal_executed", "info", at, data, resend=True))
    assert title.startswith("pm-engine #7 PYRAMID GOLD_MINI Long_2 executed (resent")
    assert "BUY 2 lots GOLD_MINI_Long_2 fill 78,512.50, slippage 12.50" in body
    title, body = render(Event(8, "roll_done", "info", at, {"instrument": "GOLD_MINI", "why": "due"}))
    assert title == "pm-engine #8 a rollover completed" and "why: due" in body
    title, body = digest([Event(n, "mode_changed", "warning", at, {"mode": "halted"}) for n in range(1, 101)], 20)
    assert title == "pm-engine digest #1-#100: 100 events" and "#60 trading mode halted" in body and "40 more" in body


def test_the_broker_path_messages_say_what_the_trader_needs() -> None:
    at = datetime(2026, 12, 2, 5, 0, tzinfo=timezone.utc)
    data = {"instrument": "GOLD_MINI", "signal_type": "BASE_ENTRY", "position": "Long_1", "price": 75000,
            "signal_timestamp": at.isoformat(), "orders": [{"side": "BUY", "lots": 3, "position_id": "GOLD_MINI_Long_1",
                                                            "price": 75000}]}
    assert "fill 75,000.00 (paper fill at the order price), slippage 0.00" in render(
        Event(1, "signal_executed", "info", at, data))[1]
    live = render(Event(1, "signal_executed", "info", at, data), paper=False)[1]
    assert "BUY 3 lots GOLD_MINI_Long_1 sent to the broker at the signal price 75,000.00; its fill follows" in live
    assert "paper" not in live
    title, body = render(Event(2, "order_filled", "info", at, {
        "side": "BUY", "lots": 3, "position_id": "GOLD_MINI_Long_1", "fill_price": "75030.00",
        "symbol": "GOLDM05JAN27FUT", "quantity": 3, "signal_price": "75000", "slippage_points": "30.00",
        "slippage_rupees": "900.00"}))
    assert title == "pm-engine #2 BUY 3 lots GOLD_MINI_Long_1 filled 75,030.00"
    assert "slippage 30.00 points, 900.00 rupees (adverse positive)" in body
    title, body = render(Event(3, "broker_session", "critical", at, {"state": "session_expired", "previous": "ok",
                                                                     "message": "403", "instance": "i-1"}))
    assert title == "pm-engine #3 broker session expired" and "log in to the broker again" in body
    restored = {"state": "ok", "previous": "session_expired", "seconds": 420}
    assert render(Event(4, "broker_session", "critical", at, restored))[0] == "pm-engine #4 broker session restored"
    assert render(Event(5, "broker_session", "critical", at, {"state": "ok", "previous": "unreachable"}))[0] == \
        "pm-engine #5 broker reachable again"
    title, body = render(Event(6, "reconciliation_difference", "critical", at, {"differences": [
        {"instrument": "GOLD_MINI", "text": "book holds 3 of MCX:GOLDM05JAN27FUT, the broker 4"}]}))
    assert title == "pm-engine #6 the book and the broker differ: GOLD_MINI"
    assert "book holds 3 of MCX:GOLDM05JAN27FUT, the broker 4" in body and "nothing is placed" in body
    title, body = render(Event(7, "order_needs_review", "critical", at, {
        "side": "SELL", "symbol": "GOLDM05JAN27FUT", "quantity": 3, "client_order_id": "pm-x",
        "instrument": "GOLD_MINI", "reason": "2 broker orders match"}))
    assert title == "pm-engine #7 order needs review: SELL GOLDM05JAN27FUT x3"
    assert "2 broker orders match" in body and "GOLD_MINI is locked" in body


def test_python_and_database_kinds_agree(db_config: DatabaseConfig) -> None:
    stored = {k: level for k, level in rows(db_config, "SELECT kind, level FROM pm.notification_kinds")}
    assert stored == {k: v.level for k, v in KINDS.items() if v.stored}


def test_report_due_is_the_day_that_ended() -> None:
    at = datetime(2025, 11, 29, 0, 6, tzinfo=IST)
    assert report_due(at, time(0, 5)) == (date(2025, 11, 28), datetime(2025, 11, 29, 0, 5, tzinfo=IST))
    assert report_due(at - timedelta(minutes=2), time(0, 5))[0] == date(2025, 11, 27)
    assert report_due(datetime(2025, 11, 29, 23, 58, tzinfo=IST), time(23, 57))[0] == date(2025, 11, 29)


def test_next_rolls_group_the_layers_of_a_contract_soonest_first() -> None:
    def layer(instrument: str, contract: Any, roll: Any, days: Any, lots: int) -> dict[str, Any]:
        return {"instrument": instrument, "contract": contract, "roll_date": roll, "days_to_roll": days,
                "roll_due": days is not None and days <= 0, "lots": lots}
    groups = next_rolls([layer("GOLD_MINI", "GOLDM05JAN27FUT", "2027-01-01", 30, 3),
                         layer("CUSTOM", None, None, None, 1),
                         layer("GOLD_MINI", "GOLDM05JAN27FUT", "2027-01-01", 30, 2),
                         layer("BANK_NIFTY", "BANKNIFTY29DEC26FUT", "2026-12-22", -2, 4)])
    assert [(g["instrument"], g["layers"], g["lots"]) for g in groups] == \
        [("BANK_NIFTY", 1, 4), ("GOLD_MINI", 2, 5), ("CUSTOM", 1, 1)]
    report = DailyReport(day=date(2026, 12, 2), as_of=datetime(2026, 12, 2, tzinfo=IST), next_rolls=groups)
    line = next(x for x in report.text().splitlines() if x.startswith("next rolls: "))
    assert line == ("next rolls: BANK_NIFTY BANKNIFTY29DEC26FUT (1 layer, 4 lots) 2026-12-22, due now: roll date "
                    "passed; GOLD_MINI GOLDM05JAN27FUT (2 layers, 5 lots) 2027-01-01, in 30 days; CUSTOM (1 layer, "
                    "1 lots) no contract recorded")
    assert "next rolls: none" in DailyReport(day=date(2026, 12, 2), as_of=datetime(2026, 12, 2, tzinfo=IST)).text()


def _trade_today(db_config: DatabaseConfig) -> Store:
    store = Store(db_config)
    engine = TradingEngine(store=store, instance_id="test")
    now = datetime.now(timezone.utc)
    for body in (payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, (now - timedelta(minutes=3)).isoformat(),
                         stop=51650, atr=350, er=0.85),
                 payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 78000, (now - timedelta(minutes=2)).isoformat(),
                         stop=77500, atr=400, er=0.85),
                 payload("EXIT", "BANK_NIFTY", "ALL", 52600, (now - timedelta(minutes=1)).isoformat(),
                         reason="SIGNAL")):
        assert engine.process_payload(body).outcome.value == "executed"
    engine.flush_orders(5)
    return store


def test_the_daily_report_equals_status_and_report(db_config: DatabaseConfig) -> None:
    store = _trade_today(db_config)
    try:
        today = datetime.now(IST).date()
        report = build_daily_report(store, today)
    finally:
        store.close()
    env = {"DATABASE_URL": db_config.url(hide_password=False)}

    def run(*argv: str) -> str:
        out = io.StringIO()
        with mock.patch.dict(os.environ, env), redirect_stdout(out):
            assert cli.main(list(argv)) == 0
        return out.getvalue()
    status = json.loads(run("status", "--as-of", report.as_of.isoformat(), "--json"))
    assert (report.closed_equity, report.open_equity) == (status["closed_equity"], status["open_equity"])
    assert [p["position_id"] for p in report.positions] == [p["position_id"] for p in status["positions"]] == \
        ["GOLD_MINI_Long_1"]
    start = datetime(today.year, today.month, today.day, tzinfo=IST)
    stats_file = os.path.join(os.path.dirname(db_config.database) or "/tmp", f"stats-{os.getpid()}.json")
    run("report", "--from", start.isoformat(), "--to", report.as_of.isoformat(), "--json", stats_file)
    with open(stats_file) as f:
        days = json.load(f)["pnl_by_period"]["day"]
    os.unlink(stats_file)
    assert [(d["realized_pnl"], d["trades"]) for d in days] == [(report.realized_pnl, len(report.trades))]
    assert float(report.realized_pnl) > 0
    text = run("notify", "report", "--date", today.isoformat())
    # the same text but for the moment each was made ("as of", printed whole: it pastes into --as-of)
    made = report.as_of.astimezone(IST).isoformat(sep=" ")
    assert made in report.text()
    assert text.strip() == report.text().strip().replace(made, text.split(" as of ")[1].split("\n")[0].strip(), 1)
    assert "closed equity" in text and "GOLD_MINI_Long_1" in text
    # the next roll of each open group is the roll date `status` shows for the contract it holds
    held = status["positions"][0]
    assert held["contract"] and held["roll_date"]
    assert [(r["instrument"], r["contract"], r["roll_date"], r["layers"]) for r in report.next_rolls] == \
        [("GOLD_MINI", held["contract"], held["roll_date"], 1)]
    assert f"next rolls: GOLD_MINI {held['contract']} (1 layer, {held['lots']} lots) {held['roll_date']}, " in text
    listed = json.loads(run("notify", "report", "--date", today.isoformat(), "--json"))
    assert listed["next_rolls"][0]["roll_date"] == held["roll_date"]


def test_the_daily_report_names_what_needs_attention(db_config: DatabaseConfig) -> None:

    store = _trade_today(db_config)
    try:
        [(symbol,)] = rows(db_config, "SELECT symbol FROM pm.broker_orders WHERE instrument = 'GOLD_MINI'")
        states = store.orders
        order = {"client_order_id": "pm-review-1", "fingerprint": "f" * 64, "position_id": "GOLD_MINI_Long_1",
                 "instrument": "GOLD_MINI", "side": "SELL", "lots": 1, "price": 78000, "exchange": "MCX",
                 "symbol": symbol, "quantity": 1, "product": "NRML", "leg": "FUT"}
        conn = psycopg2.connect(**db_config.dsn_kwargs())
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT pm.add_orders(%s::jsonb)", (json.dumps([order]),))
        conn.close()
        states.sending("pm-review-1")
        states.unknown("pm-review-1", "timeout")
        assert states.resolve_unknown("pm-review-1", [], 0) == "needs_review"
        difference = {"symbol": symbol, "exchange": "MCX", "product": "NRML", "book_quantity": 2, "broker_quantity": 3}
        store.controls.unlock_instrument("GOLD_MINI", "test")  # the review's lock; reconciliation locks it again
        assert store.orders.record_reconcile_differences([difference]) == 1
        report = build_daily_report(store, datetime.now(IST).date())
    finally:
        store.close()
    attention = "\n".join(report.attention)
    assert f"order pm-review-1 (SELL {symbol} x1) needs review (pm-engine orders)" in attention
    assert f"GOLD_MINI locked: reconciliation: book holds 2 of MCX:{symbol}, the broker 3 (pm-engine reconcile)" \
        in attention


def test_the_leader_sends_the_daily_report_once(db_config: DatabaseConfig, hook: JsonReceiver) -> None:
    store = _trade_today(db_config)
    try:
        notifier = Notifier(NotifySettings(urls=(url(hook),)))
        tomorrow = datetime.now(IST).date() + timedelta(days=1)
        clock = datetime.combine(tomorrow, time(0, 6), tzinfo=IST)
        sender = NotificationDelivery(store, notifier, "leader-x", lambda: True, clock=lambda: clock)
        assert sender.run_once() == 4  # three executed signals, then the report
        again = NotificationDelivery(store, notifier, "leader-y", lambda: True, clock=lambda: clock)
        assert again.run_once() == 0  # the report of that day exists: a second leader adds nothing
        titles = [m.title for m in hook.messages]
        assert sum("daily report" in t for t in titles) == 1 and len(titles) == 4
        report = [m for m in hook.messages if "daily report" in m.title][0]
        assert "realized P&L" in report.body and "GOLD_MINI_Long_1" in report.body
        assert store.notifications.notification_counts()["sent"] == 4
        listing = io.StringIO()
        environ = {"DATABASE_URL": db_config.url(hide_password=False)}
        with mock.patch.dict(os.environ, environ), redirect_stdout(listing):
            assert cli.main(["notify"]) == 0
        assert "json#" in listing.getvalue() and " sent" in listing.getvalue() and TOKEN not in listing.getvalue()
    finally:
        store.close()


def test_a_database_outage_is_told_once_per_episode(db_config: DatabaseConfig, hook: JsonReceiver) -> None:
    notifier = Notifier(NotifySettings(urls=(url(hook),)))
    watch = DatabaseWatch(notifier, "inst-1")
    store = Store(db_config)
    try:
        watch.ok(store)  # the first look: nothing to tell
        for _ in range(3):
            watch.failed(DatabaseUnavailableError("database connection lost: server closed the connection"))
        watch.ok(store)
        watch.ok(store)
    finally:
        store.close()
    assert hook.wait_for(2, 10)
    titles = [m.title for m in hook.messages]
    assert titles == ["pm-engine: database unreachable from inst-1", "pm-engine: database reachable again"]
    assert watch.episodes == 1


def test_notify_test_prints_each_scheme(hook: JsonReceiver, capsys: pytest.CaptureFixture[str]) -> None:
    down = JsonReceiver()
    with mock.patch.dict(os.environ, {"PM_NOTIFY_URLS": f"{url(hook)} {url(down)}"}):
        assert cli.main(["notify", "test"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("json#") and out[0].endswith(": delivered")
    assert out[1].startswith("json#") and ": failed: json: " in out[1]
    assert TOKEN not in "\n".join(out) and hook.messages[0].title == "pm-engine test message"
    with mock.patch.dict(os.environ, {"PM_NOTIFY_URLS": ""}):
        assert cli.main(["notify", "test"]) == 2


def test_a_failing_url_is_logged_once_per_episode_then_hourly(db_config: DatabaseConfig,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """Issue 28 item 6: a service down fails every retry; the log says it once, reminds hourly, and says when
    it recovers, never with the URL (its credentials)."""
    import logging
    import time as clock_time

    from pm_engine.notify.episodes import FailureEpisodes

    hook = JsonReceiver()  # not started: nothing listens on its port
    notifier = Notifier(NotifySettings(urls=(url(hook),), retry_s=0.1, retry_max_s=0.1))
    store = Store(db_config)
    logger = logging.getLogger("pm_engine.ops.delivery")
    try:
        sender = NotificationDelivery(store, notifier, "leader-x", lambda: True)
        now = [1000.0]
        sender.episodes = FailureEpisodes(logger, clock=lambda: now[0])
        TradingEngine(store=store, max_signal_age=None).process_payload(
            payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 75000, "2026-10-30T12:30:00+05:30", stop=74300, atr=400,
                    er=0.8), check_time=False)
        with caplog.at_level(logging.WARNING, logger="pm_engine.ops.delivery"):
            for _ in range(6):  # six failed attempts within the hour
                sender.run_once()
                now[0] += 60
                clock_time.sleep(0.15)  # past the retry backoff
            assert sender.failed >= 5
            lines = [r.getMessage() for r in caplog.records if r.name == logger.name]
            assert len(lines) == 1 and "failed (will retry" in lines[0] and "json#" in lines[0]
            now[0] += 3600
            sender.run_once()
            sender.run_once()
            lines = [r.getMessage() for r in caplog.records if r.name == logger.name]
            assert len(lines) == 2 and "still failing after" in lines[1]
            hook.start()
            clock_time.sleep(0.15)
            assert sender.run_once() >= 1  # the entry (and the session's start event, if any)
            lines = [r.getMessage() for r in caplog.records if r.name == logger.name]
            assert len(lines) == 3 and "delivered again" in lines[2]
            assert all(TOKEN not in line and str(hook.port) not in line for line in lines)
    finally:
        hook.stop()
        store.close()
