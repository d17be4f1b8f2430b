"""Replay: run the live engine over a CSV of signals (``pm-engine backtest``).

The CSV header is the payload's field names; an empty cell is an absent field. The age check is
off (replay), repeated alerts are counted as duplicates, and a malformed row is reported with its
line number and skipped. A row of ``type`` DEPOSIT or WITHDRAWAL is a capital flow (its ``amount``,
optional ``note``), applied where it stands in the stream as the live book applies
``pm-engine capital``; a refused flow is reported and skipped like a malformed row.

Positions roll as they do live (docs/domain.md#rollover, ``core/rollover.py`` plans, ``core/replay/rollover.py``
rolls): before each signal, every group whose roll date (IST) has come moves to the next contract at its
mark, the last signal price of the instrument. A CSV has no second-contract prices, so the basis is 0
unless a row gives one in a ``roll_basis`` column (the latest value of the instrument applies to its next
roll). A group found past its contract's last trading day is not rolled, as live, and reported.
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TextIO

from tqdm import tqdm

from pm_engine.core.capital import CapitalRefusedError, parse_amount
from pm_engine.core.contracts import ist_date
from pm_engine.core.engine import TradingEngine
from pm_engine.core.models import Outcome
from pm_engine.core.replay.rollover import roll_in_memory
from pm_engine.core.replay.statistics import closed_trade, trade_stats
from pm_engine.core.rollover import RollPlanError, plan_roll
from pm_engine.core.signals import SignalValidationError, parse_timestamp
from pm_engine.core.statistics import Trade, as_json

NUMERIC_FIELDS = {"price", "stop", "lots", "atr", "er", "supertrend", "roc"}
NOT_PAYLOAD = ("roll_basis",)  # replay-only columns
FLOW_TYPES = {"DEPOSIT": "deposit", "WITHDRAWAL": "withdrawal"}


@dataclass
class BacktestReport:
    """What a replay produced: outcomes, trades, equity curve, statistics (docs/domain.md#history-and-statistics)."""

    outcomes: dict[str, int] = field(default_factory=dict)
    malformed: list[str] = field(default_factory=list)
    signals: list[dict[str, Any]] = field(default_factory=list)  # every processed row: line, fingerprint, outcome
    trades: list[Trade] = field(default_factory=list)
    initial_capital: Decimal = Decimal(0)
    final_closed_equity: Decimal = Decimal(0)
    # (bar time, closed, open, flow) after each committed signal or capital flow (flow 0 for a signal),
    # starting with the equity before the first
    curve: list[tuple[Optional[datetime], Decimal, Decimal, Decimal]] = field(default_factory=list)
    flows: list[dict[str, Any]] = field(default_factory=list)  # every applied flow: line, kind, amount, equity after
    open_positions: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    rolls: list[dict[str, Any]] = field(default_factory=list)  # every roll: instrument, contracts, when, layers

    @property
    def realized_pnl(self) -> Decimal:
        return sum((t.pnl for t in self.trades), Decimal(0))

    @property
    def max_drawdown(self) -> Decimal:
        return Decimal(self.stats.get("max_drawdown", 0))

    def summary(self) -> str:
        lines = ["signals by outcome: " + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items())),
                 f"malformed rows skipped: {len(self.malformed)}",
                 f"final closed equity: {self.final_closed_equity:,.2f} (initial {self.initial_capital:,.2f})",
                 stats_table(self.stats)]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` document: the statistics keys of pm.trade_stats, every signal's outcome, the open book."""
        return as_json({**self.stats, "signals": self.signals, "flows": self.flows, "rolls": self.rolls,
                        "open_positions": self.open_positions, "malformed": self.malformed})


def stats_table(stats: dict[str, Any]) -> str:
    """The statistics as an aligned two-column table (``pm-engine report`` and ``backtest`` print it)."""
    labels = [("trades", "trades (closed positions)"), ("wins", "wins"), ("losses", "losses"),
              ("win_rate", "win rate %"), ("gross_profit", "gross profit"), ("gross_loss", "gross loss"),
              ("net_pnl", "net P&L (realized)"), ("profit_factor", "profit factor"),
              ("expectancy", "expectancy per trade"),
              ("mean_r", "mean R"), ("total_slippage", "slippage (total)"),
              ("mean_slippage", "slippage per trade"), ("max_drawdown", "max drawdown (closed equity)"),
              ("max_drawdown_pct", "max drawdown %"), ("max_open_drawdown", "max drawdown (open equity)"),
              ("max_open_drawdown_pct", "max open drawdown %"), ("final_closed_equity", "final closed equity"),
              ("deposits", "deposits"), ("withdrawals", "withdrawals"), ("net_flows", "net capital flows"),
              ("time_weighted_return", "time-weighted return %")]
    rows = [f"{label:<30} {'-' if stats.get(key) is None else stats[key]:>16}" for key, label in labels]
    for name, figures in sorted(stats.get("by_instrument", {}).items()):
        rows.append(f"  {name:<28} trades {figures['trades']:>4}  net {figures['net_pnl']:>14}  "
                    f"win rate {'-' if figures['win_rate'] is None else figures['win_rate']:>7}  "
                    f"PF {'-' if figures['profit_factor'] is None else figures['profit_factor']:>8}")
    return "\n".join(rows)


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


def run_backtest(path: Path, engine: Optional[TradingEngine] = None, progress: Optional[bool] = None,
                 err: TextIO = sys.stderr,
                 before_signal: Optional[Callable[[datetime], None]] = None) -> BacktestReport:
    """Replay ``path``. ``before_signal(bar time)`` replaces the in-memory rolls (a replay through the
    database rolls there, with the clock injected); without it an in-memory engine rolls in memory."""
    engine = engine or TradingEngine(max_signal_age=None)
    report = BacktestReport(initial_capital=engine.portfolio.initial_capital)
    try:
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SystemExit(f"backtest: cannot read {path}: {exc}") from None
    show = err.isatty() if progress is None else progress
    report.curve.append((None, engine.portfolio.closed_equity, engine.portfolio.open_equity(), Decimal(0)))
    replayed: list[Any] = []
    basis: dict[str, Decimal] = {}
    for number, row in enumerate(tqdm(rows, desc="replaying", unit="signal", disable=not show, file=err), start=2):
        kind = FLOW_TYPES.get((row.get("type") or "").strip().upper())
        if kind is not None:
            _replay_flow(engine, report, number, kind, row, err)
            continue
        try:
            signal = engine.parse(row_to_payload({k: v for k, v in row.items() if k not in NOT_PAYLOAD}),
                                  check_time=False)
        except SignalValidationError as exc:
            report.malformed.append(f"line {number}: {exc}")
            print(f"backtest: line {number} skipped: {exc}", file=err)
            continue
        if (row.get("roll_basis") or "").strip():
            basis[signal.instrument] = Decimal(str(row["roll_basis"]).strip())
        if before_signal is not None:
            before_signal(signal.timestamp)
        elif engine.store is None:
            roll_due(engine, signal.timestamp, basis, report, err)
        result = engine.process_signal(signal)
        replayed.append(signal)
        outcome = result.outcome.value
        report.outcomes[outcome] = report.outcomes.get(outcome, 0) + 1
        report.signals.append({"line": number, "fingerprint": signal.fingerprint, "type": signal.type.value,
                               "instrument": signal.instrument, "position": signal.position, "outcome": outcome,
                               "reason": result.reason})
        if result.outcome is Outcome.DUPLICATE:
            continue  # nothing committed: no equity point (as in the database's history)
        portfolio = engine.portfolio
        for position_id in [*result.details.get("stopped_out", []), *result.details.get("closed", [])]:
            report.trades.append(closed_trade(portfolio.closed[position_id]))
        report.curve.append((signal.timestamp, portfolio.closed_equity, portfolio.open_equity(), Decimal(0)))
    report.final_closed_equity = engine.portfolio.closed_equity
    last = next((s.timestamp for s in reversed(replayed)), None)
    report.open_positions = engine.status(ist_date(last) if last else None)["positions"]  # days as of the last bar
    report.stats = trade_stats(report.trades, [(c, o, f) for _, c, o, f in report.curve], report.initial_capital)
    return report


def roll_due(engine: TradingEngine, when: datetime, basis: dict[str, Decimal], report: BacktestReport,
             err: TextIO = sys.stderr) -> None:
    """Roll, in memory, every group whose roll date has come by ``when`` (at its mark, plus its basis)."""
    portfolio = engine.portfolio
    on = ist_date(when)
    for instrument in sorted({p.instrument for p in portfolio.positions.values() if p.status == "open"}):
        try:
            plan = plan_roll(portfolio, engine.contracts, instrument, mcx_quantity=engine.mcx_quantity)
        except RollPlanError:
            continue  # no contract recorded (a custom instrument): nothing to roll
        if not plan.due(on):
            continue
        if plan.expired(on):
            print(f"backtest: {instrument} still holds {plan.from_symbol} past its expiry {plan.expiry}: not rolled",
                  file=err)
            continue
        mark = portfolio.marks.get(instrument, plan.layers[0].price)
        layers = roll_in_memory(portfolio, plan, mark, mark + basis.get(instrument, Decimal(0)), when)
        portfolio.version += 1
        report.rolls.append({"instrument": instrument, "from_symbol": plan.from_symbol, "to_symbol": plan.to.symbol,
                             "at": when, "layers": layers})
        report.curve.append((when, portfolio.closed_equity, portfolio.open_equity(), Decimal(0)))


def _runner() -> str:
    """Who a replayed flow is recorded as: the user running the backtest, in the checked form ``cli:user@host``
    (pm.check_principal refuses free text, so a replay against a database is recorded like a CLI flow)."""
    import getpass
    import os
    import re
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): the number will do
        user = str(os.getuid())
    clean = lambda text: re.sub(r"[^A-Za-z0-9._-]", "_", text)[:40] or "_"  # noqa: E731 - the form's characters
    return f"cli:{clean(user)}@{clean(socket.gethostname())}"


def _replay_flow(engine: TradingEngine, report: BacktestReport, number: int, kind: str,
                 row: dict[str, Optional[str]], err: TextIO) -> None:
    """A DEPOSIT or WITHDRAWAL row: applied through the engine (so through the database when it has one)."""
    try:
        flow = engine.capital_flow(kind, parse_amount(row.get("amount")), row.get("note"), _runner())
    except CapitalRefusedError as exc:
        report.malformed.append(f"line {number}: {exc}")
        print(f"backtest: line {number} skipped: {exc}", file=err)
        return
    when: Optional[datetime] = None
    if (row.get("timestamp") or "").strip():
        try:
            when = parse_timestamp(str(row["timestamp"]))
        except SignalValidationError:
            when = None  # a flow's time only places it on the plot
    portfolio = engine.portfolio
    report.flows.append({"line": number, "kind": kind, "amount": flow.amount, "note": flow.note,
                         "closed_equity": flow.closed_equity})
    report.curve.append((when, portfolio.closed_equity, portfolio.open_equity(), flow.signed_amount))


def write_trades_csv(trades: list[Trade], path: Path) -> None:
    """The trade list as CSV, one closed position per row (the columns of pm.trades)."""
    names = list(Trade.__dataclass_fields__)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        for trade in trades:
            writer.writerow({k: ("" if v is None else v) for k, v in as_json(trade).items()})


def plot_equity(points: Sequence[Sequence[Any]], path: Path, title: str) -> None:
    """Closed and open equity, the closed-equity drawdown shaded, written as a PNG.

    The x axis is time when every point has one, else the point's number (a backtest's first point,
    the equity before any signal, has no time of its own). Points are (time, closed, open[, flow]).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    closed = [float(p[1]) for p in points]
    opened = [float(p[2]) for p in points]
    # the drawdown is the trading curve's (docs/domain.md#capital-flows): the running peak of equity minus the
    # net flows so far, put back in today's money, so a withdrawal is not shaded as a loss
    flows = [float(p[3]) if len(p) > 3 and p[3] is not None else 0.0 for p in points]
    net = [sum(flows[:i + 1]) for i in range(len(flows))]
    trading = [c - n for c, n in zip(closed, net)]
    peaks = [max(trading[:i + 1]) + net[i] for i in range(len(trading))]
    times = [p[0] for p in points]
    xs: Sequence[Any] = times if times and all(t is not None for t in times) else range(len(points))
    fig, ax = plt.subplots(figsize=(10, 5))
    ax.plot(xs, closed, label="closed equity", drawstyle="steps-post")
    ax.plot(xs, opened, label="open equity", alpha=0.7)
    ax.fill_between(xs, closed, peaks, step="post", color="tab:red", alpha=0.25, label="drawdown (closed)")
    ax.set_xlabel("time" if xs is times else "signal")
    ax.set_ylabel("equity (INR)")
    ax.set_title(title)
    ax.legend()
    ax.grid(True, alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
