"""Issue 22: a backtest over four months rolls every position at its roll dates, and replaying the same stream
through the database (the roll check run with each signal's time as the clock, paper fills) gives the same
trades, rolls and statistics."""

from __future__ import annotations

import csv
from datetime import date, datetime, timedelta
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from pm_engine.config import DatabaseConfig
from pm_engine.core.backtest import run_backtest
from pm_engine.core.engine import TradingEngine
from pm_engine.core.signals import IST
from pm_engine.core.statistics import Trade, as_json, in_exit_order
from pm_engine.ops.rollover import Roller
from pm_engine.store.gateway import Store
from tests.helpers import payload, rows

START = date(2026, 8, 3)
FIELDS = ("type", "instrument", "position", "price", "lots", "atr", "er", "supertrend", "timestamp", "stop", "reason")


def stream() -> list[dict[str, Any]]:
    """Bank Nifty and Gold Mini trending up from August to November 2026, a signal every third day each."""
    out = []
    for step in range(40):
        day = START + timedelta(days=3 * step)
        when = datetime(day.year, day.month, day.day, 11, 0, tzinfo=IST).isoformat()
        for name, base, slope, atr in (("BANK_NIFTY", 52000, 60, 350), ("GOLD_MINI", 75000, 90, 400)):
            price = base + slope * step
            if step in (0, 24):
                out.append(payload("BASE_ENTRY", name, "Long_1", price, when, stop=price - 2 * atr, atr=atr, er=0.85))
            elif step in (20, 39):
                out.append(payload("EXIT", name, "ALL", price, when, atr=atr, reason="SIGNAL"))
            else:
                layer = 2 if step < 24 else 3
                out.append(payload("PYRAMID", name, f"Long_{layer}", price, when, stop=price - atr, atr=atr))
    return out


def write(path: Path, bodies: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for body in bodies:
            writer.writerow({k: body.get(k, "") for k in FIELDS})
    return path


def test_backtest_rolls_at_roll_dates_and_the_live_replay_agrees(db_config: DatabaseConfig, tmp_path: Path) -> None:
    path = write(tmp_path / "four_months.csv", stream())
    memory = run_backtest(path, progress=False)
    rolled = [(r["instrument"], r["from_symbol"], r["to_symbol"]) for r in memory.rolls]
    assert ("BANK_NIFTY", "BANKNIFTY25AUG26FUT", "BANKNIFTY29SEP26FUT") in rolled
    assert ("GOLD_MINI", "GOLDM04SEP26FUT", "GOLDM05OCT26FUT") in rolled
    assert len(rolled) >= 5, rolled
    for roll in memory.rolls:  # each on or after its roll date, and the basis is 0 (no second-contract prices)
        assert all(layer["basis"] == 0 for layer in roll["layers"])
    assert memory.stats["trades"] >= 4 and any(t.pnl != 0 for t in memory.trades)

    store = Store(db_config)
    try:
        engine = TradingEngine(store=store, max_signal_age=None)
        roller = Roller(store, engine.contracts, engine.instruments)

        def clock(now: datetime) -> None:  # the leader's check, at the signal's time
            roller.check(now=now, respect_hours=False)
            roller.fill_paper()
            engine.refresh()

        replay = run_backtest(path, engine, progress=False, before_signal=clock)
        assert replay.outcomes == memory.outcomes
        live_rolls = rows(db_config, "SELECT instrument, from_symbol, to_symbol, state FROM pm.rolls ORDER BY roll_id")
        assert [r[:3] for r in live_rolls] == rolled and {r[3] for r in live_rolls} == {"rolled"}
        assert as_json(store.history.trade_stats()) == as_json(memory.stats)
        timeless = ("entry_time", "exit_time", "holding_time")
        stored = [Trade.from_row(r) for r in store.history.trades()]
        assert [{k: v for k, v in as_json(t).items() if k not in timeless} for t in stored] == [
            {k: v for k, v in as_json(t).items() if k not in timeless} for t in in_exit_order(memory.trades)]
        [(closed,)] = rows(db_config, "SELECT closed_equity FROM pm.portfolio_state")
        assert closed == memory.final_closed_equity
        assert rows(db_config, "SELECT sum(rollover_count) FROM pm.portfolio_positions")[0][0] >= len(rolled)
        assert D(0) not in {t.pnl for t in stored}
    finally:
        store.close()
