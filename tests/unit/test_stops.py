"""ATR trailing stops never loosen (docs/domain.md#stops-and-exits)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

from hypothesis import given
from hypothesis import strategies as st

from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.core.models import Position
from pm_engine.core.stops import initial_stop, stop_hit, trail

BN = DEFAULT_INSTRUMENTS["BANK_NIFTY"]


def base() -> Position:
    return Position("BANK_NIFTY_Long_1", "BANK_NIFTY", datetime(2026, 10, 30, tzinfo=timezone.utc), D(52000), 4, 120,
                    D(51650), D(51650), D(52000), atr=D(350), is_base_position=True)


def test_worked_example_trail() -> None:
    # highest 52,800; candidate 52,800 - 2.5 x 360 = 51,900 > 51,650
    p = base()
    assert trail(p, D(52800), D(360), BN)
    assert (p.highest_close, p.current_stop) == (D(52800), D(51900))


def test_lower_price_never_loosens() -> None:
    p = base()
    trail(p, D(52800), D(360), BN)
    assert not trail(p, D(52100), D(500), BN)
    assert (p.highest_close, p.current_stop) == (D(52800), D(51900))


def test_zero_atr_falls_back_to_entry_atr() -> None:
    p = base()
    trail(p, D(53000), D(0), BN)  # 53,000 - 2.5 x 350 = 52,125
    assert p.current_stop == D(52125)


def test_stop_hit_and_initial_stop() -> None:
    p = base()
    assert stop_hit(p, D("51649.99")) and not stop_hit(p, D(51650))
    assert initial_stop(D(52000), D(350), None, BN) == D("51475.0")  # 52,000 - 1.5 x 350
    assert initial_stop(D(52000), D(350), D(51650), BN) == D(51650)


@given(st.lists(st.tuples(st.integers(40000, 60000), st.integers(1, 2000)), min_size=1, max_size=30))
def test_stop_is_monotonic(prices: list[tuple[int, int]]) -> None:
    p = base()
    previous = p.current_stop
    for price, atr in prices:
        trail(p, D(price), D(atr), BN)
        assert p.current_stop >= previous
        assert p.highest_close >= D(price)
        previous = p.current_stop
