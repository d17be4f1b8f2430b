"""Settings from the config file and the environment: tokens, allow-list, read replica."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pm_engine.config import TRADINGVIEW_IPS, load_settings, require_broker
from pm_engine.core.errors import ConfigError


def write(tmp_path: Path, section: dict[str, object]) -> str:
    path = tmp_path / "database_config.json"
    path.write_text(json.dumps({"local": section}))
    return str(path)


def test_tradingview_expands_to_its_four_addresses(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, {"allowed_ips": ["tradingview", "203.0.113.5"]}), environ={})
    assert settings.allowed_ips == (*TRADINGVIEW_IPS, "203.0.113.5")
    assert "52.89.214.238" in settings.allowed_ips and len(settings.allowed_ips) == 5
    with pytest.raises(ConfigError, match="allowed_ips must be a list"):
        load_settings(write(tmp_path, {"allowed_ips": "tradingview"}), environ={})


def test_the_read_token_and_replica_come_from_the_environment_first(tmp_path: Path) -> None:
    path = write(tmp_path, {"read_token": "from-file", "read_url": "postgresql://r@replica:5433/pm",
                            "request_log_retention_days": 10})
    settings = load_settings(path, environ={"PM_READ_TOKEN": "from-env"})
    assert settings.read_token == "from-env" and settings.request_log_retention_days == 10
    assert settings.read_database is not None and settings.read_database.hosts == [("replica", 5433)]
    assert "from-env" not in repr(settings) and "from-file" not in repr(settings)  # never printed by accident
    replica = load_settings(path, environ={"DATABASE_READ_URL": "postgresql://u@a:1,b:2/pm?target_session_attrs="
                                                                "prefer-standby"}).read_database
    assert replica is not None and replica.hosts == [("a", 1), ("b", 2)]
    assert dict(replica.options) == {"target_session_attrs": "prefer-standby"}
    with pytest.raises(ConfigError, match="unknown config key"):
        load_settings(write(tmp_path, {"read_tokn": "x"}), environ={})


def test_broker_defaults_to_paper() -> None:
    settings = load_settings(environ={})
    assert settings.broker.kind == "paper" and settings.broker.max_order_age_s == 120
    assert settings.broker.strategy == "pm-engine" and not settings.broker.market_hours_always


def test_broker_openalgo_from_the_environment_and_the_file(tmp_path: Path) -> None:
    key = "oa-key-9d2e1f"
    env = {"PM_BROKER": "openalgo", "PM_OPENALGO_URL": "http://127.0.0.1:5000", "PM_OPENALGO_API_KEY": key,
           "PM_MARKET_HOURS": "always"}
    settings = load_settings(environ=env)
    assert (settings.broker.kind, settings.broker.url, settings.broker.market_hours_always) == \
        ("openalgo", "http://127.0.0.1:5000", True)
    assert key not in repr(settings)
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"local": {"broker": {"kind": "openalgo", "url": "http://gw:5000", "api_key": key,
                                                     "strategy": "mine", "max_order_age_s": 60}}}))
    from_file = load_settings(str(path), environ={})
    assert (from_file.broker.url, from_file.broker.strategy, from_file.broker.max_order_age_s) == \
        ("http://gw:5000", "mine", 60)


@pytest.mark.parametrize("env, field", [
    ({"PM_BROKER": "zerodha"}, "broker kind"),
    ({"PM_BROKER": "openalgo", "PM_OPENALGO_API_KEY": "k"}, "URL"),
    ({"PM_BROKER": "openalgo", "PM_OPENALGO_URL": "http://x"}, "API key"),
    ({"PM_MARKET_HOURS": "sometimes"}, "market_hours"),
    ({"PM_MAX_ORDER_AGE_S": "-1"}, "positive"),
])
def test_bad_broker_settings_name_the_field(env: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        # a missing URL or key is refused where the broker is reached (issue 28: status runs without them)
        require_broker(load_settings(environ=env).broker)


def test_market_hours_per_exchange() -> None:
    from datetime import datetime

    from pm_engine.core.market_hours import IST, MarketHours

    hours = MarketHours()
    wednesday = datetime(2026, 12, 2, 9, 10, tzinfo=IST)
    assert hours.is_open("MCX", wednesday) and not hours.is_open("NFO", wednesday)  # MCX opens 09:00, NSE 09:15
    assert hours.is_open("NFO", wednesday.replace(hour=15, minute=29))
    assert not hours.is_open("NFO", wednesday.replace(hour=15, minute=30))
    assert hours.is_open("MCX", wednesday.replace(hour=23, minute=29))
    assert not hours.is_open("MCX", wednesday.replace(hour=23, minute=30))
    assert not hours.is_open("MCX", datetime(2026, 12, 5, 12, 0, tzinfo=IST))  # a Saturday
    assert not MarketHours(trading_day=lambda exchange, day: False).is_open("MCX", wednesday.replace(hour=12))
    assert MarketHours(always=True).is_open("NFO", datetime(2026, 12, 5, 3, 0, tzinfo=IST))


def test_next_open_and_what_the_answer_says() -> None:
    """Issue 28: when a closed market opens next (weekends and holidays skipped), and the answer for an order."""
    from datetime import date, datetime

    from pm_engine.core.market_hours import IST, MarketHours, SendWindow

    holiday = date(2026, 12, 7)  # a Monday, a holiday of this calendar
    hours = MarketHours(trading_day=lambda exchange, day: day != holiday)
    friday_evening = datetime(2026, 12, 4, 16, 0, tzinfo=IST)
    assert hours.next_open("NFO", friday_evening) == datetime(2026, 12, 8, 9, 15, tzinfo=IST)
    assert hours.next_open("MCX", friday_evening) == friday_evening  # open: now
    tuesday_open = datetime(2026, 12, 8, 9, 15, tzinfo=IST)
    assert hours.next_open("NFO", datetime(2026, 12, 8, 6, 12, tzinfo=IST)) == tuesday_open
    window = SendWindow(hours, 120)
    early = datetime(2026, 12, 8, 6, 12, tzinfo=IST)
    assert window.note("MCX", True, early.replace(hour=12)) is None
    exit_note = window.note("NFO", False, early)
    assert exit_note is not None and exit_note.sendable
    assert exit_note.text == "queued: NFO opens 09:15 IST; an exit waits for it (exits never expire)"
    blocked = window.note("NFO", True, early)
    assert blocked is not None and not blocked.sendable and blocked.text.startswith("market closed: NFO opens 09:15")
    late = SendWindow(hours, 4 * 3600).note("NFO", True, early)
    assert late is not None and late.sendable
    assert late.text == "queued: NFO opens 09:15 IST; an entry expires at 10:12 IST unless sent"
    weekend = window.note("NFO", False, friday_evening)
    assert weekend is not None and weekend.text.startswith("queued: NFO opens 09:15 IST on Tue 08 Dec")
