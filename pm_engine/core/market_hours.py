"""Exchange market hours (docs/domain.md#orders-through-openalgo, issue 21): when a MARKET order can be sent at all.

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

    def next_open(self, exchange: str, now: datetime) -> Optional[datetime]:
        """When the exchange's session next opens (``now`` itself while it is open); None when always open,
        for an exchange we know no hours of, or when no trading day comes within 15 days."""
        session = SESSIONS.get(exchange.upper())
        if self.always or session is None or self.is_open(exchange, now):
            return now
        local = now.astimezone(IST)
        for ahead in range(16):
            day = local.date() + timedelta(days=ahead)
            opens = datetime.combine(day, session[0], IST)
            if opens <= local or day.weekday() >= 5:
                continue
            if self.trading_day is None or self.trading_day(exchange.upper(), day):
                return opens
        return None


def ist_clock(moment: datetime, today: datetime) -> str:
    """``09:15 IST`` (seconds only when not zero), with the day when it is not ``today``'s (IST)."""
    local = moment.astimezone(IST)
    text = local.strftime("%H:%M" if local.second == 0 else "%H:%M:%S") + " IST"
    return text if local.date() == today.astimezone(IST).date() else f"{text} on {local.strftime('%a %d %b')}"


@dataclass(frozen=True)
class QueueNote:
    """What happens to an order decided while its market is closed: ``sendable`` False means an entry would
    expire before the market opens (the engine blocks it instead of answering a fill that never comes)."""

    sendable: bool
    text: str


@dataclass(frozen=True)
class SendWindow:
    """The broker sender's market hours and its entry age limit, as the engine's answer needs them.

    With it the engine says, at decision time and without a query, what the sender will do with an order
    of a closed market: send it when the market opens, or (an entry) let it expire — so it blocks an entry
    that cannot be sent before ``max_entry_age_s`` instead of answering it executed.
    """

    hours: MarketHours
    max_entry_age_s: float

    def note(self, exchange: Optional[str], opening: bool, now: datetime) -> Optional[QueueNote]:
        """None while ``exchange`` trades (or is unknown); else what will happen to an order decided ``now``."""
        if exchange is None or self.hours.is_open(exchange, now):
            return None
        name = exchange.upper()
        opens = self.hours.next_open(name, now)
        when = ist_clock(opens, now) if opens is not None else "not within 15 days"
        if not opening:
            return QueueNote(True, f"queued: {name} opens {when}; an exit waits for it (exits never expire)")
        expires = now + timedelta(seconds=self.max_entry_age_s)
        if opens is not None and opens < expires:
            return QueueNote(True, f"queued: {name} opens {when}; an entry expires at {ist_clock(expires, now)} "
                                   f"unless sent")
        return QueueNote(False, f"market closed: {name} opens {when}; an entry not sent within max_order_age "
                                f"({self.max_entry_age_s:g} s) expires at {ist_clock(expires, now)}, so it is not "
                                f"taken")
