"""The kinds of notification: one catalogue, so ``notify.events`` can be checked before anything runs.

SQL twin: the rows of ``pm.notification_kinds`` (migrations 010 and 015) and its level check
(``notification_kinds_level_check``). The database records an event only of a kind it has a row for;
Python needs the catalogue before any database is reachable (to refuse a misspelt ``notify.events``),
so it keeps its own, and ``tests/db/test_constants.py`` requires the stored kinds, their levels and
the levels themselves to be the database's. ``stored=False``: sent directly by the process that sees
it (the database cannot record its own outage, nor a process its own stop).
"""

from __future__ import annotations

from dataclasses import dataclass

LEVELS = ("info", "warning", "critical")


@dataclass(frozen=True)
class Kind:
    """One kind of event: how loud it is, whether it is sent unless configured otherwise, and what it means."""

    name: str
    level: str
    default_on: bool
    description: str
    stored: bool = True


KINDS: dict[str, Kind] = {k.name: k for k in (
    Kind("signal_executed", "info", True, "an entry, pyramid or exit executed, with fill and slippage"),
    Kind("signal_blocked", "info", False, "a signal the trading controls blocked"),
    Kind("mode_changed", "warning", True, "the trading mode changed"),
    Kind("breaker_tripped", "critical", True, "a breaker tripped"),
    Kind("instrument_locked", "warning", True, "an operator locked an instrument"),
    Kind("daily_report", "info", True, "the daily report of the trading day"),
    Kind("order_rejected", "critical", True, "the broker rejected an order"),
    Kind("order_unknown", "critical", True, "an order is in an unknown state"),
    Kind("order_needs_review", "critical", True, "an order needs review"),
    Kind("order_filled", "info", True, "an order the broker filled, with its fill and slippage"),
    Kind("reconciliation_difference", "critical", True, "the broker's positions differ from the book"),
    Kind("broker_session", "critical", True, "the broker session expired or restored, the broker unreachable or back"),
    Kind("roll_done", "info", True, "a rollover completed"),
    Kind("roll_failed", "critical", True, "a rollover failed"),
    Kind("database", "critical", True, "the database unreachable, failed over, or back", stored=False),
    Kind("process", "warning", True, "an engine process started or stopped", stored=False),
)}

DEFAULT_EVENTS = frozenset(k.name for k in KINDS.values() if k.default_on)
