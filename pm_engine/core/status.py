"""What the book looks like to people: the body of GET /status and ``pm-engine status``.

Rendering only: money as text with two decimals, the contract each position holds, days to its
expiry and roll date. The engine decides; this module renders what it decided.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Optional

from pm_engine.core.contracts import ist_date
from pm_engine.core.models import Position
from pm_engine.core.portfolio import Book


def money(value: Decimal) -> str:
    """Rupees and prices as text with two decimals (half-up), as the database stores them."""
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def contract_view(p: Book, x: Position, on: date) -> dict[str, Any]:
    """The contract a position holds, for people: symbol, expiry, days to expiry, roll date and whether it is due.

    The roll date is the expiry minus the instrument's roll offset (docs/domain.md#contracts-and-expiry); on or after
    it the position should have been rolled, so ``roll_due`` flags it. Nones for a position entered
    before contracts were recorded.
    """
    spec = p.instruments[x.instrument].contract if x.instrument in p.instruments else None
    view: dict[str, Any] = {"contract": x.futures_symbol, "exchange": spec.exchange if spec else None,
                            "expiry": x.expiry, "contract_month": x.contract_month, "days_to_expiry": None,
                            "roll_date": None, "days_to_roll": None, "roll_due": False}
    if x.expiry is not None:
        expiry = date.fromisoformat(x.expiry)
        view["days_to_expiry"] = (expiry - on).days
        if spec is not None:
            roll = expiry - timedelta(days=spec.roll_days)
            view.update(roll_date=roll.isoformat(), days_to_roll=(roll - on).days, roll_due=on >= roll)
    if x.ce_symbol is not None:
        view.update(strike=x.strike, ce_symbol=x.ce_symbol, pe_symbol=x.pe_symbol)
    return view


def render_status(p: Book, on: Optional[date] = None) -> dict[str, Any]:
    """The body of GET /status for a portfolio: equity, metrics, open positions (with the contract each
    holds, days counted from ``on``, default today in IST), pyramiding state."""
    metrics = p.metrics()
    on = on or ist_date(utcnow())
    return {
        "closed_equity": money(p.closed_equity), "open_equity": money(p.open_equity()),
        "blended_equity": money(p.blended_equity()), "unrealized_pnl": money(p.unrealized()),
        "equity_high": money(p.equity_high), "total_risk_percent": str(metrics.risk_percent),
        "total_vol_percent": str(metrics.vol_percent), "margin_used": money(metrics.margin_used),
        "positions": [
            {"position_id": x.position_id, "instrument": x.instrument, "layer": x.layer, "status": x.status,
             "lots": x.lots, "symbol": x.futures_symbol, "entry_price": money(x.entry_price),
             "signal_price": money(x.signal_price if x.signal_price is not None else x.entry_price),
             "initial_stop": money(x.initial_stop),
             "current_stop": money(x.current_stop), "highest_close": money(x.highest_close),
             "unrealized_pnl": money(x.unrealized_pnl), "is_base_position": x.is_base_position,
             "limiter": x.limiter, "mark": money(view["mark"]), "risk_pct": str(view["risk_pct"]),
             "distance_to_stop_r": None if view["distance_to_stop_r"] is None else str(view["distance_to_stop_r"]),
             "quantity": x.quantity, "rollover_status": x.rollover_status, "rollover_count": x.rollover_count,
             "rollover_pnl": money(x.rollover_pnl), **contract_view(p, x, on)}
            for x in p.open_layers_all() for view in [p.layer_view(x)]
        ],
        "pyramiding": [
            {"instrument": name, "base_position_id": state.base_position_id,
             "last_pyramid_price": None if state.last_pyramid_price is None else money(state.last_pyramid_price),
             "pyramids": sum(1 for x in p.open_layers(name) if not x.is_base_position)}
            for name, state in sorted(p.pyramiding.items())
        ],
    }
