"""The trader's actions on the engine outside a signal, and its reporting: manual exits, capital flows, status.

A manual exit goes the same path as an EXIT alert (``process_signal``); a capital flow is decided
by the store (pm.record_capital_flow) or, in memory, by ``core.replay.capital.apply_flow``; status renders
the in-memory copy once it is proven current (``core.status``).
"""

from __future__ import annotations

import threading
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Callable, Mapping, Optional

from pm_engine.core.capital import CapitalFlow, check_note
from pm_engine.core.instruments import InstrumentConfig
from pm_engine.core.models import Signal, SignalResult
from pm_engine.core.portfolio import Book
from pm_engine.core.replay.capital import apply_flow
from pm_engine.core.signals import SignalValidationError
from pm_engine.core.state_store import Gateway
from pm_engine.core.status import render_status

MANUAL_EXIT_BAND = Decimal("0.05")  # a manual exit price within 5 % of the last mark, unless forced


class OperatorActions:
    """The TradingEngine's operator actions and reporting (a mixin: the engine owns the attributes below)."""

    instruments: dict[str, InstrumentConfig]
    portfolio: Book
    store: Optional[Gateway]
    clock: Callable[[], datetime]
    _lock: threading.Lock

    def parse(self, data: Mapping[str, Any], check_time: bool = True) -> Signal:  # pragma: no cover - the engine's
        raise NotImplementedError

    def process_signal(self, signal: Signal) -> SignalResult:  # pragma: no cover - the engine's
        raise NotImplementedError

    def manual_exit(self, instrument: str, layer: str = "ALL", price: Optional[Decimal] = None,
                    reason: str = "", force: bool = False) -> SignalResult:
        """Close a layer (or ALL) by the same path as an EXIT alert: one transaction, a fingerprint of its own
        (the instrument, layer and this second), reason ``MANUAL: …``, orders through the outbox.

        The price defaults to the instrument's last mark; a price given must lie within
        ``MANUAL_EXIT_BAND`` (5 %) of that mark unless ``force`` (the CLI's ``--force``; never over HTTP),
        so a mistyped or hostile price cannot book an arbitrary P&L (a broker exit fills at the market
        anyway). Raises SignalValidationError naming the field when the instrument, layer, price or
        reason is wrong, or when nothing is open to close.
        """
        self.refresh()  # the position may have been opened by another instance
        instrument = instrument.strip().upper()
        if instrument not in self.instruments:
            raise SignalValidationError("instrument", f"unknown instrument {instrument!r}")
        layers = [p for p in self.portfolio.open_layers(instrument) if layer == "ALL" or p.layer == layer]
        if not layers:
            raise SignalValidationError("position", f"no open {instrument} {layer} to exit")
        mark = self.portfolio.marks.get(instrument, layers[0].entry_price)
        if price is not None and (not price.is_finite() or price <= 0):
            raise SignalValidationError("price", "must be a positive number")
        if price is not None and not force and abs(price - mark) > mark * MANUAL_EXIT_BAND:
            raise SignalValidationError("price", f"{price} is more than {MANUAL_EXIT_BAND:.0%} from the last mark "
                                                 f"{mark} (leave it out to exit at the mark; the CLI has --force)")
        price = mark if price is None else price
        if not reason.strip():
            raise SignalValidationError("reason", "is required")
        payload = {"type": "EXIT", "instrument": instrument, "position": layer, "price": float(price),
                   "lots": sum(p.lots for p in layers), "atr": 0, "er": 0, "supertrend": float(price),
                   "reason": f"MANUAL: {reason.strip()}", "timestamp": self.clock().isoformat()}
        return self.process_signal(self.parse(payload))

    def capital_flow(self, kind: str, amount: Decimal, note: Optional[str] = None,
                     recorded_by: str = "backtest") -> CapitalFlow:
        """A deposit or withdrawal (docs/domain.md#capital-flows): closed equity, and sizing, move now.

        With a database pm.record_capital_flow decides and records it (every instance sees the
        portfolio version move), and this copy follows at once; in memory ``apply_flow`` does the
        same. Raises core.capital's CapitalRefusedError (nothing changed) for a refused flow.
        """
        check_note(note)  # before the database: a NUL or a lone surrogate would fail there as a 500
        with self._lock:
            if self.store is None:
                work = self.portfolio.clone()
                flow = apply_flow(work, kind, amount, note, recorded_by)
                self.portfolio.adopt(work)
                return flow
            row = self.store.capital.record_capital_flow(kind, amount, note, recorded_by)
            self._refresh_locked()
            return CapitalFlow(row["kind"], Decimal(row["amount"]), row["note"], row["recorded_by"],
                               Decimal(row["closed_equity"]))

    # -- reporting -----------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Prove the in-memory portfolio current, or reload it, in one round trip; True if it had moved.

        Called by the heartbeat (another instance may have moved the book since this one's last
        signal). Without a database the memory is the book itself.
        """
        with self._lock:
            return self._refresh_locked()

    def current_status(self) -> dict[str, Any]:
        """``status()`` of the book as the database has committed it, whoever committed it.

        One round trip (pm.state_if_moved with this copy's version) before rendering: the copy is
        either proven current or replaced by the committed state.
        """
        with self._lock:
            self._refresh_locked()
            return self.status()

    def _refresh_locked(self) -> bool:
        """Under the processing lock, so a refresh never replaces a newer copy a signal is adopting."""
        if self.store is None:
            return False
        state = self.store.book.state_if_moved(self.portfolio.version)
        if state is None:
            return False
        self.portfolio.load(state)
        return True

    def status(self, on: Optional[date] = None) -> dict[str, Any]:
        """Equity, metrics and open positions of the in-memory copy (GET /status renders it once proven current);
        days to expiry and roll counted from ``on`` (default today, IST)."""
        return render_status(self.portfolio, on)
