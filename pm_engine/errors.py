"""Typed exceptions, and the mapping from the database's SQLSTATEs to them.

The table of codes lives in db/README.md ("Error contract"); this module is its Python half.
"""

from __future__ import annotations

from typing import Any, Optional


class PmError(Exception):
    """Base class of every pm-engine error."""


class ConfigError(PmError):
    """The configuration (file or environment) is missing or malformed."""


class DeployError(PmError):
    """Deploying migrations or functions failed, or an applied migration was edited."""


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


class PositionAlreadyOpenError(DatabaseError):
    """PM002: a new position was saved under an id that is still open."""


class NotFoundError(DatabaseError):
    """PM003: the row to update does not exist."""


class InvalidArgumentError(DatabaseError):
    """PM004 and the constraint errors: a field is missing, of the wrong type or out of range."""


class PositionClosedError(DatabaseError):
    """PM005: a closed position is final and cannot be updated."""


SQLSTATE_TO_ERROR: dict[str, type[DatabaseError]] = {
    "PM001": StaleVersionError,
    "PM002": PositionAlreadyOpenError,
    "PM003": NotFoundError,
    "PM004": InvalidArgumentError,
    "PM005": PositionClosedError,
    "23502": InvalidArgumentError,  # not_null_violation
    "23503": InvalidArgumentError,  # foreign_key_violation
    "23514": InvalidArgumentError,  # check_violation
    "22P02": InvalidArgumentError,  # invalid_text_representation
    "22003": InvalidArgumentError,  # numeric_value_out_of_range
    "22007": InvalidArgumentError,  # invalid_datetime_format
    "22008": InvalidArgumentError,  # datetime_field_overflow
    "22001": InvalidArgumentError,  # string_data_right_truncation
}


def error_for(pgcode: Optional[str], message: str) -> DatabaseError:
    """Build the typed exception for a SQLSTATE (DatabaseError for codes with no special meaning)."""
    cls = SQLSTATE_TO_ERROR.get(pgcode or "", DatabaseError)
    return cls(message, pgcode)
