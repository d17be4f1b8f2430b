"""Exchange market hours (DOMAIN.md §14, issue 21): when a MARKET order can be sent at all.

NSE/NFO trades 09:15–15:30 IST and MCX 09:00–23:30 IST, on the exchange's trading days (weekdays
that are not holidays of the contract calendar). Outside them brokers refuse MARKET orders, so the
sender keeps an order queued until its market opens: an exit waits (it is never expired), an entry
waits too and expires once it is older than ``max_order_age`` — so an entry decided at night is not
sent the next morning at a different price. ``always`` (PM_MARKET_HOURS=always) is for the
simulator and the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from typing import Callable, Optional

IST = timezone(timedelta(hours=5, minutes=30))
SESSIONS: dict[str, tuple[time, time]] = {"NFO": (time(9, 15), time(15, 30)), "NSE": (time(9, 15), time(15, 30)),
                                          "MCX": (time(9, 0), time(23, 30))}


@dataclass(frozen=True)
class MarketHours:
    """``always`` or per exchange sessions; ``trading_day(exchange, date)`` says whether the exchange trades."""

    always: bool = False
    trading_day: Optional[Callable[[str, object], bool]] = None

    def is_open(self, exchange: str, now: datetime) -> bool:
        if self.always:
            return True
        session = SESSIONS.get(exchange.upper())
        if session is None:
            return True  # an exchange we know no hours of: let the broker decide
        local = now.astimezone(IST)
        if local.weekday() >= 5:
            return False
        if self.trading_day is not None and not self.trading_day(exchange.upper(), local.date()):
            return False
        return session[0] <= local.time() < session[1]
