"""Payload builders shared by the tests."""

from __future__ import annotations

from typing import Any

import psycopg2

from pm_engine.store.connection import DatabaseConfig


def payload(type_: str, instrument: str, position: str, price: float, timestamp: str, stop: float | None = None,
            atr: float = 0, er: float = 0.5, reason: str | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type_, "instrument": instrument, "position": position, "price": price,
                            "lots": 1, "atr": atr, "er": er, "supertrend": price, "timestamp": timestamp}
    if stop is not None:
        body["stop"] = stop
    if reason is not None:
        body["reason"] = reason
    body.update(extra)
    return body


def rows(config: DatabaseConfig, query: str) -> list[tuple[Any, ...]]:
    """Every row of one ad hoc query, on a connection of its own (test checks only; product code names its SQL)."""
    conn = psycopg2.connect(**config.dsn_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return list(cur.fetchall())
    finally:
        conn.close()
