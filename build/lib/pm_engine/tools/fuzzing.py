"""Hostile webhooks for the chaos harness: hypothesis strategies, each case invalid by construction.

Every case starts from a valid alert and breaks it in one way that the webhook must refuse —
a missing field, a wrong type, a huge or negative number, NaN/Infinity, SQL in a string field,
an oversized or non-UTF-8 body, a body that is not a JSON object, or a wrong or missing secret —
so the only right answer is a 4xx with a JSON error, and the database must not change.
(Needs hypothesis, a development dependency: ``make install`` brings it.)
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Callable
from urllib.parse import quote

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.core.signals import MAX_BODY_BYTES

Case = tuple[bytes, dict[str, str], str]  # body, headers, path
INSTRUMENTS = sorted(DEFAULT_INSTRUMENTS)
NUMERIC = ["price", "stop", "atr", "er", "supertrend", "lots", "roc"]
TEXT = ["type", "instrument", "position", "timestamp"]
SQL = ["'; DROP TABLE pm.signal_log; --", "\" OR 1=1 --", "1); DELETE FROM pm.portfolio_positions; --",
       "BANK_NIFTY' UNION SELECT * FROM pm.portfolio_state --", "$$; TRUNCATE pm.broker_orders; $$",
       "Long_1'; UPDATE pm.portfolio_state SET closed_equity = 0; --", "\\x00\\'", "%s%s%s", "{}"]


@st.composite
def valid_alert(draw: st.DrawFn) -> dict[str, Any]:
    """A well-formed alert (the starting point every mutation breaks)."""
    kind = draw(st.sampled_from(["BASE_ENTRY", "PYRAMID", "EXIT"]))
    instrument = draw(st.sampled_from(INSTRUMENTS))
    price = draw(st.floats(min_value=100, max_value=100000, allow_nan=False)).__round__(2)
    body: dict[str, Any] = {"type": kind, "instrument": instrument, "price": price, "lots": draw(st.integers(0, 10)),
                            "atr": round(price * 0.005, 2), "er": 0.5, "supertrend": round(price * 0.98, 2),
                            "roc": 1.5, "timestamp": "2025-06-02T10:00:00+05:30"}
    if kind == "EXIT":
        body.update(position="ALL", reason="SIGNAL")
    else:
        body.update(position="Long_1" if kind == "BASE_ENTRY" else "Long_2", stop=round(price * 0.99, 2))
    return body


def _not_iso(text: str) -> bool:
    try:
        datetime.fromisoformat(text.strip())
    except ValueError:
        return True
    return False


WRONG_FOR_NUMBER = st.one_of(st.text(max_size=8), st.booleans(), st.lists(st.integers(), max_size=3),
                             st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
WRONG_FOR_TEXT = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.text(), max_size=2),
                           st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@st.composite
def broken_payload(draw: st.DrawFn) -> dict[str, Any]:
    """A valid alert with one field made invalid."""
    body = draw(valid_alert())
    entry = body["type"] != "EXIT"
    how = draw(st.sampled_from(["missing", "wrong_type", "huge", "negative", "sql", "bad_text", "stop_above",
                                "layer", "future", "roc_type"]))
    if how == "missing":
        required = ["type", "instrument", "position", "price", "lots", "atr", "er", "supertrend", "timestamp"]
        required += ["stop"] if entry else ["reason"]
        body.pop(draw(st.sampled_from(required)))
    elif how == "wrong_type":
        name = draw(st.sampled_from(NUMERIC + TEXT))
        body[name] = draw(WRONG_FOR_NUMBER if name in NUMERIC else WRONG_FOR_TEXT)
    elif how == "huge":
        name = draw(st.sampled_from(["price", "stop", "atr", "supertrend", "lots", "er"]))
        body[name] = draw(st.one_of(st.integers(min_value=10**10, max_value=10**400),
                                    st.floats(min_value=1e10, allow_infinity=False)))
    elif how == "negative":
        name = draw(st.sampled_from(["price", "lots", "atr", "er"] + (["stop"] if entry else [])))
        body[name] = draw(st.one_of(st.integers(max_value=-1), st.floats(max_value=-0.01, allow_infinity=False)))
    elif how == "sql":
        body[draw(st.sampled_from(TEXT))] = draw(st.sampled_from(SQL)) + draw(st.text(max_size=5))
    elif how == "bad_text":
        name = draw(st.sampled_from(TEXT))
        if name == "type":
            body[name] = draw(st.text(min_size=1).filter(lambda s: s.strip().upper() not in
                                                         ("BASE_ENTRY", "PYRAMID", "EXIT")))
        elif name == "instrument":
            body[name] = draw(st.text(min_size=1).filter(lambda s: s.strip().upper() not in INSTRUMENTS))
        elif name == "position":
            body[name] = draw(st.text(min_size=1).filter(lambda s: not s.strip().lower().startswith("long_")
                                                         and s.strip().upper() != "ALL"))
        else:
            body[name] = draw(st.text(min_size=1).filter(_not_iso))
    elif how == "stop_above" and entry:
        body["stop"] = body["price"] + draw(st.floats(min_value=0.01, max_value=1e6))
    elif how == "layer":
        body["position"] = {"BASE_ENTRY": "Long_3", "PYRAMID": "Long_1", "EXIT": "Long_99"}[body["type"]]
    elif how == "future":
        body["timestamp"] = draw(st.sampled_from(["2099-01-01T00:00:00Z", "2101-06-01T00:00:00+05:30",
                                                  "1999-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00"]))
    else:  # roc of a wrong type (or stop_above on an EXIT, which has no stop to break)
        body["roc"] = draw(WRONG_FOR_NUMBER)
    return body


def _auth(draw: st.DrawFn, secret: str, body: dict[str, Any]) -> tuple[dict[str, str], str]:
    """The right secret, delivered one of the three ways."""
    where = draw(st.sampled_from(["header", "query", "body"]))
    if where == "header":
        return {"X-PM-Secret": secret, "Content-Type": "text/plain"}, "/webhook"
    if where == "query":
        return {"Content-Type": "application/json"}, f"/webhook?token={quote(secret)}"
    body["secret"] = secret
    return {"Content-Type": "text/plain"}, "/webhook"


@st.composite
def hostile(draw: st.DrawFn, secret: str) -> Case:
    """One hostile request."""
    kind = draw(st.sampled_from(["payload", "payload", "payload", "nan", "oversized", "not_utf8", "not_object",
                                 "truncated", "bad_secret", "no_secret"]))
    if kind in ("bad_secret", "no_secret"):
        body = draw(valid_alert())
        if kind == "no_secret":
            return json.dumps(body).encode(), {"Content-Type": "text/plain"}, "/webhook"
        where = draw(st.sampled_from(["header", "query", "body"]))
        alphabet = (st.characters(min_codepoint=33, max_codepoint=126) if where == "header"
                    else st.characters(codec="utf-8"))
        wrong = draw(st.text(alphabet=alphabet, min_size=1, max_size=40).filter(lambda s: s != secret))
        if where == "body":
            body["secret"] = wrong
            return json.dumps(body).encode(), {}, "/webhook"
        if where == "query":
            return json.dumps(body).encode(), {}, f"/webhook?token={quote(wrong)}"
        return json.dumps(body).encode(), {"X-PM-Secret": wrong}, "/webhook"
    if kind == "payload":
        body = draw(broken_payload())
        headers, path = _auth(draw, secret, body)
        return json.dumps(body).encode(), headers, path
    if kind == "nan":
        body = draw(valid_alert())
        body[draw(st.sampled_from(NUMERIC))] = draw(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
        headers, path = _auth(draw, secret, body)
        return json.dumps(body, allow_nan=True).encode(), headers, path
    if kind == "oversized":
        body = draw(valid_alert())
        body["reason"] = "X" * (MAX_BODY_BYTES + draw(st.integers(1, 4096)))
        headers, path = _auth(draw, secret, body)
        return json.dumps(body).encode(), headers, path
    if kind == "not_utf8":
        raw = draw(st.binary(min_size=1, max_size=200)) + b"\xff\xfe\xc3\x28"
        return raw, {"X-PM-Secret": secret}, "/webhook"
    if kind == "not_object":
        value = draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=20),
                               st.booleans(), st.none()))
        return json.dumps(value).encode(), {"X-PM-Secret": secret}, "/webhook"
    text = json.dumps(draw(valid_alert()))  # truncated
    return text[:draw(st.integers(0, len(text) - 1))].encode(), {"X-PM-Secret": secret}, "/webhook"


def hostile_requests(check: Callable[[Case], None], count: int, secret: str) -> None:
    """Generate ``count`` hostile requests (reproducibly) and hand each to ``check``."""
    @settings(max_examples=count, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(hostile(secret))
    def run(case: Case) -> None:
        check(case)

    run()
