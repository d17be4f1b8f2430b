"""The capital rule in memory: the Python twin of ``pm.record_capital_flow`` and ``pm.check_capital_amount``.

SQL twin: ``db/functions/64_capital.sql``. With a database that function is the one writer and the
authority; a backtest has none, so ``apply_flow`` checks and moves the book the same way, refusing with
the same SQLSTATEs and messages, and a replay and a live book treat one stream alike.
``tests/db/test_twins.py`` feeds both the same amounts and withdrawals and requires the same answer.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Optional

from pm_engine.core.capital import (KINDS, LIMIT, CapitalFlow, InvalidAmountError, WithdrawalRefusedError,
                                    check_note)

if TYPE_CHECKING:  # pragma: no cover
    from pm_engine.core.portfolio import Book


def check_amount(amount: Decimal) -> None:
    """PM060 unless positive, with at most two decimals, below 10^13 (the rule of pm.check_capital_amount)."""
    if not amount.is_finite() or amount <= 0 or amount >= LIMIT or amount != amount.quantize(Decimal("0.01")):
        # the amount written out (1E+13 as 10000000000000), as PostgreSQL writes a numeric in its refusal
        raise InvalidAmountError("amount must be a positive number of rupees with at most two decimals "
                                 f"(below 10^13), got {amount:f}", "PM060")


def apply_flow(portfolio: "Book", kind: str, amount: Decimal, note: Optional[str] = None,
               recorded_by: str = "backtest") -> CapitalFlow:
    """The in-memory twin of pm.record_capital_flow: check, then move closed equity and equity_high.

    Margin in use is the open positions' (``metrics().margin_used``), what the engine stores with
    every signal and the database checks against.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be deposit or withdrawal, got {kind}")
    check_amount(amount)
    check_note(note)
    text = (note or "").strip() or None
    signed = amount if kind == "deposit" else -amount
    after = (portfolio.closed_equity + signed).quantize(Decimal("0.01"))  # numeric(15,2), as the ledger keeps it
    if signed < 0 and after < 0:
        raise WithdrawalRefusedError(f"withdrawal of {amount} would leave closed equity {after} below zero", "PM062")
    margin = portfolio.metrics().margin_used
    if signed < 0 and after < margin:
        raise WithdrawalRefusedError(f"withdrawal of {amount} would leave closed equity {after} below the margin "
                                     f"in use {margin.quantize(Decimal('0.01'))}", "PM061")
    portfolio.closed_equity = after
    portfolio.equity_high += signed
    portfolio.version += 1
    return CapitalFlow(kind, amount, text, recorded_by, after)
