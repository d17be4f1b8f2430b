"""TradingEngine: one signal at a time through marks, stops, sizing, gates, orders and state.

The same engine trades live (with a store: PostgreSQL) and backtests (without one: in memory).
Each signal is decided on a working copy of the book (``Book.clone``); its
effects — positions, pyramiding state, closed equity, metrics, broker orders and the signal's
outcome — become durable together (with a database: one atomic call that also claims the
fingerprint), and only then does the engine adopt the copy and send the orders to the broker.
Without a database the engine runs fully in memory and de-duplicates fingerprints itself
(backtests, the reference model).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, OrderedDict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Callable, Mapping, Optional

from pm_engine.core.contracts import Contract, ContractCalendar
from pm_engine.core.errors import ConfigError
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS, InstrumentConfig, PortfolioConfig, with_lot_size
from pm_engine.core.market_hours import QueueNote, SendWindow
from pm_engine.core.operator import OperatorActions
from pm_engine.core.models import Blocked, Duplicate, Outcome, Position, Signal, SignalResult, SignalType
from pm_engine.core.orders import BackgroundSender, Broker, Order, PaperBroker, client_order_id
from pm_engine.core.outbox_sending import OutboxSending
from pm_engine.core.portfolio import Book
from pm_engine.core.pyramiding import gate_reasons, pyramid_anomaly, size_pyramid
from pm_engine.core.replay.controls import Controls
from pm_engine.core.signals import parse_signal
from pm_engine.core.sizing import one_lot_needs, portfolio_limit_reasons, position_risk, size_base_entry
from pm_engine.core.state_store import Gateway
from pm_engine.core.status import utcnow
from pm_engine.core.stops import stop_hit, trail

SEEN_LIMIT = 200_000
log = logging.getLogger(__name__)


class TradingEngine(OperatorActions, OutboxSending):
    """Processes validated signals against the portfolio, in memory or on PostgreSQL."""

    def __init__(self, instruments: Optional[Mapping[str, InstrumentConfig]] = None,
                 config: Optional[PortfolioConfig] = None, broker: Optional[Broker] = None,
                 store: Optional[Gateway] = None, instance_id: str = "local",
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
        self.broker: Broker = broker or (store.orders.paper_broker() if store else PaperBroker())
        self.store = store
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
        self._queued_told: set[str] = set()  # queued orders send_queued has already logged
        # live engines send orders on a sender thread (the webhook answers once the signal is durable);
        # tests, backtests and tools send them inline
        self.sender = BackgroundSender(self.broker, self._send_failed) if send_in_background and store else None
        self.portfolio = Book(self.config, self.instruments, store.book if store else None)
        self.seen: OrderedDict[str, None] = OrderedDict()  # fingerprints known to be logged
        self.outcomes: Counter[str] = Counter()
        self.last_signal_at: Optional[datetime] = None  # reported by the heartbeat
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
        if self.store is None and self.controls is not None:  # in memory: the same controls, in Python
            reason = self.controls.blocks(signal, self.portfolio)
            if reason is not None:
                self._known(signal.fingerprint)
                return SignalResult(Outcome.BLOCKED, reason, signal.fingerprint), []
        result = self._decide(signal, work)
        if self.store is None:
            self._known(signal.fingerprint)
            self.portfolio.adopt(work)
            if self.controls is not None:
                self.controls.record(signal, result, self.portfolio)
            return result, work.orders
        # the store owns the retry: a decision gone stale is redone by _decide_on on the state it sends
        done = self.store.book.commit(signal, result, work, lambda state: self._decide_on(state, signal),
                                      self.instance_id)
        self._known(signal.fingerprint)
        if isinstance(done, Duplicate):
            if done.state is not None:  # another instance committed it and moved the book: follow now
                self.portfolio.load(done.state)
            return self._duplicate(signal), []
        self.last_signal_at = utcnow()
        if isinstance(done, Blocked):  # the trading controls refused it at commit: nothing of the decision stays
            if done.state is not None:  # the book another instance moved, learnt on the way
                self.portfolio.load(done.state)
            return SignalResult(Outcome.BLOCKED, done.reason, signal.fingerprint), []
        result, work = done
        self.portfolio.adopt(work)
        self.fault("after_commit")
        return result, work.orders

    def _decide_on(self, state: Optional[dict[str, Any]],
                   signal: Signal) -> tuple[SignalResult, Book]:
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

    @staticmethod
    def _duplicate(signal: Signal) -> SignalResult:
        return SignalResult(Outcome.DUPLICATE, "fingerprint already processed", signal.fingerprint)

    # -- decision ------------------------------------------------------------------------------
    def _decide(self, signal: Signal, work: Book) -> SignalResult:
        self._update_stops(work, signal.instrument, signal.price, signal.atr)
        stopped = []
        if signal.type is not SignalType.EXIT:
            for position in work.open_layers(signal.instrument):
                if stop_hit(position, signal.price):
                    self._close(work, signal, position, "STOP_LOSS")
                    stopped.append(position.position_id)
        handler = {SignalType.BASE_ENTRY: self._handle_base_entry, SignalType.PYRAMID: self._handle_pyramid,
                   SignalType.EXIT: self._handle_exit}[signal.type]
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

    def _update_stops(self, work: Book, instrument: str, price: Decimal, atr: Decimal) -> None:
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
            if changed and self.store is not None:
                self.store.book.save_positions(work)
            self.portfolio.adopt(work)
            return changed

    def _orders(self, work: Book, signal: Signal, position: Position, opening: bool,
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

    def _handle_base_entry(self, signal: Signal, work: Book) -> SignalResult:
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

    def _handle_pyramid(self, signal: Signal, work: Book) -> SignalResult:
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

    def _handle_exit(self, signal: Signal, work: Book) -> SignalResult:
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

    def _close(self, work: Book, signal: Signal, position: Position, reason: str) -> Decimal:
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
