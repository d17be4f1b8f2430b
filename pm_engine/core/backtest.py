"""Replay: run the live engine over a CSV of signals (``pm-engine backtest``).

The CSV header is the payload's field names; an empty cell is an absent field. The age check is
off (replay), repeated alerts are counted as duplicates, and a malformed row is reported with its
line number and skipped.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional, TextIO

from tqdm import tqdm

from pm_engine.core.engine import LiveTradingEngine
from pm_engine.core.signals import SignalValidationError

NUMERIC_FIELDS = {"price", "stop", "lots", "atr", "er", "supertrend", "roc"}


@dataclass
class BacktestReport:
    outcomes: dict[str, int] = field(default_factory=dict)
    malformed: list[str] = field(default_factory=list)
    trades: int = 0
    realized_pnl: Decimal = Decimal(0)
    initial_capital: Decimal = Decimal(0)
    final_closed_equity: Decimal = Decimal(0)
    max_drawdown: Decimal = Decimal(0)
    max_drawdown_pct: Decimal = Decimal(0)
    curve: list[tuple[datetime, Decimal, Decimal]] = field(default_factory=list)

    def summary(self) -> str:
        lines = ["signals by outcome: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
                 f"malformed rows skipped: {len(self.malformed)}",
                 f"trades (closed positions): {self.trades}",
                 f"realized P&L: {self.realized_pnl:,.2f}",
                 f"final closed equity: {self.final_closed_equity:,.2f} (initial {self.initial_capital:,.2f})",
                 f"max drawdown (closed equity): {self.max_drawdown:,.2f} ({self.max_drawdown_pct:.2f}%)"]
        return "\n".join(lines)


def row_to_payload(row: dict[str, Optional[str]]) -> dict[str, Any]:
    """CSV cells to a payload: empty cells dropped, numbers parsed (a bad number stays text for validation)."""
    payload: dict[str, Any] = {}
    for key, value in row.items():
        if key is None or value is None or value.strip() == "":
            continue
        key, value = key.strip(), value.strip()
        if key in NUMERIC_FIELDS:
            try:
                number = float(value)
                payload[key] = int(number) if number.is_integer() and "." not in value and "e" not in value.lower() \
                    else number
            except ValueError:
                payload[key] = value
        else:
            payload[key] = value
    return payload


def run_backtest(path: Path, engine: Optional[LiveTradingEngine] = None, progress: Optional[bool] = None,
                 err: TextIO = sys.stderr) -> BacktestReport:
    engine = engine or LiveTradingEngine(max_signal_age=None)
    report = BacktestReport(initial_capital=engine.portfolio.initial_capital)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SystemExit(f"backtest: cannot read {path}: {exc}") from None
    show = err.isatty() if progress is None else progress
    peak = engine.portfolio.closed_equity
    for number, row in enumerate(tqdm(rows, desc="replaying", unit="signal", disable=not show, file=err), start=2):
        try:
            result = engine.process_payload(row_to_payload(row), check_time=False)
        except SignalValidationError as exc:
            report.malformed.append(f"line {number}: {exc}")
            print(f"backtest: line {number} skipped: {exc}", file=err)
            continue
        report.outcomes[result.outcome.value] = report.outcomes.get(result.outcome.value, 0) + 1
        portfolio = engine.portfolio
        stamp = datetime.fromisoformat(row["timestamp"] or "") if row.get("timestamp") else datetime.min
        report.curve.append((stamp, portfolio.closed_equity, portfolio.open_equity()))
        peak = max(peak, portfolio.closed_equity)
        drawdown = peak - portfolio.closed_equity
        if drawdown > report.max_drawdown:
            report.max_drawdown = drawdown
            report.max_drawdown_pct = drawdown * 100 / peak
    report.trades = engine.portfolio.trades_closed
    report.realized_pnl = engine.portfolio.realized_total
    report.final_closed_equity = engine.portfolio.closed_equity
    return report


def plot_equity(report: BacktestReport, path: Path) -> None:
    """Closed and open equity per processed signal, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5))
    steps = range(len(report.curve))
    ax.plot(steps, [float(c) for _, c, _ in report.curve], label="closed equity")
    ax.plot(steps, [float(o) for _, _, o in report.curve], label="open equity", alpha=0.7)
    ax.set_xlabel("signal")
    ax.set_ylabel("equity (INR)")
    ax.set_title("pm-engine backtest equity curve")
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
