"""The store the trading core needs, as a Protocol: what it calls, not how it is done.

The core decides; a store makes decisions durable. ``pm_engine.store.DatabaseStateManager``
implements this on PostgreSQL (the functions in ``db/functions/``); the core never imports it, so
the trading logic runs and is tested with no database at all (``db_manager=None``: in memory).
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

from pm_engine.core.models import Blocked, Duplicate, Signal, SignalResult
from pm_engine.core.orders import Broker, Order

if TYPE_CHECKING:  # pragma: no cover
    from pm_engine.core.portfolio import PortfolioStateManager

Decided = tuple[SignalResult, "PortfolioStateManager"]
Decide = Callable[[Optional[dict[str, Any]]], Decided]


class StateStore(Protocol):
    """Durable portfolio state with exactly-once signals (docs/domain.md#persistence, #engine-flows).

    Every ``state`` document is what ``load_state`` returns: ``portfolio`` (the row as a dict),
    ``positions`` (id -> Position) and ``pyramiding`` (rows as dicts). Methods may raise
    ``DatabaseUnavailableError`` (nothing recorded) and ``StaleVersionError`` (carrying ``state``).
    A commit answers ``Duplicate`` (another writer had the fingerprint) or ``Blocked`` (the trading
    controls, evaluated by the store at commit, refused the signal) instead of applying it.
    """

    def load_state(self) -> dict[str, Any]:
        """The committed portfolio, open positions and pyramiding state."""

    def state_if_moved(self, known_version: int) -> Optional[dict[str, Any]]:
        """The committed state if the portfolio moved past ``known_version``, else None."""

    def commit_signal(self, signal: Signal, result: SignalResult, work: "PortfolioStateManager",
                      instance_id: str) -> Optional[Duplicate | Blocked]:
        """Claim the fingerprint and write the decision's effects atomically; None when applied."""

    def commit_signal_locked(self, signal: Signal, known_version: int, decide: Decide,
                             instance_id: str) -> Decided | Duplicate | Blocked:
        """Decide under the portfolio's lock and commit (the one retry after a stale decision)."""

    def commit_signal_guarded(self, signal: Signal, result: SignalResult, work: "PortfolioStateManager",
                              decide: Decide, instance_id: str) -> Decided | Duplicate | Blocked:
        """Apply inside a transaction, deciding again under the lock if the portfolio moved."""

    def save_positions(self, work: "PortfolioStateManager") -> None:
        """Write a working copy's changed positions and metrics outside a signal (version-checked)."""

    def pending_orders(self, min_age_s: float = 0) -> list[Order]:
        """Committed orders never sent, at least ``min_age_s`` old."""

    def paper_broker(self) -> Broker:
        """The paper broker that fills this store's order outbox."""

    def record_capital_flow(self, kind: str, amount: Decimal, note: Optional[str], recorded_by: str) -> dict[str, Any]:
        """Record a deposit or withdrawal and move closed equity with it (core.capital's errors: nothing written)."""
