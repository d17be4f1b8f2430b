"""Trade statistics (docs/domain.md#history-and-statistics) for a backtest: the Python twin of
``db/functions/95_statistics.sql``.

SQL twin: ``pm.trades`` (``closed_trade``), ``pm.trade_figures``, ``pm.drawdown``, ``pm.trade_stats``,
``pm.pnl_by_period`` and ``pm.time_weighted_return`` (``db/functions/64_capital.sql``). The database is
the authority; a replay has none, so this module computes the same figures in the same order.
``tests/db/test_twins.py`` feeds both sides the same trade lists and series and requires equal
results; ``tests/integration/test_history.py`` replays one stream both ways and compares every key.
Roundings (ROUND_HALF_UP, as PostgreSQL's ``round`` on numeric): money to 2 decimals; R multiples,
profit factor and drawdown percentages to 4; the win rate, a percentage, to 2. Ratios with nothing
to divide by are None, never an error.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Iterable, Optional, Sequence

from pm_engine.core.models import Position
from pm_engine.core.signals import IST
from pm_engine.core.statistics import Trade, in_exit_order

CENT = Decimal("0.01")
BASIS = Decimal("0.0001")
TWELVE = Decimal("1e-12")  # the time-weighted return's ratios and running product
PERIODS = ("day", "week", "month")


def _round(value: Decimal, step: Decimal) -> Decimal:
    return value.quantize(step, rounding=ROUND_HALF_UP)


def closed_trade(p: Position) -> Trade:
    """One closed position as ``pm.trades`` lists it (a rolled position is one trade)."""
    assert p.exit_timestamp is not None and p.exit_price is not None, "a trade is a closed position"
    risk = p.initial_risk
    pnl = p.realized_pnl + p.rollover_pnl  # a rolled position is one trade: its contracts' P&L summed
    entry = p.original_entry_price if p.original_entry_price is not None else p.entry_price
    return Trade(p.instrument, p.position_id.split("@")[0], "base" if p.is_base_position else "pyramid",
                 p.entry_timestamp, entry, p.exit_timestamp, p.exit_price, p.lots, pnl, risk,
                 _round(pnl / risk, BASIS) if risk else None, p.exit_timestamp - p.entry_timestamp,
                 p.exit_reason)


def trade_figures(trades: Sequence[Trade]) -> dict[str, Any]:
    """trades, wins, losses, win_rate (%), gross_profit, gross_loss (positive), net_pnl, profit_factor,
    expectancy (₹ per trade), mean_r (of the trades whose initial risk is known), total_slippage and
    mean_slippage (₹, per trade; a backtest fills at the signal's price, so both are zero)."""
    n = len(trades)
    wins = sum(1 for t in trades if t.pnl > 0)
    losses = sum(1 for t in trades if t.pnl < 0)
    gross_profit = _round(sum((t.pnl for t in trades if t.pnl > 0), Decimal(0)), CENT)
    gross_loss = _round(-sum((t.pnl for t in trades if t.pnl < 0), Decimal(0)), CENT)
    net = _round(sum((t.pnl for t in trades), Decimal(0)), CENT)
    rs = [t.r_multiple for t in trades if t.r_multiple is not None]
    slippage = sum((t.slippage for t in trades if t.slippage is not None), Decimal(0))
    return {
        "trades": n, "wins": wins, "losses": losses,
        "win_rate": _round(Decimal(100) * wins / n, CENT) if n else None,
        "gross_profit": gross_profit, "gross_loss": gross_loss, "net_pnl": net,
        "profit_factor": _round(gross_profit / gross_loss, BASIS) if gross_loss else None,
        "expectancy": _round(net / n, CENT) if n else None,
        "mean_r": _round(sum(rs, Decimal(0)) / len(rs), BASIS) if rs else None,
        "total_slippage": _round(slippage, CENT), "mean_slippage": _round(slippage / n, CENT) if n else None,
    }


def drawdown(series: Iterable[Decimal], base: Decimal = Decimal(0)) -> tuple[Decimal, Decimal]:
    """The largest fall from the running peak, and that fall as % of (base + the peak it fell from)."""
    peak: Optional[Decimal] = None
    worst, worst_at = Decimal(0), Decimal(0)
    for value in series:
        if peak is None or value > peak:
            peak = value
        if peak - value > worst:
            worst, worst_at = peak - value, peak
    return _round(worst, CENT), _round(100 * worst / (base + worst_at), BASIS) if worst else _round(Decimal(0), BASIS)


def time_weighted_return(points: Sequence[tuple[Decimal, Decimal]]) -> Optional[Decimal]:
    """The return of a closed-equity series with flows, ``(equity, flow)`` in order (the first point is the
    start; its flow is ignored), each sub-period between flows chained: the product over sub-periods of
    (equity before the flow / equity after the previous one), minus 1, in % to 4 decimals. Ratios and
    the running product are rounded to 12 decimals, as pm.time_weighted_return does. None when a
    sub-period starts at zero equity, or there is no point."""
    if not points:
        return None
    growth, base = Decimal(1), points[0][0]
    for equity, flow in points[1:]:
        if flow:
            if base <= 0:
                return None
            growth = _round(growth * _round((equity - flow) / base, TWELVE), TWELVE)
            base = equity
    if base <= 0:
        return None
    growth = _round(growth * _round(points[-1][0] / base, TWELVE), TWELVE)
    return _round(100 * (growth - 1), BASIS)


def trade_stats(trades: Iterable[Trade], curve: Sequence[Sequence[Decimal]],
                initial_capital: Decimal) -> dict[str, Any]:
    """The statistics of pm.trade_stats: ``curve`` is the (closed, open[, flow]) equity after each commit
    (a signal, or a capital flow with its signed amount), starting with the equity in force before the first.

    Flows (docs/domain.md#capital-flows) stay out of the trade figures; drawdowns are taken on the trading
    curve (equity minus the net flows so far); deposits, withdrawals and net_flows are those of the
    points after the first, and time_weighted_return chains the sub-periods between them.
    """
    ordered = in_exit_order(trades)
    flows = [p[2] if len(p) > 2 else Decimal(0) for p in curve]
    cumulative, running = [], Decimal(0)
    for flow in flows:
        running += flow
        cumulative.append(running)
    closed_dd, closed_pct = drawdown(p[0] - c for p, c in zip(curve, cumulative))
    open_dd, open_pct = drawdown(p[1] - c for p, c in zip(curve, cumulative))
    inside = flows[1:]
    stats = trade_figures(ordered)
    stats.update(max_drawdown=closed_dd, max_drawdown_pct=closed_pct, max_open_drawdown=open_dd,
                 max_open_drawdown_pct=open_pct,
                 final_closed_equity=_round(curve[-1][0], CENT) if curve else None,
                 deposits=_round(sum((f for f in inside if f > 0), Decimal(0)), CENT),
                 withdrawals=_round(-sum((f for f in inside if f < 0), Decimal(0)), CENT),
                 net_flows=_round(sum(inside, Decimal(0)), CENT),
                 time_weighted_return=time_weighted_return([(p[0], f) for p, f in zip(curve, flows)]))
    by_instrument: dict[str, Any] = {}
    for name in sorted({t.instrument for t in ordered}):
        mine = [t for t in ordered if t.instrument == name]
        series, total = [Decimal(0)], Decimal(0)
        for t in mine:
            total += t.pnl
            series.append(total)
        amount, pct = drawdown(series, initial_capital)
        by_instrument[name] = {**trade_figures(mine), "max_drawdown": amount, "max_drawdown_pct": pct,
                               "max_open_drawdown": None, "max_open_drawdown_pct": None, "final_closed_equity": None,
                               "deposits": None, "withdrawals": None, "net_flows": None,
                               "time_weighted_return": None}
    stats["by_instrument"] = by_instrument
    return stats


def period_start(when: datetime, period: str) -> date:
    """The IST calendar day, week (Monday first) or month a time falls in."""
    day = when.astimezone(IST).date()
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def pnl_by_period(trades: Iterable[Trade], period: str, initial_capital: Decimal,
                  flows: Iterable[tuple[datetime, Decimal]] = ()) -> list[dict[str, Any]]:
    """Realized P&L, trades, net capital flows and closing equity per period, as pm.pnl_by_period.

    ``flows`` are the ledger's (time, signed amount): + a deposit, - a withdrawal. Closing equity is
    initial capital + the P&L closed by the period's end + the flows recorded by then, so each period
    starts from the equity after the flows before it (the book's closed equity, not initial capital
    plus trading alone). A period with only a flow is listed, with no trades.
    """
    if period not in PERIODS:
        raise ValueError(f"period must be day, week or month, got {period}")
    rows: dict[date, dict[str, Any]] = {}

    def row(when: datetime) -> dict[str, Any]:
        return rows.setdefault(period_start(when, period),
                               {"realized_pnl": CENT * 0, "trades": 0, "net_flows": CENT * 0})

    for t in in_exit_order(trades):
        mine = row(t.exit_time)
        mine["realized_pnl"] += t.pnl
        mine["trades"] += 1
    for when, amount in flows:
        row(when)["net_flows"] += amount
    out, equity = [], initial_capital
    for start in sorted(rows):
        equity += rows[start]["realized_pnl"] + rows[start]["net_flows"]
        out.append({"period_start": start, **rows[start], "closing_equity": equity})
    return out
