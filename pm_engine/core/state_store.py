"""The store the trading core needs, as Protocols: what it calls, not how it is done.

The core decides; a store makes decisions durable. ``pm_engine.store.gateway.Store`` implements
``Gateway`` on PostgreSQL (its ``book`` is the ``StateStore``; the functions in ``db/functions/``);
the core never imports it, so the trading logic runs and is tested with no database at all
(``store=None``: in memory).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from pm_engine.core.models import Blocked, Duplicate, Signal, SignalResult
from pm_engine.core.orders import Broker, Order

if TYPE_CHECKING:  # pragma: no cover
    from pm_engine.core.portfolio import Book

Decided = tuple[SignalResult, "Book"]
Decide = Callable[[Optional[dict[str, Any]]], Decided]


class StateStore(Protocol):
    """Durable portfolio state with exactly-once signals (docs/domain.md#persistence, #engine-flows).

    Every ``state`` document is what ``load_state`` returns: ``portfolio`` (the row as a dict),
    ``positions`` (id -> Position) and ``pyramiding`` (rows as dicts). Methods may raise
    ``DatabaseUnavailableError`` (nothing recorded).
    """

    def load_state(self) -> dict[str, Any]:
        """The committed portfolio, open positions and pyramiding state."""

    def state_if_moved(self, known_version: int) -> Optional[dict[str, Any]]:
        """The committed state if the portfolio moved past ``known_version``, else None."""

    def commit(self, signal: Signal, result: SignalResult, work: "Book", decide: Decide,
               instance_id: str) -> Decided | Duplicate | Blocked:
        """Claim the fingerprint and write the decision's effects atomically, owning the retry.

        A decision that went stale (another writer moved the portfolio) is redone by ``decide`` on
        the fresh state, under a lock so it cannot go stale twice; the answer is the decision as
        committed, or ``Duplicate`` (another writer had the fingerprint) or ``Blocked`` (the trading
        controls, evaluated by the store at commit, refused the signal), each with the fresh state
        when the commit learnt one.
        """

    def save_positions(self, work: "Book") -> None:
        """Write a working copy's changed positions and metrics outside a signal (version-checked)."""


class Outbox(Protocol):
    """The committed broker orders."""

    def queued(self, min_age_s: float = 0) -> list[Order]:
        """Committed orders never sent (state ``queued``), at least ``min_age_s`` old."""

    def paper_broker(self) -> Broker:
        """The paper broker that fills this store's order outbox."""


class CapitalLedger(Protocol):
    """Deposits and withdrawals."""

    def record_capital_flow(self, kind: str, amount: Decimal, note: Optional[str], recorded_by: str) -> dict[str, Any]:
        """Record a deposit or withdrawal and move closed equity with it (core.capital's errors: nothing written)."""


class Gateway(Protocol):
    """What the engine is given: the book, the outbox and the capital ledger of one database."""

    @property
    def book(self) -> StateStore: ...

    @property
    def orders(self) -> Outbox: ...

    @property
    def capital(self) -> CapitalLedger: ...
