"""Notification settings, the Apprise adapter against a real local receiver, messages, report days and the next
rolls: what needs no database (tests/db/test_notify_db.py has the rest)."""

from __future__ import annotations

import json
import os
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from unittest import mock

import pytest

from pm_engine import cli
from pm_engine.config import load_settings
from pm_engine.core.errors import ConfigError
from pm_engine.core.replay.notification_kinds import DEFAULT_EVENTS, KINDS
from pm_engine.notify.messages import Event, digest, render
from pm_engine.notify.notifier import Notifier, redact
from pm_engine.notify.settings import NotifySettings, notify_settings, parse_events
from pm_engine.notify.report import DailyReport
from pm_engine.ops.daily_report import IST, next_rolls, report_due
from tests.receivers import JsonReceiver

TOKEN = "bot-TOKEN-123456"


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
