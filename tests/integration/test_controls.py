"""Issue 13: the breakers live (in pm.apply_signal) and in a replay (pm_engine/core/replay/controls.py) block the same
signals with the same reasons."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from pm_engine.config import DatabaseConfig
from pm_engine.core.backtest import run_backtest
from pm_engine.core.engine import TradingEngine
from pm_engine.store.gateway import Store
from pm_engine.tools.samples import generate_signals

BREAKERS = {"daily_loss_pct": 1.5, "max_entries_per_day": 3, "cooling_off_losses": 2, "cooling_off_hours": 3}
FIELDS = ["type", "instrument", "position", "price", "stop", "lots", "atr", "er", "supertrend", "roc", "reason",
          "timestamp"]


def write_stream(path: Path) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for body in generate_signals(700, seed=5):
            writer.writerow({k: body.get(k, "") for k in FIELDS})


def test_breakers_block_the_same_signals_live_and_in_a_replay(db_config: DatabaseConfig, tmp_path: Path) -> None:
    stream, breakers, out = tmp_path / "stream.csv", tmp_path / "breakers.json", tmp_path / "replay.json"
    write_stream(stream)
    breakers.write_text(json.dumps(BREAKERS))
    replay = subprocess.run([sys.executable, "-m", "pm_engine", "backtest", str(stream), "--breakers", str(breakers),
                             "--json", str(out)], capture_output=True, text=True, timeout=120)
    assert replay.returncode == 0, replay.stderr
    in_memory = [(s["fingerprint"], s["outcome"], s["reason"]) for s in json.loads(out.read_text())["signals"]]

    store = Store(db_config)
    try:
        store.controls.set_breakers(BREAKERS, "test")
        live = run_backtest(stream, TradingEngine(store=store, max_signal_age=None), progress=False)
        on_postgres = [(s["fingerprint"], s["outcome"], s["reason"]) for s in live.signals]
        mode = store.controls.trading_mode()
    finally:
        store.close()
    reasons = " | ".join(r for _, _, r in on_postgres)
    for tripped in ("max 3 entries per day reached", "cooling off after 2 losing trades in a row",
                    "trading paused (exits only): daily loss limit"):
        assert tripped in reasons, f"the stream never tripped {tripped!r}"
    assert mode["mode"] == "exits_only" and mode["changed_by"] == "breaker:daily_loss"
    assert on_postgres == in_memory


def test_backtest_refuses_a_bad_breakers_file(tmp_path: Path) -> None:
    stream, breakers = tmp_path / "stream.csv", tmp_path / "b.json"
    write_stream(stream)
    breakers.write_text(json.dumps({"cooling_off_losses": 2}))
    done = subprocess.run([sys.executable, "-m", "pm_engine", "backtest", str(stream), "--breakers", str(breakers)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "cooling-off needs both" in done.stderr
