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

import pytest

from pm_engine import cli
from pm_engine.config import DatabaseConfig, load_settings
from pm_engine.core.engine import LiveTradingEngine
from pm_engine.core.errors import ConfigError, DatabaseUnavailableError
from pm_engine.notify.kinds import DEFAULT_EVENTS, KINDS
from pm_engine.notify.messages import Event, digest, render
from pm_engine.notify.sender import Notifier, redact
from pm_engine.notify.settings import NotifySettings, notify_settings, parse_events
from pm_engine.ops.notifications import IST, DatabaseWatch, NotificationSender, build_daily_report, report_due
from pm_engine.store.manager import DatabaseStateManager
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
    title, body = render(Event(8, "order_rejected", "critical", at, {"client_order_id": "pm-x", "why": "margin"}))
    assert title == "pm-engine #8 the broker rejected an order" and "why: margin" in body
    title, body = digest([Event(n, "mode_changed", "warning", at, {"mode": "halted"}) for n in range(1, 101)], 20)
    assert title == "pm-engine digest #1-#100: 100 events" and "#60 trading mode halted" in body and "40 more" in body


def test_python_and_database_kinds_agree(db_config: DatabaseConfig) -> None:
    stored = {k: level for k, level in rows(db_config, "SELECT kind, level FROM pm.notification_kinds")}
    assert stored == {k: v.level for k, v in KINDS.items() if v.stored}


def test_report_due_is_the_day_that_ended() -> None:
    at = datetime(2025, 11, 29, 0, 6, tzinfo=IST)
    assert report_due(at, time(0, 5)) == (date(2025, 11, 28), datetime(2025, 11, 29, 0, 5, tzinfo=IST))
    assert report_due(at - timedelta(minutes=2), time(0, 5))[0] == date(2025, 11, 27)
    assert report_due(datetime(2025, 11, 29, 23, 58, tzinfo=IST), time(23, 57))[0] == date(2025, 11, 29)


def _trade_today(db_config: DatabaseConfig) -> DatabaseStateManager:
    db = DatabaseStateManager(db_config)
    engine = LiveTradingEngine(db_manager=db, instance_id="test")
    now = datetime.now(timezone.utc)
    for body in (payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, (now - timedelta(minutes=3)).isoformat(),
                         stop=51650, atr=350, er=0.85),
                 payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 78000, (now - timedelta(minutes=2)).isoformat(),
                         stop=77500, atr=400, er=0.85),
                 payload("EXIT", "BANK_NIFTY", "ALL", 52600, (now - timedelta(minutes=1)).isoformat(),
                         reason="SIGNAL")):
        assert engine.process_payload(body).outcome.value == "executed"
    engine.flush_orders(5)
    return db


def test_the_daily_report_equals_status_and_report(db_config: DatabaseConfig) -> None:
    db = _trade_today(db_config)
    try:
        today = datetime.now(IST).date()
        report = build_daily_report(db, today)
    finally:
        db.close()
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
    assert "closed equity" in text and "GOLD_MINI_Long_1" in text and "next rolls: GOLD_MINI GOLDM" in text


def test_the_leader_sends_the_daily_report_once(db_config: DatabaseConfig, hook: JsonReceiver) -> None:
    db = _trade_today(db_config)
    try:
        notifier = Notifier(NotifySettings(urls=(url(hook),)))
        tomorrow = datetime.now(IST).date() + timedelta(days=1)
        clock = datetime.combine(tomorrow, time(0, 6), tzinfo=IST)
        sender = NotificationSender(db, notifier, "leader-x", lambda: True, clock=lambda: clock)
        assert sender.run_once() == 4  # three executed signals, then the report
        again = NotificationSender(db, notifier, "leader-y", lambda: True, clock=lambda: clock)
        assert again.run_once() == 0  # the report of that day exists: a second leader adds nothing
        titles = [m.title for m in hook.messages]
        assert sum("daily report" in t for t in titles) == 1 and len(titles) == 4
        report = [m for m in hook.messages if "daily report" in m.title][0]
        assert "realized P&L" in report.body and "GOLD_MINI_Long_1" in report.body
        assert db.notification_counts()["sent"] == 4
        listing = io.StringIO()
        environ = {"DATABASE_URL": db_config.url(hide_password=False)}
        with mock.patch.dict(os.environ, environ), redirect_stdout(listing):
            assert cli.main(["notify"]) == 0
        assert "json#" in listing.getvalue() and " sent" in listing.getvalue() and TOKEN not in listing.getvalue()
    finally:
        db.close()


def test_a_database_outage_is_told_once_per_episode(db_config: DatabaseConfig, hook: JsonReceiver) -> None:
    notifier = Notifier(NotifySettings(urls=(url(hook),)))
    watch = DatabaseWatch(notifier, "inst-1")
    db = DatabaseStateManager(db_config)
    try:
        watch.ok(db)  # the first look: nothing to tell
        for _ in range(3):
            watch.failed(DatabaseUnavailableError("database connection lost: server closed the connection"))
        watch.ok(db)
        watch.ok(db)
    finally:
        db.close()
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
