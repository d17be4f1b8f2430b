"""core/reconcile.compare: a contract with an order in flight is not a difference (issue 21)."""

from __future__ import annotations

from pm_engine.core.reconcile import compare

BOOK = [{"symbol": "GOLDM05JAN27FUT", "exchange": "MCX", "product": "NRML", "quantity": 2},
        {"symbol": "SILVERM27FEB27FUT", "exchange": "MCX", "product": "NRML", "quantity": 1}]
BROKER = [{"symbol": "GOLDM05JAN27FUT", "exchange": "MCX", "product": "NRML", "quantity": "0"},
          {"symbol": "SILVERM27FEB27FUT", "exchange": "MCX", "product": "NRML", "quantity": "3"}]


def test_a_contract_in_flight_is_left_for_the_next_check() -> None:
    result = compare(BOOK, set(), BROKER, in_flight={"goldm05jan27fut"})
    assert result["in_flight"] == ["GOLDM05JAN27FUT"]
    assert result["matched"] is False and [d["symbol"] for d in result["differences"]] == ["SILVERM27FEB27FUT"]


def test_without_orders_in_flight_every_difference_counts() -> None:
    result = compare(BOOK, set(), BROKER)
    assert result["in_flight"] == [] and len(result["differences"]) == 2


def test_only_in_flight_differences_match() -> None:
    result = compare(BOOK[:1], set(), BROKER[:1], in_flight={"GOLDM05JAN27FUT"})
    assert (result["matched"], result["differences"]) == (True, [])
