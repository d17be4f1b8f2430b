"""The constants Python names the database's states and kinds by are the database's (issue 30).

Python never moves a state, but it names them: ``--state`` and ``GET /orders?state=`` offer the order
states, the rollover views show a roll's and a position's, ``notify.events`` is checked against the
notification kinds before any database is reachable. Each tuple in ``pm_engine/core/replay/states.py``
and ``notification_kinds.py`` is compared here with the check constraint of its column (read from
``pg_constraint``) and with its machine's transition table, so adding a state or a kind on one side
only fails here.
"""

from __future__ import annotations

import re

from pm_engine.config import DatabaseConfig
from pm_engine.core.models import Outcome
from pm_engine.core.replay.notification_kinds import DEFAULT_EVENTS, KINDS, LEVELS
from pm_engine.core.replay.states import DELIVERY_STATES, ORDER_STATES, POSITION_ROLL_STATES, ROLL_STATES
from tests.helpers import rows


def checked_values(config: DatabaseConfig, table: str, column: str) -> set[str]:
    """The values a column's CHECK (column IN (...)) constraint allows, from pg_constraint."""
    found = rows(config, f"""
        SELECT c.conname, pg_get_constraintdef(c.oid)
          FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
         WHERE c.conrelid = 'pm.{table}'::regclass AND c.contype = 'c' AND a.attname = '{column}'
           AND cardinality(c.conkey) = 1""")
    assert len(found) == 1, f"pm.{table}.{column}: expected one check constraint, found {found}"
    values = set(re.findall(r"'([^']*)'", found[0][1]))
    assert values, f"pm.{table}.{column}: no list of values in {found[0][1]}"
    return values


def transition_states(config: DatabaseConfig, table: str) -> set[str]:
    return {state for pair in rows(config, f"SELECT from_state, to_state FROM pm.{table}") for state in pair}


def test_order_states_are_the_broker_orders_constraint_and_its_transitions(db_config: DatabaseConfig) -> None:
    assert len(set(ORDER_STATES)) == len(ORDER_STATES)
    assert set(ORDER_STATES) == checked_values(db_config, "broker_orders", "status")
    assert transition_states(db_config, "order_transitions") == set(ORDER_STATES)  # every state is reachable


def test_roll_states_are_the_rolls_constraint_and_its_transitions(db_config: DatabaseConfig) -> None:
    assert set(ROLL_STATES) == checked_values(db_config, "rolls", "state")
    # 'none' is the machine's start (no roll row yet), never a stored state
    assert transition_states(db_config, "roll_transitions") == set(ROLL_STATES) | {"none"}
    assert set(POSITION_ROLL_STATES) == checked_values(db_config, "portfolio_positions", "rollover_status")


def test_delivery_states_are_the_deliveries_constraint(db_config: DatabaseConfig) -> None:
    assert set(DELIVERY_STATES) == checked_values(db_config, "notification_deliveries", "state")
    # 'filtered' is written as a delivery is created (an event nobody asked for), never moved into
    assert transition_states(db_config, "notification_transitions") == set(DELIVERY_STATES) - {"filtered"}


def test_notification_kinds_and_levels_are_the_kinds_table(db_config: DatabaseConfig) -> None:
    assert set(LEVELS) == checked_values(db_config, "notification_kinds", "level")
    stored = dict(rows(db_config, "SELECT kind, level FROM pm.notification_kinds"))
    assert stored == {k.name: k.level for k in KINDS.values() if k.stored}
    assert all(k.level in LEVELS for k in KINDS.values())
    direct = {k.name for k in KINDS.values() if not k.stored}
    assert direct == {"database", "process"} and not direct & set(stored)  # sent by a process, never recorded
    assert DEFAULT_EVENTS <= set(KINDS)


def test_signal_outcomes_are_signal_log_statuses(db_config: DatabaseConfig) -> None:
    assert {o.value for o in Outcome} <= checked_values(db_config, "signal_log", "processing_status")
