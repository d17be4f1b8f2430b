"""The state machines' constants agree with the one transitions table (migration 019): the order states
Python lists are exactly those pm.transitions moves an order between and broker_orders' CHECK allows, and
every machine's refused move raises the SQLSTATE pm.state_machines names, mapped to its Python exception."""

from __future__ import annotations

import re

import psycopg2
import pytest

from pm_engine.store.connection import DatabaseConfig
from pm_engine.store.errors import NotificationTransitionError, OrderTransitionError, RollTransitionError, error_for
from pm_engine.core.replay.states import ORDER_STATES
from tests.helpers import rows


def machine_states(db_config: DatabaseConfig, machine: str) -> set[str]:
    return {s for (s,) in rows(db_config, f"SELECT from_state FROM pm.transitions WHERE machine = '{machine}' "
                                          f"UNION SELECT to_state FROM pm.transitions WHERE machine = '{machine}'")}


def check_states(db_config: DatabaseConfig, constraint: str) -> set[str]:
    [(definition,)] = rows(db_config,
                           f"SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = '{constraint}'")
    return set(re.findall(r"'(\w+)'", definition))


def test_order_states_are_the_order_machines_states(db_config: DatabaseConfig) -> None:
    allowed = check_states(db_config, "broker_orders_status_check")
    assert set(ORDER_STATES) == machine_states(db_config, "order") == allowed


def test_roll_and_delivery_transitions_name_only_allowed_states(db_config: DatabaseConfig) -> None:
    assert machine_states(db_config, "roll") - {"none"} == check_states(db_config, "rolls_state_check")
    assert machine_states(db_config, "notification") <= check_states(db_config, "notification_deliveries_state_check")


@pytest.mark.parametrize("machine, move, exception", [
    ("order", ("unknown", "sending"), OrderTransitionError),
    ("roll", ("rolled", "failed"), RollTransitionError),
    ("notification", ("sent", "pending"), NotificationTransitionError),
])
def test_a_refused_move_raises_the_machines_error(db_config: DatabaseConfig, machine: str, move: tuple[str, str],
                                                  exception: type) -> None:
    [(code,)] = rows(db_config, f"SELECT sqlstate FROM pm.state_machines WHERE machine = '{machine}'")
    conn = psycopg2.connect(**db_config.dsn_kwargs())
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.Error) as raised:
            cur.execute("SELECT pm.check_transition(%s, %s, %s, 'it')", (machine, *move))
    finally:
        conn.close()
    assert raised.value.pgcode == code
    assert isinstance(error_for(raised.value.pgcode, str(raised.value)), exception)
