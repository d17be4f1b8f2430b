"""Payload validation (every rejection names its field) and the fingerprint (docs/domain.md#signals)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.core.models import SignalType
from pm_engine.core.signals import SignalValidationError, fingerprint, parse_body, parse_signal

NOW = datetime(2026, 10, 30, 5, 1, tzinfo=timezone.utc)
EXAMPLE = {"type": "BASE_ENTRY", "instrument": "BANK_NIFTY", "position": "Long_1", "price": 52000, "stop": 51650,
           "lots": 4, "atr": 350, "er": 0.85, "supertrend": 51600, "roc": 2.5, "timestamp": "2026-10-30T10:30:00+05:30"}


def parse(data: dict[str, Any], now: datetime | None = NOW) -> Any:
    return parse_signal(data, DEFAULT_INSTRUMENTS, now=now)


def test_example_payload_parses() -> None:
    signal = parse(EXAMPLE)
    assert signal.type is SignalType.BASE_ENTRY and signal.instrument == "BANK_NIFTY"
    assert (signal.price, signal.stop, signal.atr, signal.er) == (Decimal("52000.00"), Decimal("51650.00"),
                                                                  Decimal("350.00"), Decimal("0.85"))
    assert signal.timestamp == datetime(2026, 10, 30, 5, 0, tzinfo=timezone.utc)


def test_fingerprint_is_sha256_of_the_documented_string() -> None:
    expected = hashlib.sha256(b"BANK_NIFTY:BASE_ENTRY:Long_1:2026-10-30T05:00:00+00:00").hexdigest()
    assert parse(EXAMPLE).fingerprint == expected


@pytest.mark.parametrize("timestamp", ["2026-10-30T10:30:00+05:30", "2026-10-30T05:00:00Z",
                                       "2026-10-30T05:00:00.123+00:00", "2026-10-30T10:30:00",
                                       "2026-10-30T10:30:00.999"])
def test_fingerprint_stable_across_formats_of_one_bar(timestamp: str) -> None:
    assert parse({**EXAMPLE, "timestamp": timestamp}).fingerprint == parse(EXAMPLE).fingerprint


def test_case_is_normalised() -> None:
    signal = parse({**EXAMPLE, "type": "base_entry", "instrument": "bank_nifty", "position": "long_1"})
    assert (signal.type, signal.instrument, signal.position) == (SignalType.BASE_ENTRY, "BANK_NIFTY", "Long_1")
    assert signal.fingerprint == parse(EXAMPLE).fingerprint


def test_different_bars_differ() -> None:
    assert parse(EXAMPLE).fingerprint != parse({**EXAMPLE, "timestamp": "2026-10-30T10:31:00+05:30"}).fingerprint
    assert fingerprint("A", "EXIT", "ALL", NOW) != fingerprint("B", "EXIT", "ALL", NOW)


def test_prices_are_rounded_half_up_to_cents() -> None:
    signal = parse({**EXAMPLE, "price": 52000.005, "stop": 51650.004})
    assert (signal.price, signal.stop) == (Decimal("52000.01"), Decimal("51650.00"))


@pytest.mark.parametrize("change,field,message", [
    ({"type": None}, "type", "is required"),
    ({"type": "BUY"}, "type", "must be BASE_ENTRY, PYRAMID or EXIT"),
    ({"instrument": "NIFTY_IT"}, "instrument", "unknown instrument"),
    ({"instrument": 5}, "instrument", "must be a string"),
    ({"position": "Short_1"}, "position", "must be Long_1"),
    ({"position": "ALL"}, "position", "ALL is allowed only for EXIT"),
    ({"position": "Long_2"}, "position", "a BASE_ENTRY is always Long_1"),
    ({"position": "Long_7"}, "position", "at most Long_6"),
    ({"price": "52000"}, "price", "must be a number, got str"),
    ({"price": 0}, "price", "must be > 0"),
    ({"price": -1}, "price", "must be > 0"),
    ({"price": 1e300}, "price", "out of range"),
    ({"price": True}, "price", "must be a number"),
    ({"price": float("nan")}, "price", "finite"),
    ({"stop": None}, "stop", "is required"),
    ({"stop": 0}, "stop", "must be > 0"),
    ({"stop": 52000}, "stop", "must be below price"),
    ({"stop": 53000}, "stop", "must be below price"),
    ({"atr": -1}, "atr", "must be >= 0"),
    ({"atr": 0}, "atr", "must be > 0 for BASE_ENTRY"),
    ({"er": 1.5}, "er", "between 0 and 1"),
    ({"er": -0.1}, "er", "between 0 and 1"),
    ({"lots": -1}, "lots", "between 0 and"),
    ({"lots": 2.5}, "lots", "whole number"),
    ({"lots": None}, "lots", "is required"),
    ({"supertrend": None}, "supertrend", "is required"),
    ({"timestamp": None}, "timestamp", "ISO 8601"),
    ({"timestamp": "yesterday"}, "timestamp", "is not ISO 8601"),
    ({"timestamp": "0001-01-01T00:00:00+14:00"}, "timestamp", "between 2000 and 2100"),
    ({"timestamp": "9999-12-31T23:59:59-12:00"}, "timestamp", "between 2000 and 2100"),
    ({"timestamp": "2026-10-30T05:20:00Z"}, "timestamp", "in the future"),
    ({"timestamp": "2026-10-30T04:40:00Z"}, "timestamp", "older than the maximum signal age"),
])
def test_rejections_name_the_field(change: dict[str, Any], field: str, message: str) -> None:
    data = {**EXAMPLE, **change}
    with pytest.raises(SignalValidationError) as info:
        parse(data)
    assert info.value.field == field
    assert message in info.value.message


def test_missing_timestamp_key() -> None:
    data = dict(EXAMPLE)
    del data["timestamp"]
    with pytest.raises(SignalValidationError, match="timestamp: is required"):
        parse(data)


def test_exit_needs_a_reason_and_ignores_stop() -> None:
    exit_ = {**EXAMPLE, "type": "EXIT", "position": "ALL", "stop": 99999, "atr": 0}
    with pytest.raises(SignalValidationError) as info:
        parse(exit_)
    assert info.value.field == "reason"
    signal = parse({**exit_, "reason": "stop_loss"})
    assert signal.reason == "STOP_LOSS" and signal.position == "ALL"


def test_replay_skips_the_age_check() -> None:
    old = {**EXAMPLE, "timestamp": "2020-01-01T09:15:00+05:30"}
    assert parse_signal(old, DEFAULT_INSTRUMENTS, now=None).timestamp.year == 2020
    assert parse_signal(old, DEFAULT_INSTRUMENTS, now=NOW, max_age=None).timestamp.year == 2020


def test_secret_never_reaches_the_payload_record() -> None:
    assert "secret" not in parse({**EXAMPLE, "secret": "hunter2"}).payload


@pytest.mark.parametrize("body,message", [
    (b"not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (b'{"price": NaN}', "NaN"),
    (b'{"price": Infinity}', "Infinity"),
    (b"{" + b" " * (64 * 1024) + b"}", "larger than 64 KiB"),
    (b"[" * 60000, "not valid JSON"),
])
def test_bad_bodies(body: bytes, message: str) -> None:
    with pytest.raises(SignalValidationError, match=message) as info:
        parse_body(body)
    assert info.value.field is None


def test_body_parsed_whatever_its_content_type() -> None:
    assert parse_body(b'{"type": "EXIT"}') == {"type": "EXIT"}


def test_signal_age_boundary() -> None:
    fresh = {**EXAMPLE, "timestamp": (NOW - timedelta(minutes=9, seconds=59)).isoformat()}
    assert parse(fresh).instrument == "BANK_NIFTY"
