"""The review's look-up in the broker's order book (ops/review.py): the id exactly, with the order's symbol, side
and quantity (issue 29 item 3: a typo or a control byte must never link an order)."""

from __future__ import annotations

from pm_engine.ops.review import orderbook_mismatch

ORDER = {"symbol": "GOLDM05JAN27FUT", "side": "BUY", "quantity": 1}
BOOK = [{"orderid": "B1", "symbol": "goldm05jan27fut", "action": "BUY", "quantity": "1", "order_status": "open"},
        {"orderid": "B2", "symbol": "GOLDM05JAN27FUT", "action": "SELL", "quantity": "1"},
        {"orderid": "B3", "symbol": "GOLDM05JAN27FUT", "action": "BUY", "quantity": "2.0"},
        {"orderid": "B4", "symbol": "SILVERM27FEB27FUT", "action": "BUY", "quantity": 1}]


def test_the_order_in_the_book_with_its_symbol_side_and_quantity_is_found() -> None:
    assert orderbook_mismatch(BOOK, "B1", ORDER) is None


def test_an_id_not_in_the_book_or_with_a_stray_byte_is_refused() -> None:
    assert "not in the broker's order book" in str(orderbook_mismatch(BOOK, "a\x01b", ORDER))
    assert "not in the broker's order book" in str(orderbook_mismatch(BOOK, " B1", ORDER))  # never trimmed


def test_another_side_quantity_or_symbol_is_refused_and_says_what_it_is() -> None:
    assert orderbook_mismatch(BOOK, "B2", ORDER) == ("broker order B2 is SELL 1 GOLDM05JAN27FUT, the order is "
                                                     "BUY 1 GOLDM05JAN27FUT")
    assert "BUY 2 GOLDM05JAN27FUT" in str(orderbook_mismatch(BOOK, "B3", ORDER))
    assert "SILVERM27FEB27FUT" in str(orderbook_mismatch(BOOK, "B4", ORDER))
