"""Book: equity definitions and close_position (docs/domain.md#equity, #stops-and-exits)."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

from pm_engine.core.instruments import PortfolioConfig
from pm_engine.core.models import Position
from pm_engine.core.portfolio import Book

T0 = datetime(2026, 10, 30, 5, 0, tzinfo=timezone.utc)


def with_base() -> Book:
    pm = Book()
    pm.open_position(Position("BANK_NIFTY_Long_1", "BANK_NIFTY", T0, D(52000), 4, 120, D(51650), D(51650), D(52000),
                              atr=D(350), is_base_position=True))
    pm.set_pyramiding("BANK_NIFTY", D(52000), "BANK_NIFTY_Long_1")
    return pm


def test_equities() -> None:
    pm = with_base()
    pm.update_unrealized_pnl("BANK_NIFTY", D(52800))  # (52,800 - 52,000) x 4 x 30 = 96,000
    assert pm.unrealized() == D(96000)
    assert pm.open_equity() == D(5_096_000)
    assert pm.blended_equity() == D(5_048_000)
    assert pm.sizing_equity() == D(5_048_000)
    assert Book(PortfolioConfig(sizing_equity="closed")).sizing_equity() == D(5_000_000)


def test_metrics() -> None:
    m = with_base().metrics()
    # risk 350 x 4 x 30 = 42,000 (0.84 %), vol 350 x 4 x 30 = 42,000, margin 4 x 270,000
    assert (m.total_risk, m.total_vol, m.margin_used) == (D(42000), D(42000), D(1_080_000))
    assert (m.risk_percent, m.margin_percent) == (D("0.8400"), D("21.6000"))


def test_close_position_realizes_pnl_and_resets_pyramiding() -> None:
    pm = with_base()
    realized = pm.close_position("BANK_NIFTY_Long_1", D(53500), T0, "SIGNAL")
    assert realized == D(180_000)  # (53,500 - 52,000) x 4 x 30
    assert pm.closed_equity == D(5_180_000) and pm.equity_high == D(5_180_000)
    assert pm.positions == {} and "BANK_NIFTY" not in pm.pyramiding
    closed = pm.closed["BANK_NIFTY_Long_1"]
    assert (closed.status, closed.exit_price, closed.exit_reason, closed.realized_pnl) == (
        "closed", D(53500), "SIGNAL", D(180_000))


def test_closing_base_with_pyramid_open_clears_base_only() -> None:
    pm = with_base()
    pm.open_position(Position("BANK_NIFTY_Long_2", "BANK_NIFTY", T0, D(52800), 1, 30, D(52300), D(52300), D(52800)))
    pm.close_position("BANK_NIFTY_Long_1", D(52000), T0, "MANUAL")
    state = pm.pyramiding["BANK_NIFTY"]
    assert state.base_position_id is None and state.last_pyramid_price == D(52000)


def test_loss_keeps_equity_high() -> None:
    pm = with_base()
    pm.close_position("BANK_NIFTY_Long_1", D(51000), T0, "STOP_LOSS")
    assert pm.closed_equity == D(4_880_000) and pm.equity_high == D(5_000_000)
    assert Book(PortfolioConfig(size_on_equity_high=True)).sizing_equity() == D(5_000_000)


def test_clone_is_detached() -> None:
    pm = with_base()
    work = pm.clone()
    work.close_position("BANK_NIFTY_Long_1", D(53500), T0, "SIGNAL")
    assert "BANK_NIFTY_Long_1" in pm.positions and pm.closed_equity == D(5_000_000)
    pm.adopt(work)
    assert pm.positions == {} and pm.closed_equity == D(5_180_000)
