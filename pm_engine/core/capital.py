"""Capital in and out (docs/domain.md#capital-flows): deposits and withdrawals, how they are read, why they are refused.

A flow moves closed equity — and with it sizing — and ``equity_high`` by its amount; it is not
trading P&L. With a database, ``pm.record_capital_flow`` (db/functions/64_capital.sql) is the one
writer and the authority on every rule; this module holds what every caller needs before it asks
(reading an amount exactly, a note the database can store, the refusals as exceptions with their
SQLSTATEs, the ledger row). The in-memory twin of the rule itself, for a backtest, is
``pm_engine/core/replay/capital.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Optional

from pm_engine.core.errors import DatabaseError

KINDS = ("deposit", "withdrawal")
LIMIT = Decimal("1e13")  # numeric(15,2): amounts stay below 10^13
NOTE_LIMIT = 500
# ASCII digits only, thousands commas allowed, an optional exponent; no spaces, no "_", no other script's digits
# (Decimal() itself would take " 5 ", "1_000" and "٥")
AMOUNT_TEXT = re.compile(r"[+-]?(?=[0-9.])[0-9,]*(\.[0-9]*)?([eE][+-]?[0-9]+)?")


class CapitalRefusedError(DatabaseError):
    """PM060-PM063: a flow the ledger refuses; nothing was written. ``field`` names what to fix."""

    field = "amount"


class InvalidAmountError(CapitalRefusedError):
    """PM060: not a positive number of rupees with at most two decimals (below 10^13)."""


class InvalidNoteError(CapitalRefusedError):
    """PM063: a note longer than 500 characters."""

    field = "note"


class WithdrawalRefusedError(CapitalRefusedError):
    """PM061 (below the margin in use) and PM062 (below zero): the withdrawal is larger than the book allows."""


def parse_amount(value: Any) -> Decimal:
    """An amount from the CLI, a JSON body or a CSV cell, exactly (a float is read by its shortest text).

    Only its type is checked here (InvalidAmountError for a non-number); whether it is positive
    with at most two decimals is pm.check_capital_amount's (``core/replay/capital.check_amount`` in a backtest).
    """
    if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float, Decimal)):
        raise InvalidAmountError(f"amount must be a number of rupees, got {value!r}", "PM060")
    text = str(value)
    if isinstance(value, (float, Decimal)) and not Decimal(text).is_finite() or \
            text.strip().lower().lstrip("+-") in ("nan", "snan", "inf", "infinity"):
        # said here: PostgreSQL would be handed NaN for either (psycopg2 sends every non-finite Decimal so)
        raise InvalidAmountError(f"amount must be a finite number of rupees, got {text[:20]}", "PM060")
    if isinstance(value, str) and (not AMOUNT_TEXT.fullmatch(value) or not any(c.isdigit() for c in value)):
        raise InvalidAmountError(f"amount must be a number of rupees in ASCII digits (e.g. 1000000.50), got "
                                 f"{value[:40]!r}",
                                 "PM060")
    try:
        amount = Decimal(text.replace(",", ""))
        # 1E+6 is written out (1000000), as PostgreSQL writes it, so both sides word a refusal alike
        if amount.is_finite() and int(amount.as_tuple().exponent) > 0 and abs(amount) < LIMIT:
            return amount.quantize(Decimal(1))
        return amount
    except InvalidOperation:
        raise InvalidAmountError(f"amount must be a number of rupees, got {value!r}", "PM060") from None


def check_note(note: Optional[str]) -> None:
    """PM063 for a note PostgreSQL cannot store or UTF-8 cannot carry (a NUL, a lone surrogate), or too long."""
    if note is None:
        return
    try:
        note.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidNoteError("note holds a lone surrogate, which UTF-8 cannot carry", "PM063") from None
    if "\x00" in note:
        raise InvalidNoteError("note holds a NUL character, which cannot be stored", "PM063")
    if len(note) > NOTE_LIMIT:
        raise InvalidNoteError(f"note is longer than {NOTE_LIMIT} characters ({len(note)})", "PM063")


@dataclass(frozen=True)
class CapitalFlow:
    """One ledger row: a deposit (+) or withdrawal (−) and the closed equity it left."""

    kind: str
    amount: Decimal
    note: Optional[str]
    recorded_by: str
    closed_equity: Decimal

    @property
    def signed_amount(self) -> Decimal:
        return self.amount if self.kind == "deposit" else -self.amount
