"""Property tests (hypothesis): sizing caps, the limiter, and equity bookkeeping over random streams."""

from __future__ import annotations

import math
from decimal import Decimal as D
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from pm_engine.core.engine import TradingEngine
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS, PortfolioConfig
from pm_engine.core.orders import PaperBroker
from pm_engine.core.sizing import size_base_entry
from pm_engine.tools.samples import generate_signals

cents = st.integers(min_value=1, max_value=10_000_000).map(lambda c: D(c) / 100)


@given(instrument=st.sampled_from(sorted(DEFAULT_INSTRUMENTS)), price=cents, gap=cents, atr=cents,
       er=st.integers(0, 100).map(lambda e: D(e) / 100), equity=st.integers(1, 10**9).map(D),
       used=st.integers(0, 10**9).map(D), vol=st.booleans())
def test_lots_never_exceed_any_constraint_and_limiter_is_tightest(instrument: str, price: D, gap: D, atr: D, er: D,
                                                                  equity: D, used: D, vol: bool) -> None:
    stop = price - gap
    if stop <= 0:
        return
    config = PortfolioConfig(use_volatility_constraint=vol)
    cfg = DEFAULT_INSTRUMENTS[instrument]
    r = size_base_entry(price, stop, atr, er, equity, used, cfg, config)
    exact = {
        "risk": Fraction(equity) * Fraction(cfg.initial_risk_pct) / 100 * Fraction(er)
        / ((Fraction(price) - Fraction(stop)) * Fraction(cfg.point_value)),
        "volatility": Fraction(equity) * Fraction(cfg.initial_vol_pct) / 100
        / (Fraction(atr) * Fraction(cfg.point_value)),
        "margin": max(Fraction(0), Fraction(equity) * 60 / 100 - Fraction(used)) / Fraction(cfg.margin_per_lot),
    }
    in_use = ["risk", "volatility", "margin"] if vol else ["risk", "margin"]
    assert r.lots >= 0
    for name in in_use:
        assert r.lots <= math.floor(exact[name])
    assert exact[r.limiter] == min(exact[n] for n in in_use)
    assert r.lots == math.floor(exact[r.limiter])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(1, 120), repeats=st.lists(st.integers(0, 119), max_size=20))
def test_equity_is_capital_plus_realized_and_nothing_opens_twice(seed: int, count: int, repeats: list[int]) -> None:
    signals = generate_signals(count, seed=seed)
    for index in repeats:  # retried alerts, delivered again later in the stream
        if index < len(signals):
            signals.append(dict(signals[index]))
    broker = PaperBroker()
    engine = TradingEngine(broker=broker, max_signal_age=None)
    executed_fingerprints: set[str] = set()
    for body in signals:
        result = engine.process_payload(body, check_time=False)
        if result.outcome.value == "duplicate":
            assert result.fingerprint in executed_fingerprints
        executed_fingerprints.add(result.fingerprint)
        open_ids = [p.position_id for p in engine.portfolio.positions.values()]
        assert len(open_ids) == len(set(open_ids))
        bases = [p.instrument for p in engine.portfolio.positions.values() if p.is_base_position]
        assert len(bases) == len(set(bases)), "two open bases for one instrument"
    # realized P&L recomputed independently from the broker's order log: each SELL against its BUY
    buys: dict[str, D] = {}
    realized = D(0)
    for order in broker.orders.values():
        if order.side == "BUY":
            assert order.position_id not in buys, f"{order.position_id} opened twice"
            buys[order.position_id] = order.price
        else:
            realized += (order.price - buys.pop(order.position_id)) * order.lots * \
                DEFAULT_INSTRUMENTS[order.instrument].point_value
    assert engine.portfolio.closed_equity == D(5_000_000) + realized
    assert set(buys) == set(engine.portfolio.positions)
