"""Base-entry sizing (docs/domain.md#sizing-a-base-entry) with the worked examples' hand-checked numbers."""

from __future__ import annotations

from decimal import Decimal as D

from pm_engine.core.instruments import DEFAULT_INSTRUMENTS, PortfolioConfig
from pm_engine.core.sizing import available_margin, pick_limiter, portfolio_limit_reasons, size_base_entry

BN, GOLD, SILVER, COPPER = (DEFAULT_INSTRUMENTS[n] for n in ("BANK_NIFTY", "GOLD_MINI", "SILVER_MINI", "COPPER"))
CONFIG = PortfolioConfig()
Q = D(5_000_000)


def test_bank_nifty_worked_example() -> None:
    # risk per lot = 350 x 30 = 10,500; Lot-R = 50,000 / 10,500 x 0.85 = 4.0476
    # Lot-V = 25,000 / 10,500 = 2.3810 (recorded only); AM = 3,000,000 -> Lot-M = 11.1111
    r = size_base_entry(D(52000), D(51650), D(350), D("0.85"), Q, D(0), BN, CONFIG)
    assert r.lots == 4 and r.limiter == "risk"
    assert r.constraints == {"risk": D("4.0476"), "volatility": D("2.3810"), "margin": D("11.1111")}
    assert 4 * BN.lot_size == 120
    # risk contribution = 350 x 4 x 30 / 5,000,000 = 0.84 %
    assert r.risk_contribution == D("0.8400") and r.risk_amount == D(42000)
    assert r.vol_contribution == D("0.8400")  # atr 350 x 4 x 30 as well


def test_gold_mini_exactly_five_is_five_not_four() -> None:
    # Lot-R = 50,000 / 1,200 x 0.12 = exactly 5; in binary floats, in that order, it is a hair under 5
    assert 50_000 / 1_200 * 0.12 < 5
    r = size_base_entry(D(78000), D(77880), D(600), D("0.12"), Q, D(0), GOLD, CONFIG)
    assert r.lots == 5 and r.limiter == "risk"
    assert r.constraints["margin"] == D("28.5714")  # 3,000,000 / 105,000


def test_pitfall_five_float_example() -> None:
    # 50,000 / 6,000 x 0.6 = 5 exactly: risk per lot 6,000 = 200 points x 30 (BANK_NIFTY)
    r = size_base_entry(D(52000), D(51800), D(300), D("0.6"), Q, D(0), BN, CONFIG)
    assert r.lots == 5


def test_margin_already_used_is_subtracted() -> None:
    # pitfall 3: AM = 0.6 x 5,000,000 - 2,700,000 = 300,000 -> Lot-M = 300,000 / 270,000 = 1.11
    assert available_margin(Q, D(2_700_000), CONFIG) == 300_000
    r = size_base_entry(D(52000), D(51650), D(350), D("0.85"), Q, D(2_700_000), BN, CONFIG)
    assert r.lots == 1 and r.limiter == "margin"
    assert available_margin(Q, D(4_000_000), CONFIG) == 0


def test_zero_lots_names_the_limiter() -> None:
    # er = 0.1: Lot-R = 50,000 / 10,500 x 0.1 = 0.476 -> 0 lots, limited by risk
    r = size_base_entry(D(52000), D(51650), D(350), D("0.1"), Q, D(0), BN, CONFIG)
    assert r.lots == 0 and r.limiter == "risk"


def test_volatility_switch_adds_the_third_constraint() -> None:
    r = size_base_entry(D(52000), D(51650), D(350), D("0.85"), Q, D(0), BN,
                        PortfolioConfig(use_volatility_constraint=True))
    assert r.lots == 2 and r.limiter == "volatility"  # floor(2.3810)


def test_ties_go_to_the_first_in_order() -> None:
    from fractions import Fraction as F
    assert pick_limiter([("risk", F(3)), ("volatility", F(3)), ("margin", F(3))]) == ("risk", F(3))
    assert pick_limiter([("risk", F(4)), ("volatility", F(3)), ("margin", F(3))]) == ("volatility", F(3))


def test_silver_and_copper_base_sizes() -> None:
    # SILVER: Lot-R = 50,000 x 0.5 / (2,000 x 5) = 2.5 -> 2
    assert size_base_entry(D(90000), D(88000), D(1000), D("0.5"), Q, D(0), SILVER, CONFIG).lots == 2
    # COPPER: Lot-R = 50,000 x 0.9 / (5 x 2,500) = 3.6 -> 3
    assert size_base_entry(D(800), D(795), D(2), D("0.9"), Q, D(0), COPPER, CONFIG).lots == 3


def test_portfolio_limits() -> None:
    # 15 % of 5,000,000 = 750,000 risk; 5 % = 250,000 volatility
    assert portfolio_limit_reasons(D(700_000), D(0), D(50_000), D(0), Q, D(15), D(5)) == []
    assert portfolio_limit_reasons(D(700_000), D(0), D(50_001), D(0), Q, D(15), D(5)) == [
        "portfolio risk would be 15.0000% of equity, above 15%"]
    assert portfolio_limit_reasons(D(0), D(240_000), D(0), D(20_000), Q, D(15), D(5)) == [
        "portfolio volatility would be 5.2000% of equity, above 5%"]
    assert portfolio_limit_reasons(D(0), D(0), D(1), D(1), D(0), D(15), D(5)) == ["sizing equity is not positive"]


def test_a_zero_lot_answer_says_what_one_lot_needed() -> None:
    """Issue 28: Bank Nifty 52,000 with the stop 350 below is ₹10,500 of risk a lot; at ER 0.85 on ₹10 lakh that
    is 1.24 % of equity, above the 1.0 % allowed: zero lots, and the reason says so."""
    from pm_engine.core.instruments import DEFAULT_INSTRUMENTS, PortfolioConfig
    from pm_engine.core.sizing import one_lot_needs, size_base_entry

    bank, config = DEFAULT_INSTRUMENTS["BANK_NIFTY"], PortfolioConfig()
    sized = size_base_entry(D(52000), D(51650), D(350), D("0.85"), D(1_000_000),
                            D(0), bank, config)
    assert (sized.lots, sized.limiter) == (0, "risk")
    assert one_lot_needs("risk", D(52000), D(51650), D(350), D("0.85"), D(1_000_000),
                         D(0), bank, config) == \
        "1 lot needs ₹10,500.00 of risk: 1.24 % of equity at ER 0.85, above the 1.0 % allowed"
    margin = one_lot_needs("margin", D(52000), D(51650), D(350), D("0.85"),
                           D(1_000_000), D(500_000), bank, config)
    assert margin.startswith(f"1 lot needs ₹{bank.margin_per_lot:,} of margin; ₹100,000.00 is free")
