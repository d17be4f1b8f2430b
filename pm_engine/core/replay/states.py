"""The states of the database's state machines, as Python names them in arguments, filters and messages.

SQL twin: the check constraints and transition tables of migrations 001, 008, 010 and 012 —
``broker_orders_status_check`` and ``pm.order_transitions`` (orders), ``rolls_state_check`` and
``pm.roll_transitions`` (rolls), ``portfolio_positions_rollover_status_check`` (a position's part in its
group's roll), ``notification_deliveries_state_check`` and ``pm.notification_transitions`` (a notification's
delivery). Python never moves a state; it only names one (``--state``, ``GET /orders?state=``), so a
name it offers must be one the database holds. ``tests/db/test_constants.py`` reads the constraints
and tables and requires these tuples to be exactly their states, in no particular order.
"""

from __future__ import annotations

ORDER_STATES = ("queued", "sending", "open", "partially_filled", "filled", "rejected", "cancelled", "expired",
                "unknown", "needs_review")
ROLL_STATES = ("pending", "closing", "opening", "rolled", "failed")
POSITION_ROLL_STATES = ("none", "pending", "in_progress", "rolled", "failed")  # portfolio_positions.rollover_status
DELIVERY_STATES = ("pending", "sending", "sent", "given_up", "filtered")  # notification_deliveries.state
