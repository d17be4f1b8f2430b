"""Notifications with the database: the kinds table, the daily report from the book, the leader's sends, outage
and failure episodes told once (moved from tests/unit, which needs no PostgreSQL)."""

from __future__ import annotations

import io
import json
import os
from contextlib import redirect_stdout
from datetime import datetime, time, timedelta, timezone
from unittest import mock

import psycopg2
import pytest

from pm_engine import cli
from pm_engine.config import DatabaseConfig
from pm_engine.core.engine import TradingEngine
from pm_engine.core.errors import DatabaseUnavailableError
from pm_engine.core.replay.notification_kinds import KINDS
from pm_engine.notify.notifier import Notifier
from pm_engine.notify.settings import NotifySettings
from pm_engine.ops.daily_report import IST, build_daily_report
from pm_engine.ops.delivery import DatabaseWatch, NotificationDelivery
from pm_engine.store.gateway import Store
from tests.helpers import payload, rows
from tests.receivers import JsonReceiver
from tests.unit.test_notify import TOKEN, url


def test_python_and_database_kinds_agree(db_config: DatabaseConfig) -> None:
    stored = {k: level for k, level in rows(db_config, "SELECT kind, level FROM pm.notification_kinds")}
    assert stored == {k: v.level for k, v in KINDS.items() if v.stored}


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
