"""The trade record (a row of ``pm.trades``) and the JSON form of records, Decimals, times and intervals.

The database computes a book's statistics (``db/functions/95_statistics.sql``: ``pm.trades``,
``pm.trade_stats``, ``pm.pnl_by_period``); the same figures for a backtest, which has no database,
are their Python twin in ``pm_engine/core/replay/statistics.py``. What both sides share lives here:
the trade as ``pm.trades`` lists it, its order (exit time, then position), and how the API, the CLI
and ``--json`` files write money (exact decimal strings), times (ISO 8601) and intervals (seconds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Iterable, Optional


@dataclass(frozen=True)
class Trade:
    """One closed position (a base or a pyramid layer), as pm.trades lists it."""

    instrument: str
    position_id: str
    layer: str  # base | pyramid
    entry_time: datetime
    entry_price: Decimal
    exit_time: datetime
    exit_price: Decimal
    lots: int
    pnl: Decimal
    initial_risk: Optional[Decimal]
    r_multiple: Optional[Decimal]
    holding_time: timedelta
    exit_reason: Optional[str]
    slippage: Optional[Decimal] = None  # rupees over its broker fills, adverse positive (None: paper fills)

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Trade":
        """A row of pm.trades."""
        return cls(**{name: row[name] for name in cls.__dataclass_fields__ if name in row})


def in_exit_order(trades: Iterable[Trade]) -> list[Trade]:
    """Trades by exit time, then position: the order pm.trades lists them in."""
    return sorted(trades, key=lambda t: (t.exit_time, t.position_id))


def as_json(value: Any) -> Any:
    """Records, Decimals, times and intervals as JSON values: money and ratios as exact decimal strings
    (as GET /status writes money), times in ISO 8601, intervals in seconds."""
    if isinstance(value, Trade):
        value = asdict(value)
    if isinstance(value, dict):
        return {k: as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    return value
