"""The daily report's text, from figures gathered elsewhere (``pm_engine.ops.daily_report``).

The figures are the ones ``pm-engine status --as-of`` and ``pm-engine report`` show for the same
day (the same functions produce them), so the phone and the terminal never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Optional

from pm_engine.notify.messages import _money, _when


@dataclass
class DailyReport:
    """One IST trading day: equity at its end, what it realized, what is open, what needs attention."""

    day: date
    as_of: datetime
    closed_equity: Optional[str] = None  # None: no history covers the day
    open_equity: Optional[str] = None
    total_risk_percent: Optional[str] = None
    realized_pnl: str = "0.00"
    trades: list[dict[str, Any]] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)
    signals: dict[str, int] = field(default_factory=dict)
    next_rolls: list[dict[str, Any]] = field(default_factory=list)  # per instrument and contract held, soonest first
    attention: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"day": self.day.isoformat(), "as_of": self.as_of.isoformat(), "closed_equity": self.closed_equity,
                "open_equity": self.open_equity, "total_risk_percent": self.total_risk_percent,
                "realized_pnl": self.realized_pnl, "trades": self.trades, "positions": self.positions,
                "signals": self.signals, "next_rolls": self.next_rolls, "attention": self.attention}

    def text(self) -> str:
        lines = [f"pm-engine daily report {self.day.isoformat()} (IST), as of {_when(self.as_of)}"]
        if self.closed_equity is None:
            lines.append("no history covers this day")
        else:
            lines.append(f"closed equity {_money(self.closed_equity)}, open equity {_money(self.open_equity)}, "
                         f"risk {self.total_risk_percent}%")
        lines.append(f"realized P&L {_money(self.realized_pnl)} in {len(self.trades)} trade(s)")
        for t in self.trades:
            lines.append(f"  {t['position_id']}: {t['lots']} lots, P&L {_money(t['realized_pnl'])} "
                         f"({t['exit_reason']})")
        if self.signals:
            lines.append("signals: " + ", ".join(f"{k} {v}" for k, v in sorted(self.signals.items())))
        lines.append(f"open positions: {len(self.positions)}")
        for p in self.positions:
            lines.append(f"  {p['position_id']}: {p['lots']} lots, entry {_money(p['entry_price'])}, "
                         f"stop {_money(p['current_stop'])}, unrealized {_money(p['unrealized_pnl'])}, "
                         f"risk {p['risk_pct']}%")
        lines.append("next rolls: " + ("; ".join(_roll(r) for r in self.next_rolls) if self.next_rolls else "none"))
        lines.append("needs attention: " + ("; ".join(self.attention) if self.attention else "nothing"))
        return "\n".join(lines)


def _roll(group: dict[str, Any]) -> str:
    """One position group's next roll: ``GOLD_MINI GOLDM05JAN27FUT (1 layer, 3 lots) 2026-12-31, in 29 days``."""
    layers = f"{group['layers']} layer{'s' if group['layers'] != 1 else ''}, {group['lots']} lots"
    if group["contract"] is None or group["roll_date"] is None:
        return f"{group['instrument']} ({layers}) no contract recorded"
    days = int(group["days_to_roll"])
    when = ("due now: roll date passed" if days < 0 else "due today" if days == 0 or group["roll_due"]
            else f"in {days} day{'s' if days != 1 else ''}")
    return f"{group['instrument']} {group['contract']} ({layers}) {group['roll_date']}, {when}"
