"""``pm-engine backtest``: summary, plot, duplicates and malformed rows (never a traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pm_engine.core.backtest import row_to_payload, run_backtest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "signals.csv"


def test_sample_csv_replays_with_summary_and_plot(tmp_path: Path) -> None:
    png, out, trades = tmp_path / "equity.png", tmp_path / "bt.json", tmp_path / "trades.csv"
    proc = subprocess.run([sys.executable, "-m", "pm_engine", "backtest", str(SAMPLE), "--plot", str(png),
                           "--json", str(out), "--trades", str(trades)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "signals by outcome:" in proc.stdout and "duplicate 2" in proc.stdout
    assert "final closed equity:" in proc.stdout and "max drawdown" in proc.stdout
    assert "line 303 skipped: price: must be a number" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    body = json.loads(out.read_text())
    assert {"trades", "win_rate", "profit_factor", "expectancy", "mean_r", "max_drawdown", "max_drawdown_pct",
            "max_open_drawdown", "final_closed_equity", "by_instrument", "signals", "open_positions"} <= set(body)
    assert len(body["signals"]) == len(SAMPLE.read_text().splitlines()) - 2  # all rows but the malformed one
    assert {s["outcome"] for s in body["signals"]} == {"executed", "blocked", "duplicate"}
    assert len(trades.read_text().splitlines()) == body["trades"] + 1


def test_report_is_consistent(tmp_path: Path) -> None:
    report = run_backtest(SAMPLE, progress=False)
    assert report.final_closed_equity == report.initial_capital + report.realized_pnl
    assert sum(report.outcomes.values()) + len(report.malformed) == len(SAMPLE.read_text().splitlines()) - 1
    assert report.max_drawdown >= 0


def test_malformed_rows_reported_with_line_numbers(tmp_path: Path) -> None:
    csv_file = tmp_path / "bad.csv"
    csv_file.write_text("type,instrument,position,price,stop,lots,atr,er,supertrend,roc,reason,timestamp\n"
                        "BASE_ENTRY,BANK_NIFTY,Long_1,52000,51650,4,350,0.85,51600,,,2026-10-30T10:30:00+05:30\n"
                        "BASE_ENTRY,NOPE,Long_1,52000,51650,4,350,0.85,51600,,,2026-10-30T10:30:00+05:30\n"
                        "EXIT,BANK_NIFTY,ALL,53000,,4,0,0.5,1,,,2026-10-30T11:30:00+05:30\n")
    report = run_backtest(csv_file, progress=False)
    assert report.outcomes == {"executed": 1}
    assert [m.split(":")[0] for m in report.malformed] == ["line 3", "line 4"]
    assert "instrument" in report.malformed[0] and "reason" in report.malformed[1]


def test_row_to_payload() -> None:
    assert row_to_payload({"price": "52000", "er": "0.5", "roc": "", "lots": "4", "reason": " SIGNAL "}) == {
        "price": 52000, "er": 0.5, "lots": 4, "reason": "SIGNAL"}
    assert row_to_payload({"price": "abc"}) == {"price": "abc"}


def test_missing_file() -> None:
    proc = subprocess.run([sys.executable, "-m", "pm_engine", "backtest", "/nonexistent.csv"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "not found" in proc.stderr
