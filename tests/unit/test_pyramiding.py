"""Pyramid gates and sizing (docs/domain.md#pyramiding), the worked example by hand."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

from pm_engine.core.instruments import DEFAULT_INSTRUMENTS, PortfolioConfig
from pm_engine.core.models import Position
from pm_engine.core.pyramiding import gate_reasons, next_layer, size_pyramid

BN = DEFAULT_INSTRUMENTS["BANK_NIFTY"]
CONFIG = PortfolioConfig()
T0 = datetime(2026, 10, 30, 5, 0, tzinfo=timezone.utc)


def base(lots: int = 4) -> Position:
    return Position("BANK_NIFTY_Long_1", "BANK_NIFTY", T0, D(52000), lots, lots * 30, D(51650), D(51900), D(52800),
                    atr=D(350), is_base_position=True)


def test_worked_example_gates_pass() -> None:
    # 1R: 800 > 350; spacing (52,800 - 52,000) / 360 = 2.22 >= 0.5; profit 800 x 4 x 30 = 96,000 > 0
    assert gate_reasons("Long_2", D(52800), D(360), base(), D(52000), [base()], BN, CONFIG) == []


def test_worked_example_size() -> None:
    # blended equity 5,000,000 + 0.5 x 96,000 = 5,048,000; margin used 4 x 270,000
    # A = floor((0.6 x 5,048,000 - 1,080,000) / 270,000) = floor(7.218) = 7; B = floor(4 x 0.5) = 2
    # profit after base risk = 96,000 - 42,000 = 54,000; C = floor(27,000 / (500 x 30)) = floor(1.8) = 1
    r = size_pyramid(D(52800), D(52300), D(360), base(), 0, D(5_048_000), D(1_080_000), BN, CONFIG)
    assert (r.lots, r.limiter) == (1, "risk_budget")
    assert r.constraints == {"margin": D(7), "geometric": D(2), "risk_budget": D(1)}


def test_geometric_halves_each_time() -> None:
    # B = floor(8 x 0.5^(n+1)): 4, 2, 1, 0
    sizes = [size_pyramid(D(60000), D(59900), D(360), base(8), n, D(9_000_000), D(0), BN, CONFIG).constraints[
        "geometric"] for n in range(4)]
    assert sizes == [D(4), D(2), D(1), D(0)]


def test_no_base_is_the_only_reason() -> None:
    reasons = gate_reasons("Long_2", D(52800), D(360), None, None, [], BN, CONFIG)
    assert reasons == ["no open base position for BANK_NIFTY"]


def test_every_failing_gate_is_reported() -> None:
    # price 52,100: 1R fails (100 <= 350), spacing 100/360 = 0.28 < 0.5 fails; profit 12,000 > 0 passes
    reasons = gate_reasons("Long_3", D(52100), D(360), base(), D(52000), [base()], BN, CONFIG)
    assert len(reasons) == 3
    assert reasons[0].startswith("layer Long_3 is out of order: the next pyramid is Long_2")
    assert reasons[1].startswith("1R gate") and reasons[2].startswith("spacing 0.28 ATR")


def test_profit_gate_and_open_layer_duplicate() -> None:
    losing = Position("BANK_NIFTY_Long_2", "BANK_NIFTY", T0, D(60000), 10, 300, D(59000), D(59000), D(60000))
    reasons = gate_reasons("Long_2", D(52800), D(360), base(), D(52000), [base(), losing], BN, CONFIG)
    assert reasons[0] == "layer Long_2 is already open (duplicate, not a new pyramid)"
    assert any(r.startswith("profit gate") for r in reasons)


def test_max_pyramids() -> None:
    layers = [base()] + [Position(f"BANK_NIFTY_Long_{k}", "BANK_NIFTY", T0, D(52000), 1, 30, D(51000), D(51000),
                                  D(52000)) for k in range(2, 7)]
    reasons = gate_reasons("Long_7", D(56000), D(360), base(), D(52000), layers, BN, CONFIG)
    assert reasons[0] == "5 pyramids already open, the maximum for BANK_NIFTY"
    assert next_layer(0) == "Long_2" and next_layer(4) == "Long_6"
