"""Records: positions, pyramiding state, signals and outcomes (docs/domain.md#records)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Optional

ZERO = Decimal("0")


class SignalType(str, enum.Enum):
    BASE_ENTRY = "BASE_ENTRY"
    PYRAMID = "PYRAMID"
    EXIT = "EXIT"


class Outcome(str, enum.Enum):
    EXECUTED = "executed"
    BLOCKED = "blocked"
    DUPLICATE = "duplicate"


@dataclass
class Position:
    """One open (or closed) layer. ``version`` is 0 until the database first stores it."""

    position_id: str
    instrument: str
    entry_timestamp: datetime
    entry_price: Decimal
    lots: int
    quantity: int
    initial_stop: Decimal
    current_stop: Decimal
    highest_close: Decimal
    status: str = "open"
    atr: Decimal = ZERO
    unrealized_pnl: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    is_base_position: bool = False
    limiter: Optional[str] = None
    risk_contribution: Decimal = ZERO
    vol_contribution: Decimal = ZERO
    rollover_status: str = "none"
    original_expiry: Optional[str] = None
    original_strike: Optional[int] = None
    original_entry_price: Optional[Decimal] = None
    rollover_timestamp: Optional[datetime] = None
    rollover_pnl: Decimal = ZERO
    rollover_count: int = 0
    strike: Optional[int] = None
    expiry: Optional[str] = None
    pe_symbol: Optional[str] = None
    ce_symbol: Optional[str] = None
    pe_order_id: Optional[str] = None
    ce_order_id: Optional[str] = None
    pe_entry_price: Optional[Decimal] = None
    ce_entry_price: Optional[Decimal] = None
    contract_month: Optional[str] = None
    futures_symbol: Optional[str] = None
    futures_order_id: Optional[str] = None
    exit_timestamp: Optional[datetime] = None
    exit_price: Optional[Decimal] = None
    exit_reason: Optional[str] = None
    initial_risk: Optional[Decimal] = None  # (entry − initial stop) × lots × point value: a trade's 1R in rupees
    signal_price: Optional[Decimal] = None  # the alert's price, kept by the database once fills moved entry_price
    version: int = 0

    @property
    def layer(self) -> str:
        """``Long_k`` from ``INSTRUMENT_Long_k``."""
        return self.position_id[len(self.instrument) + 1:]

    @property
    def is_open(self) -> bool:
        return self.status == "open"


@dataclass
class PyramidState:
    """Per-instrument pyramiding state: where the last layer was added and which row is the base."""

    instrument: str
    last_pyramid_price: Optional[Decimal]
    base_position_id: Optional[str]


@dataclass(frozen=True)
class Signal:
    """A validated webhook payload; prices are quantized to 0.01 (see signals.py)."""

    type: SignalType
    instrument: str
    position: str
    price: Decimal
    stop: Optional[Decimal]
    lots: int
    atr: Decimal
    er: Decimal
    supertrend: Decimal
    timestamp: datetime
    fingerprint: str
    roc: Optional[Decimal] = None
    reason: Optional[str] = None
    payload: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass
class SignalResult:
    """What processing a signal decided: the HTTP answer and the signal_log row."""

    outcome: Outcome
    reason: str
    fingerprint: str
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "reason": self.reason, "fingerprint": self.fingerprint,
                **self.details}


@dataclass(frozen=True)
class Duplicate:
    """The answer for a fingerprint another writer had already claimed: nothing was written.

    ``state`` is the portfolio as committed now (a pm.load_state() document, positions as
    records) when it had moved past the version the caller decided from, None when the caller's
    copy was current: the caller refreshes in the same round trip instead of at its next signal.
    """

    state: Optional[dict[str, Any]] = None


@dataclass(frozen=True)
class Blocked:
    """The answer for a signal the trading controls blocked (mode, instrument lock or breaker).

    The database logged it 'blocked' with ``reason`` (starting "trading paused" for the mode) and
    wrote nothing else: the decision's effects are dropped and the portfolio has not moved since
    the state the store last learnt: ``state`` is that state when the commit learnt one the caller
    had not seen (a stale first attempt), None otherwise.
    """

    reason: str
    state: Optional[dict[str, Any]] = None
