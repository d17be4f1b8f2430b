"""The errors the trading core meets: configuration, and the two a state store may raise to it.

A store (``core.state_store.StateStore``) raises ``DatabaseUnavailableError`` when it cannot
record a signal (the webhook answers 503) and ``StaleVersionError`` when another writer moved the
portfolio; the rest of the SQLSTATE contract is the store's own (``pm_engine.store.errors``).
"""

from __future__ import annotations

from typing import Any, Optional


class PmError(Exception):
    """Base class of every pm-engine error."""


class ConfigError(PmError):
    """The configuration (file or environment) is missing or malformed."""


class DatabaseError(PmError):
    """A database error with a SQLSTATE (``pgcode``)."""

    def __init__(self, message: str, pgcode: Optional[str] = None) -> None:
        super().__init__(message)
        self.pgcode = pgcode


class DatabaseUnavailableError(DatabaseError):
    """The database cannot be reached (after the connect retries)."""


class StaleVersionError(DatabaseError):
    """PM001: the row changed since the caller read it; reload and decide again.

    ``state`` carries the current state when the database sent it along (pm.apply_signal does),
    so the caller can decide again without another round trip.
    """

    state: Optional[dict[str, Any]] = None
