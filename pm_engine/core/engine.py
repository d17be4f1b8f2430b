"""LiveTradingEngine: one signal at a time through marks, stops, sizing, gates, orders and state.

Each signal is decided on a working copy of the portfolio (``PortfolioStateManager.clone``); its
effects — positions, pyramiding state, closed equity, metrics, broker orders and the signal's
outcome — become durable together (with a database: one atomic call that also claims the
fingerprint), and only then does the engine adopt the copy and send the orders to the broker.
Without a database the engine runs fully in memory and de-duplicates fingerprints itself
(backtests, the reference model).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, OrderedDict
from datetime import date, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Mapping, Optional

from pm_engine.core.capital import CapitalFlow, check_note
from pm_engine.core.contracts import Contract, ContractCalendar, ist_date
from pm_engine.core.errors import ConfigError, DatabaseUnavailableError, StaleVersionError
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS, InstrumentConfig, PortfolioConfig, with_lot_size
from pm_engine.core.market_hours import QueueNote, SendWindow
from pm_engine.core.models import Blocked, Duplicate, Outcome, Position, Signal, SignalResult, SignalType
from pm_engine.core.orders import BackgroundSender, Broker, Order, PaperBroker, client_order_id
from pm_engine.core.portfolio import PortfolioStateManager
from pm_engine.core.pyramiding import gate_reasons, pyramid_anomaly, size_pyramid
from pm_engine.core.replay.capital import apply_flow
from pm_engine.core.replay.controls import Controls
from pm_engine.core.signals import SignalValidationError, parse_signal
from pm_engine.core.sizing import one_lot_needs, portfolio_limit_reasons, position_risk, size_base_entry
from pm_engine.core.state_store import StateStore
from pm_engine.core.stops import stop_hit, trail

SEEN_LIMIT = 200_000
CONTENTION_WINDOW_S = 10.0  # after a stale decision, commit in guarded transactions for this long
MANUAL_EXIT_BAND = Decimal("0.05")  # a manual exit price within 5 % of the last mark, unless forced
log = logging.getLogger(__name__)


def money(value: Decimal) -> str:
    """Rupees and prices as text with two decimals (half-up), as the database stores them."""
    return str(value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP))


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class LiveTradingEngine:
    """Processes validated signals against the portfolio, in memory or on PostgreSQL."""

    def __init__(self, instruments: Optional[Mapping[str, InstrumentConfig]] = None,
                 config: Optional[PortfolioConfig] = None, broker: Optional[Broker] = None,
                 db_manager: Optional[StateStore] = None, instance_id: str = "local",
                 max_signal_age: Optional[timedelta] = timedelta(minutes=10),
                 clock: Callable[[], datetime] = utcnow,
                 fault: Callable[[str], None] = lambda point: None, send_in_background: bool = False,
                 controls: Optional[Controls] = None, contracts: Optional[ContractCalendar] = None,
                 mcx_quantity: str = "lots", window: Optional[SendWindow] = None) -> None:
        self.instruments = dict(instruments or DEFAULT_INSTRUMENTS)
        # which contract each entry trades (cached per instrument and date: the signal path computes no calendar)
        self.contracts = contracts or ContractCalendar(self.instruments)
        if mcx_quantity not in ("lots", "units"):
            raise ConfigError(f"mcx_quantity_unit must be lots or units, got {mcx_quantity!r}")
        # MCX order quantities: lots (OpenAlgo's Zerodha) or units (docs/domain.md#orders-through-openalgo)
        self.mcx_quantity = mcx_quantity
        self.config = config or PortfolioConfig()
        self.broker: Broker = broker or (db_manager.paper_broker() if db_manager else PaperBroker())
        self.db_manager = db_manager
        self.instance_id = instance_id
        self.max_signal_age = max_signal_age
        self.clock = clock
        self.fault = fault  # crash-test hook: called at named points ("after_commit"); a no-op in production
        # trading controls for an engine without a database (backtest --breakers); with one, the database
        # evaluates them inside pm.apply_signal and this is unused
        self.controls = controls
        # the broker sender's market hours and entry age (None: paper, or always open): an order of a closed
        # market is answered with what will happen to it, an entry that would expire unsent is blocked
        self.window = window
        self._pending_told: set[str] = set()  # queued orders send_pending has already logged
        # live engines send orders on a sender thread (the webhook answers once the signal is durable);
        # tests, backtests and tools send them inline
        self.sender = BackgroundSender(self.broker, self._send_failed) if send_in_background and db_manager else None
        self.portfolio = PortfolioStateManager(self.config, self.instruments, db_manager)
        self.seen: OrderedDict[str, None] = OrderedDict()  # fingerprints known to be logged
        self.outcomes: Counter[str] = Counter()
        self.last_signal_at: Optional[datetime] = None  # reported by the heartbeat
        self._contention_until = 0.0  # monotonic time until which other instances are known to commit
        self._lock = threading.Lock()

    # -- entry points --------------------------------------------------------------------------
    def parse(self, data: Mapping[str, Any], check_time: bool = True) -> Signal:
        """Validate a payload (raises SignalValidationError naming the field)."""
        now = self.clock() if check_time else None
        return parse_signal(data, self.instruments, now=now, max_age=self.max_signal_age if check_time else None)

    def process_payload(self, data: Mapping[str, Any], check_time: bool = True) -> SignalResult:
        return self.process_signal(self.parse(data, check_time))

    def process_signal(self, signal: Signal) -> SignalResult:
        """Decide, execute and persist one signal; a repeated fingerprint answers ``duplicate``."""
        with self._lock:
            result, orders = self._process_locked(signal)
            self.outcomes[result.outcome.value] += 1
        self._send(orders)  # committed already: sending needs no lock (and the outbox covers a crash here)
        return result

    def _process_locked(self, signal: Signal) -> tuple[SignalResult, list[Order]]:
        """Decide and commit; returns the result and the committed orders still to send."""
        if signal.fingerprint in self.seen:  # committed (or found committed) before: no round trip needed
            return self._duplicate(signal), []
        work = self.portfolio.clone()
        if self.db_manager is None and self.controls is not None:  # in memory: the same controls, in Python
            reason = self.controls.blocks(signal, self.portfolio)
            if reason is not None:
                self._known(signal.fingerprint)
                return SignalResult(Outcome.BLOCKED, reason, signal.fingerprint), []
        result = self._decide(signal, work)
        if self.db_manager is None:
            self._known(signal.fingerprint)
            self.portfolio.adopt(work)
            if self.controls is not None:
                self.controls.record(signal, result, self.portfolio)
            return result, work.orders

        def decide_again(state: Optional[dict[str, Any]]) -> tuple[SignalResult, PortfolioStateManager]:
            self._contention_until = time.monotonic() + CONTENTION_WINDOW_S
            return self._decide_on(state, signal)

        refused: Optional[Duplicate | Blocked] = None
        if time.monotonic() < self._contention_until:
            # other instances are committing: apply inside a transaction, so a stale decision is redone
            # under the row lock it already holds (2 round trips, whatever happens)
            done = self.db_manager.commit_signal_guarded(signal, result, work, decide_again, self.instance_id)
            if isinstance(done, (Duplicate, Blocked)):
                refused = done
            else:
                result, work = done
        else:
            try:
                refused = self.db_manager.commit_signal(signal, result, work, self.instance_id)
            except StaleVersionError as exc:
                # another instance moved the portfolio: decide again on its state under the portfolio's
                # lock, so the second decision cannot go stale (2 more round trips, no loop)
                self.portfolio.load(exc.state)
                self._contention_until = time.monotonic() + CONTENTION_WINDOW_S
                locked = self.db_manager.commit_signal_locked(signal, self.portfolio.version,
                                                              lambda state: self._decide_on(state, signal),
                                                              self.instance_id)
                if isinstance(locked, (Duplicate, Blocked)):
                    refused = locked
                else:
                    result, work = locked
        self._known(signal.fingerprint)
        if isinstance(refused, Duplicate):
            if refused.state is not None:  # another instance committed it and moved the book: follow now
                self.portfolio.load(refused.state)
            return self._duplicate(signal), []
        self.last_signal_at = utcnow()
        if isinstance(refused, Blocked):  # the trading controls refused it at commit: nothing of the decision stays
            return SignalResult(Outcome.BLOCKED, refused.reason, signal.fingerprint), []
        self.portfolio.adopt(work)
        self.fault("after_commit")
        return result, work.orders

    def _decide_on(self, state: Optional[dict[str, Any]],
                   signal: Signal) -> tuple[SignalResult, PortfolioStateManager]:
        """Decide on the state the database sent (None: the portfolio has not moved since ours)."""
        if state is not None:
            self.portfolio.load(state)
        work = self.portfolio.clone()
        return self._decide(signal, work), work

    def _known(self, fingerprint: str) -> None:
        """Remember a fingerprint the database has (bounded: the oldest are forgotten first).

        Safe because a logged fingerprint stays logged far longer than a signal stays acceptable
        (7-day retention against a 10-minute maximum age); a forgotten one just costs a round trip.
        """
        self.seen[fingerprint] = None
        if len(self.seen) > SEEN_LIMIT:
            self.seen.popitem(last=False)

    def _send(self, orders: list[Order]) -> None:
        """Send committed orders; on failure they stay 'pending' in the outbox for ``send_pending``."""
        if not orders:
            return
        if self.sender is not None:
            self.sender.submit(orders)
            return
        try:  # only a database-backed broker can be unavailable; the in-memory one never raises this
            self.broker.place_orders(orders)
        except DatabaseUnavailableError as exc:
            self._send_failed(orders, exc)

    @staticmethod
    def _send_failed(orders: list[Order], exc: Exception) -> None:
        log.warning("%d committed order(s) left pending (%s); recovery will send them", len(orders), exc)

    def flush_orders(self, timeout: float = 10.0) -> bool:
        """Wait for the background sender to send what it has (True at once when sending inline)."""
        return self.sender.flush(timeout) if self.sender is not None else True

    def close(self) -> None:
        """Stop the order sender (what it had not sent stays pending in the outbox)."""
        if self.sender is not None:
            self.sender.close()

    def send_pending(self, min_age_s: float = 0) -> int:
        """Send outbox orders committed at least ``min_age_s`` ago and never sent (recovery, the job leader)."""
        if self.db_manager is None:
            return 0
        orders = self.db_manager.pending_orders(min_age_s)
        if orders:
            fills = self.broker.place_orders(orders)
            self._tell_pending(orders, {f.client_order_id for f in fills})
        else:
            self._pending_told.clear()
        return len(orders)

    def _tell_pending(self, orders: list[Order], filled: set[str]) -> None:
        """Log what became of queued orders, once per order: the leader asks every few seconds, and an order
        waiting for its market (or for a broker sender) is still queued at every round."""
        waiting = {o.client_order_id for o in orders} - filled
        new = [o for o in orders if o.client_order_id not in self._pending_told]
        if new:
            done = sum(1 for o in new if o.client_order_id in filled)
            if done:
                log.warning("filled %d pending order(s) left by an interrupted instance", done)
            held = [o.client_order_id for o in new if o.client_order_id not in filled]
            if held:
                log.warning("%d queued order(s) wait for the broker sender (market hours, backoff, an engine "
                            "started with the broker; a layer traded at a broker is never paper-filled): %s",
                            len(held), ", ".join(held))
        self._pending_told = waiting  # bounded: only what is still queued is remembered

    @staticmethod
    def _duplicate(signal: Signal) -> SignalResult:
        return SignalResult(Outcome.DUPLICATE, "fingerprint already processed", signal.fingerprint)

    # -- decision ------------------------------------------------------------------------------
    def _decide(self, signal: Signal, work: PortfolioStateManager) -> SignalResult:
        self._update_stops(work, signal.instrument, signal.price, signal.atr)
        stopped = []
        if signal.type is not SignalType.EXIT:
            for position in work.open_layers(signal.instrument):
                if stop_hit(position, signal.price):
                    self._close(work, signal, position, "STOP_LOSS")
                    stopped.append(position.position_id)
        handler = {SignalType.BASE_ENTRY: self._handle_base_entry_live, SignalType.PYRAMID: self._handle_pyramid_live,
                   SignalType.EXIT: self._handle_exit_live}[signal.type]
        note = self._market_note(signal)
        if note is not None and not note.sendable:  # an entry the sender would expire unsent: not taken
            result = SignalResult(Outcome.BLOCKED, note.text, signal.fingerprint, {"market": "closed"})
        else:
            result = handler(signal, work)
            if note is not None and result.outcome is Outcome.EXECUTED and work.orders:
                result.reason = f"{note.text}; {result.reason}"
                result.details["queued"] = note.text
        if stopped:
            result.details["stopped_out"] = stopped
        return result

    def _market_note(self, signal: Signal) -> Optional[QueueNote]:
        """What the sender will do with this signal's order when its market is closed (None: open, or paper).

        Pure arithmetic on the engine's clock, the sender's hours and its entry age: no query on the signal path.
        """
        if self.window is None:
            return None
        spec = self.instruments[signal.instrument].contract
        return self.window.note(spec.exchange if spec else None, signal.type is not SignalType.EXIT, self.clock())

    def _update_stops(self, work: PortfolioStateManager, instrument: str, price: Decimal, atr: Decimal) -> None:
        """Mark the instrument at ``price`` and trail each of its open stops (never down)."""
        work.update_unrealized_pnl(instrument, price)
        config = self.instruments[instrument]
        for position in work.open_layers(instrument):
            if trail(position, price, atr, config):
                work.mark_dirty(position)

    def update_stops(self, instrument: str, price: Decimal, atr: Decimal) -> list[str]:
        """Trail an instrument's stops on a price update outside any signal; returns the changed ids."""
        with self._lock:
            work = self.portfolio.clone()
            self._update_stops(work, instrument, price, atr)
            changed = sorted(work.dirty_positions)
            if changed and self.db_manager is not None:
                self.db_manager.save_positions(work)
            self.portfolio.adopt(work)
            return changed

    def _orders(self, work: PortfolioStateManager, signal: Signal, position: Position, opening: bool,
                lots: int, stop: bool = False) -> Decimal:
        """Queue the orders that open (BUY) or close (SELL) ``lots`` of a position in the contract it holds.

        A futures position is one order; a synthetic one two legs of the same decision (opening: BUY the
        call, SELL the put; closing: the reverse, on the stored legs). Quantities are in the exchange's
        unit. Paper fills are at the signal's price, which this returns.
        """
        side = "BUY" if opening else "SELL"
        spec = self.instruments[position.instrument].contract
        if spec is None or position.futures_symbol is None:  # no contract known: the order names the instrument
            work.orders.append(Order(client_order_id(signal.fingerprint, position.position_id, stop=stop),
                                     signal.instrument, side, lots, signal.price, signal.fingerprint,
                                     position.position_id))
            return signal.price
        units = lots * (position.quantity // position.lots)
        quantity = lots if spec.exchange == "MCX" and self.mcx_quantity == "lots" else units
        if position.ce_symbol is not None and position.pe_symbol is not None:
            legs = [("CE", position.ce_symbol, side), ("PE", position.pe_symbol, "SELL" if opening else "BUY")]
        else:
            legs = [("FUT", position.futures_symbol, side)]
        for leg, symbol, leg_side in legs:
            work.orders.append(Order(client_order_id(signal.fingerprint, position.position_id, leg, stop),
                                     signal.instrument, leg_side, lots, signal.price, signal.fingerprint,
                                     position.position_id, exchange=spec.exchange, symbol=symbol,
                                     quantity=quantity, leg=leg,
                                     point_value=work.position_instrument(position).point_value))
        return signal.price

    def _handle_base_entry_live(self, signal: Signal, work: PortfolioStateManager) -> SignalResult:
        """Size with risk and margin (volatility too if configured), gate, order, open the base.

        The contract is the one new orders use on the signal's date (IST), so a replay of old alerts
        trades — and sizes with the lot size of — the contract of its day.
        """
        # layers left open without their base (an EXIT of Long_1 alone) keep the instrument on their contract
        held = next((p for p in work.open_layers(signal.instrument) if p.futures_symbol), None)
        contract = None if held is not None else self.contracts.for_time(signal.instrument, signal.timestamp)
        instrument = self.instruments[signal.instrument]
        if held is not None:
            instrument = work.position_instrument(held)
        elif contract is not None:
            instrument = with_lot_size(instrument, contract.lot_size)
        position_id = f"{signal.instrument}_{signal.position}"
        state = work.pyramiding.get(signal.instrument)
        if position_id in work.positions or (state is not None and state.base_position_id in work.positions):
            return SignalResult(Outcome.BLOCKED, f"base position already open for {signal.instrument}",
                                signal.fingerprint, {"anomaly": "entry_while_base_open"})
        assert signal.stop is not None
        equity = work.sizing_equity()
        metrics = work.metrics()
        sizing = size_base_entry(signal.price, signal.stop, signal.atr, signal.er, equity, metrics.margin_used,
                                 instrument, self.config)
        details: dict[str, Any] = {"lots": sizing.lots, "limiter": sizing.limiter,
                                   "constraints": {k: str(v) for k, v in sizing.constraints.items()}}
        if held is not None:
            details["contract"] = held.futures_symbol
        elif contract is not None:
            details["contract"] = contract.symbol
            if contract.warning:
                details["contract_warning"] = contract.warning
        if sizing.lots == 0:  # say what one lot would have needed (issue 28): the trader can act on that
            needs = one_lot_needs(sizing.limiter, signal.price, signal.stop, signal.atr, signal.er, equity,
                                  metrics.margin_used, instrument, self.config)
            return SignalResult(Outcome.BLOCKED, f"zero lots, limited by {sizing.limiter}: {needs}", signal.fingerprint,
                                details)
        reasons = portfolio_limit_reasons(metrics.total_risk, metrics.total_vol, sizing.risk_amount, sizing.vol_amount,
                                          equity, self.config.max_portfolio_risk_pct, self.config.max_portfolio_vol_pct)
        if reasons:
            return SignalResult(Outcome.BLOCKED, "; ".join(reasons), signal.fingerprint, details)
        position = self._new_position(signal, position_id, sizing.lots, sizing.limiter, sizing.risk_contribution,
                                      sizing.vol_contribution, instrument, base=True)
        if held is not None:
            self._hold_as(position, held, signal.price)
        else:
            self._hold(position, contract, signal.price)
        fill_price = self._orders(work, signal, position, True, sizing.lots)
        work.open_position(position)
        work.set_pyramiding(signal.instrument, fill_price, position_id)
        details["position_id"] = position_id
        named = f" ({position.futures_symbol})" if position.futures_symbol else ""
        return SignalResult(Outcome.EXECUTED, f"entered {sizing.lots} lots of {signal.instrument}{named} at "
                                              f"{fill_price}, limited by {sizing.limiter}", signal.fingerprint, details)

    def _hold(self, position: Position, contract: Optional[Contract], price: Decimal) -> None:
        """Record the contract a new base holds (and, for a synthetic one, its ATM strike and option legs)."""
        if contract is None:
            return
        position.futures_symbol, position.expiry = contract.symbol, contract.expiry.isoformat()
        position.contract_month = contract.contract_month
        if contract.execution == "synthetic":
            legs = self.contracts.synthetic_legs(contract.instrument, contract.expiry, price)
            position.strike, position.ce_symbol, position.pe_symbol = legs.strike, legs.ce_symbol, legs.pe_symbol

    def _hold_as(self, position: Position, other: Position, price: Decimal) -> None:
        """Record the contract ``other`` holds (a synthetic layer gets its own ATM strike on that expiry)."""
        position.futures_symbol, position.expiry, position.contract_month = (
            other.futures_symbol, other.expiry, other.contract_month)
        if other.ce_symbol is not None and other.expiry is not None:
            legs = self.contracts.synthetic_legs(position.instrument, date.fromisoformat(other.expiry), price)
            position.strike, position.ce_symbol, position.pe_symbol = legs.strike, legs.ce_symbol, legs.pe_symbol

    def _handle_pyramid_live(self, signal: Signal, work: PortfolioStateManager) -> SignalResult:
        """Gates 1-6 (every failing reason reported), size min(margin, geometric, risk budget), order.

        A pyramid trades the contract its base holds (never a second contract on one instrument), sized
        with that contract's lot size.
        """
        state = work.pyramiding.get(signal.instrument)
        base = work.positions.get(state.base_position_id) if state and state.base_position_id else None
        instrument = work.position_instrument(base) if base is not None else self.instruments[signal.instrument]
        layers = work.open_layers(signal.instrument)
        last_price = state.last_pyramid_price if state else None
        reasons = gate_reasons(signal.position, signal.price, signal.atr, base, last_price, layers, instrument,
                               self.config)
        details: dict[str, Any] = {}
        anomaly = pyramid_anomaly(signal.position, base, layers, instrument)
        if anomaly is not None:
            details["anomaly"] = anomaly
        if base is not None:
            assert signal.stop is not None
            equity = work.sizing_equity()
            metrics = work.metrics()
            pyramid_count = sum(1 for p in layers if not p.is_base_position)
            sizing = size_pyramid(signal.price, signal.stop, signal.atr, base, pyramid_count, equity,
                                  metrics.margin_used, instrument, self.config)
            details = {"lots": sizing.lots, "limiter": sizing.limiter,
                       "constraints": {k: str(v) for k, v in sizing.constraints.items()}}
            if sizing.lots == 0:
                reasons.append(f"zero lots, limited by {sizing.limiter}")
            else:
                reasons += portfolio_limit_reasons(metrics.total_risk, metrics.total_vol, sizing.risk_amount,
                                                   sizing.vol_amount, equity, self.config.pyramid_max_risk_pct,
                                                   self.config.pyramid_max_vol_pct)
        if reasons:
            return SignalResult(Outcome.BLOCKED, "; ".join(reasons), signal.fingerprint, details)
        assert base is not None
        position_id = f"{signal.instrument}_{signal.position}"
        position = self._new_position(signal, position_id, sizing.lots, sizing.limiter, sizing.risk_contribution,
                                      sizing.vol_contribution, instrument, base=False)
        self._hold_as(position, base, signal.price)
        if base.futures_symbol:
            details["contract"] = base.futures_symbol
        fill_price = self._orders(work, signal, position, True, sizing.lots)
        work.open_position(position)
        work.set_pyramiding(signal.instrument, fill_price, base.position_id)
        details["position_id"] = position_id
        return SignalResult(Outcome.EXECUTED, f"pyramided {sizing.lots} lots of {signal.instrument} at {fill_price}, "
                                              f"limited by {sizing.limiter}", signal.fingerprint, details)

    def _handle_exit_live(self, signal: Signal, work: PortfolioStateManager) -> SignalResult:
        """Close one layer or ALL; a layer already closed is a no-op (never a second P&L)."""
        layers = work.open_layers(signal.instrument)
        if signal.position != "ALL":
            position_id = f"{signal.instrument}_{signal.position}"
            layers = [p for p in layers if p.position_id == position_id]
            if not layers and position_id in work.closed:
                return SignalResult(Outcome.EXECUTED, f"no-op: {position_id} is already closed", signal.fingerprint,
                                    {"closed": [], "realized_pnl": "0"})
        if not layers:
            return SignalResult(Outcome.BLOCKED, f"position not found: no open {signal.instrument} {signal.position}",
                                signal.fingerprint, {"anomaly": "exit_never_open"})
        realized = Decimal(0)
        for position in layers:
            realized += self._close(work, signal, position, signal.reason or "SIGNAL")
        closed = [p.position_id for p in layers]
        return SignalResult(Outcome.EXECUTED, f"closed {', '.join(closed)} at {signal.price}, realized P&L {realized}",
                            signal.fingerprint, {"closed": closed, "realized_pnl": str(realized)})

    def _close(self, work: PortfolioStateManager, signal: Signal, position: Position, reason: str) -> Decimal:
        """Close a layer in the contract it holds (its stored legs for a synthetic one)."""
        fill_price = self._orders(work, signal, position, False, position.lots, stop=reason == "STOP_LOSS")
        return work.close_position(position.position_id, fill_price, signal.timestamp, reason)

    @staticmethod
    def _new_position(signal: Signal, position_id: str, lots: int, limiter: str, risk_contribution: Decimal,
                      vol_contribution: Decimal, instrument: InstrumentConfig, base: bool) -> Position:
        """A new layer at the signal's price (the paper fill), ``instrument`` as traded in its contract."""
        assert signal.stop is not None
        price = signal.price
        return Position(
            position_id=position_id, instrument=signal.instrument, entry_timestamp=signal.timestamp,
            entry_price=price, lots=lots, quantity=lots * instrument.lot_size, initial_stop=signal.stop,
            current_stop=signal.stop, highest_close=price, atr=signal.atr, is_base_position=base, limiter=limiter,
            risk_contribution=risk_contribution, vol_contribution=vol_contribution,
            initial_risk=position_risk(price, signal.stop, lots, instrument),
        )

    # -- operator actions ----------------------------------------------------------------------
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
            if self.db_manager is None:
                work = self.portfolio.clone()
                flow = apply_flow(work, kind, amount, note, recorded_by)
                self.portfolio.adopt(work)
                return flow
            row = self.db_manager.record_capital_flow(kind, amount, note, recorded_by)
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
        if self.db_manager is None:
            return False
        state = self.db_manager.state_if_moved(self.portfolio.version)
        if state is None:
            return False
        self.portfolio.load(state)
        return True

    def status(self, on: Optional[date] = None) -> dict[str, Any]:
        """Equity, metrics and open positions of the in-memory copy (GET /status renders it once proven current);
        days to expiry and roll counted from ``on`` (default today, IST)."""
        return render_status(self.portfolio, on)


def contract_view(p: PortfolioStateManager, x: Position, on: date) -> dict[str, Any]:
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


def render_status(p: PortfolioStateManager, on: Optional[date] = None) -> dict[str, Any]:
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
