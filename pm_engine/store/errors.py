"""The database's typed errors and the mapping from SQLSTATEs to them.

The table of codes lives in db/README.md ("Error contract"); this module is its Python half. The
two errors the trading core handles itself (unavailable, stale version) are defined in the core
and re-exported here, so every SQLSTATE maps to a class importable from this one module.
"""

from __future__ import annotations

from typing import Optional

from pm_engine.core.capital import InvalidAmountError, InvalidNoteError, WithdrawalRefusedError
from pm_engine.core.errors import DatabaseError, DatabaseUnavailableError, PmError, StaleVersionError

__all__ = ["BrokerOrderLinkedError", "ContractConflictError", "DatabaseError", "DatabaseUnavailableError",
           "DeployError", "FillRefusedError", "HistoryAppendOnlyError", "HistoryUnavailableError",
           "InvalidArgumentError", "NotFoundError", "NotificationTransitionError", "OrderNotSendableError",
           "OrderRecordAppendOnlyError", "OrderTransitionError", "OrderUnresolvedError", "PositionAlreadyOpenError",
           "PositionClosedError", "RetentionFloorError", "SQLSTATE_TO_ERROR", "StaleVersionError", "error_for",
           "AlreadyRollingError", "RollLegsPendingError", "RollPlanRefusedError", "RollRecordAppendOnlyError",
           "RollTransitionError"]


class DeployError(PmError):
    """Deploying migrations or functions failed, or an applied migration was edited."""


class PositionAlreadyOpenError(DatabaseError):
    """PM002: a new position was saved under an id that is still open."""


class NotFoundError(DatabaseError):
    """PM003: the row to update does not exist."""


class InvalidArgumentError(DatabaseError):
    """PM004 and the constraint errors: a field is missing, of the wrong type or out of range."""


class PositionClosedError(DatabaseError):
    """PM005: a closed position is final and cannot be updated."""


class HistoryUnavailableError(DatabaseError):
    """PM006: no history covers the requested time (history starts when migration 003 is deployed)."""


class HistoryAppendOnlyError(DatabaseError):
    """PM007: history rows are never updated or deleted."""


class RetentionFloorError(DatabaseError):
    """PM020: a cleanup's retention is below its floor and the caller is not the database owner."""


class ContractConflictError(DatabaseError):
    """PM030: a new open position would hold a different contract than its instrument's other open positions."""


class OrderTransitionError(DatabaseError):
    """PM041: the order's state does not allow this transition (its whitelist: pm.transitions, machine 'order')."""


class OrderUnresolvedError(DatabaseError):
    """PM042: another order of the same symbol, side and product is sending or unknown; this one waits."""


class BrokerOrderLinkedError(DatabaseError):
    """PM043: the broker order id is already linked to another order of ours."""


class OrderNotSendableError(DatabaseError):
    """PM044: the order lacks the symbol, quantity or product a broker needs."""


class FillRefusedError(DatabaseError):
    """PM045 / PM046: a fill beyond the order's quantity, or for a broker order that is not the order's."""


class OrderRecordAppendOnlyError(DatabaseError):
    """PM047: order events and fills are never updated or deleted."""


class OrderNotInReviewError(DatabaseError):
    """PM048: only a needs_review order is resolved by the trader's review (pm.review_order)."""


class RollTransitionError(DatabaseError):
    """PM080: the roll's state does not allow this transition (its whitelist: pm.transitions, machine 'roll')."""


class AlreadyRollingError(DatabaseError):
    """PM081: the instrument's group is rolling already (one roll in flight per instrument)."""


class RollPlanRefusedError(DatabaseError):
    """PM082: a roll's plan does not name exactly the group's open layers on one contract."""


class RollLegsPendingError(DatabaseError):
    """PM083: the roll's legs of this stage have not all filled (or ended)."""


class RollRecordAppendOnlyError(DatabaseError):
    """PM084: roll events are never updated or deleted."""


class RollOrdersPendingError(DatabaseError):
    """PM085: an order of the instrument is unsettled, or reconciliation or a review locks it: no roll yet."""


class BookForgeryError(DatabaseError):
    """PM094: a portfolio document's closed equity (or initial capital) is not what the book derives: money moves
    only through the signal, fill, roll and capital paths, so a caller cannot write equity it did not earn."""


class InvalidPrincipalError(DatabaseError):
    """PM095: a principal (``recorded_by``, a review's ``by``) is not one of the checked forms
    ``cli:user@host``, ``local:<address>``, ``dashboard:<address>``, ``api:<address>``, ``telegram:<user id>``."""


class ReviewLinkRefusedError(DatabaseError):
    """PM096: a review's link without ``checked`` or ``forced`` (a forced link needs a reason)."""


class NotificationTransitionError(DatabaseError):
    """PM070: a notification delivery may only move along pm.transitions, machine 'notification'."""


SQLSTATE_TO_ERROR: dict[str, type[DatabaseError]] = {
    "PM001": StaleVersionError,
    "PM002": PositionAlreadyOpenError,
    "PM003": NotFoundError,
    "PM004": InvalidArgumentError,
    "PM005": PositionClosedError,
    "PM006": HistoryUnavailableError,
    "25006": DatabaseUnavailableError,  # read_only_sql_transaction: a standby answered (a failover under way)
    "PM007": HistoryAppendOnlyError,
    "PM020": RetentionFloorError,
    "PM030": ContractConflictError,
    "PM041": OrderTransitionError,
    "PM042": OrderUnresolvedError,
    "PM043": BrokerOrderLinkedError,
    "PM044": OrderNotSendableError,
    "PM045": FillRefusedError,
    "PM046": FillRefusedError,
    "PM047": OrderRecordAppendOnlyError,
    "PM048": OrderNotInReviewError,
    "PM070": NotificationTransitionError,
    "PM080": RollTransitionError,
    "PM081": AlreadyRollingError,
    "PM082": RollPlanRefusedError,
    "PM083": RollLegsPendingError,
    "PM084": RollRecordAppendOnlyError,
    "PM085": RollOrdersPendingError,
    "PM094": BookForgeryError,
    "PM095": InvalidPrincipalError,
    "PM096": ReviewLinkRefusedError,
    "PM071": InvalidArgumentError,  # unknown notification kind
    "PM072": InvalidArgumentError,  # unknown broker session state
    "23502": InvalidArgumentError,  # not_null_violation
    "23503": InvalidArgumentError,  # foreign_key_violation
    "23514": InvalidArgumentError,  # check_violation
    "22P02": InvalidArgumentError,  # invalid_text_representation
    "22003": InvalidArgumentError,  # numeric_value_out_of_range
    "22007": InvalidArgumentError,  # invalid_datetime_format
    "22008": InvalidArgumentError,  # datetime_field_overflow
    "22001": InvalidArgumentError,  # string_data_right_truncation
    # capital flows (migration 009), defined in the core: its in-memory twin raises them too
    "PM060": InvalidAmountError,
    "PM061": WithdrawalRefusedError,
    "PM062": WithdrawalRefusedError,
    "PM063": InvalidNoteError,
}


def error_for(pgcode: Optional[str], message: str) -> DatabaseError:
    """Build the typed exception for a SQLSTATE (DatabaseError for codes with no special meaning)."""
    cls = SQLSTATE_TO_ERROR.get(pgcode or "", DatabaseError)
    return cls(message, pgcode)
