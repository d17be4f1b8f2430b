"""The simulated broker account: orders, trades, positions, last prices and the fault switches.

All in memory, guarded by one lock (the HTTP server is threaded). Money is Decimal; answers carry
floats rounded to 0.01 as OpenAlgo's do. Times are the broker's own strings (Zerodha's format, IST,
no zone), as docs/domain.md#orders-through-openalgo warns.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field, fields
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Callable, Optional
from zoneinfo import ZoneInfo

IST = ZoneInfo("Asia/Kolkata")
CENT = Decimal("0.01")
AFTER_ACCEPT = ("timeout", "cut", "500", "no_orderid")
REJECT = ("place", "book")
REST = ("cancel", "open")


class SimError(Exception):
    """An answer other than success: the HTTP status and OpenAlgo's message."""

    def __init__(self, status: int, message: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Faults:
    """The switches (``POST /sim/faults`` or the CLI flags). ``times`` bounds the order faults to the next N orders."""

    latency_ms: int = 0  # every API call waits this long before it is handled
    reject: Optional[str] = None  # 'place': 400 at placement; 'book': accepted, then rejected in the order book
    reject_message: str = "RMS: order rejected by the simulator"
    partial: Optional[Decimal] = None  # fill this fraction of the quantity (rounded down) ...
    partial_rest: str = "cancel"  # ... and cancel the rest ('cancel') or leave it open ('open')
    hold: bool = False  # accept orders and leave them open, unfilled (cancel them, or fill with POST /sim/fill)
    after_accept: Optional[str] = None  # accepted, then: 'timeout' | 'cut' | '500' | 'no_orderid'
    hang_s: float = 30.0  # how long a 'timeout' holds the answer back
    trades_per_order: int = 1  # a fill split into this many trades ...
    price_step: Decimal = Decimal(0)  # ... each this much worse than the one before
    session_expired: bool = False  # every call answers 403, as when the broker's daily login has lapsed
    order_rate: int = 10  # placeorder and cancelorder per second per client address, then 429
    api_rate: int = 50  # every other call, per endpoint
    times: Optional[int] = None  # the order faults apply to the next N orders only (None: to all)

    def update(self, changes: dict[str, Any]) -> None:
        names = {f.name: f for f in fields(self)}
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise SimError(400, {name: ["Unknown field."] for name in unknown})
        for name, value in changes.items():
            setattr(self, name, _coerce(name, value))

    def as_json(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(self).items()}


def _coerce(name: str, value: Any) -> Any:
    try:
        if value is None:
            if name in ("reject", "partial", "after_accept", "times"):
                return None
            raise ValueError
        if name in ("latency_ms", "trades_per_order", "order_rate", "api_rate", "times"):
            number = int(value)
            if number < (1 if name in ("trades_per_order", "order_rate", "api_rate") else 0):
                raise ValueError
            return number
        if name in ("partial", "price_step"):
            dec = Decimal(str(value))
            if name == "partial" and not 0 < dec < 1:
                raise ValueError
            return dec
        if name == "hang_s":
            return float(value)
        if name in ("hold", "session_expired"):
            if not isinstance(value, bool):
                raise ValueError
            return value
        choices = {"reject": REJECT, "after_accept": AFTER_ACCEPT, "partial_rest": REST}.get(name)
        if choices is not None and value not in choices:
            raise ValueError
        return str(value)
    except (ValueError, ArithmeticError, TypeError):
        raise SimError(400, {name: [f"Not a valid value: {value!r}."]}) from None


@dataclass
class SimOrder:
    orderid: str
    strategy: str
    symbol: str
    exchange: str
    action: str
    quantity: int
    price: Decimal
    trigger_price: Decimal
    pricetype: str
    product: str
    status: str  # open | complete | rejected | cancelled
    timestamp: str
    filled: int = 0
    reason: str = ""

    def row(self) -> dict[str, Any]:
        """The order as OpenAlgo's orderbook and orderstatus show it."""
        return {"action": self.action, "exchange": self.exchange, "order_status": self.status,
                "orderid": self.orderid, "price": 0.0 if self.pricetype == "MARKET" else _money(self.price),
                "pricetype": self.pricetype, "product": self.product, "quantity": self.quantity,
                "symbol": self.symbol, "timestamp": self.timestamp, "trigger_price": _money(self.trigger_price)}


@dataclass
class SimTrade:
    orderid: str
    symbol: str
    exchange: str
    product: str
    action: str
    quantity: int
    price: Decimal
    timestamp: str

    def row(self) -> dict[str, Any]:
        return {"action": self.action, "average_price": _money(self.price), "exchange": self.exchange,
                "orderid": self.orderid, "product": self.product, "quantity": self.quantity,
                "symbol": self.symbol, "timestamp": self.timestamp,
                "trade_value": _money(self.price * self.quantity)}


def _money(value: Decimal) -> float:
    return float(value.quantize(CENT, ROUND_HALF_UP))


def broker_time(now: Optional[datetime] = None) -> str:
    """A broker's timestamp: IST wall time, no zone (Zerodha's format)."""
    return (now or datetime.now(IST)).astimezone(IST).strftime("%Y-%m-%d %H:%M:%S")


def monthly_expiries(exchange: str, today: date, count: int = 3) -> list[str]:
    """Plausible monthly expiries as ``DD-MMM-YY``: the last Tuesday (NSE, BSE) or last weekday of a month."""
    out: list[str] = []
    year, month = today.year, today.month
    while len(out) < count:
        last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1))
        while (last.weekday() != 1) if exchange in ("NFO", "BFO") else (last.weekday() > 4):
            last -= timedelta(days=1)
        if last >= today:
            out.append(last.strftime("%d-%b-%y").upper())
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


@dataclass
class Account:
    """The simulated account. Every method is called under ``lock``."""

    api_key: str = field(repr=False)
    faults: Faults = field(default_factory=Faults)
    orders: dict[str, SimOrder] = field(default_factory=dict)
    trades: list[SimTrade] = field(default_factory=list)
    prices: dict[str, Decimal] = field(default_factory=dict)
    cash: Decimal = Decimal("10000000")
    # (symbol, action) -> the signal price of the order being placed, when no price was set for the symbol
    # (``pm-engine run --broker sim`` and chaos read the engine's sending order): it fills at its alert's price
    price_source: Optional[Callable[[str, str], Optional[Decimal]]] = field(default=None, repr=False)
    lock: threading.RLock = field(default_factory=threading.RLock)
    _seq: int = 0

    def reset(self) -> None:
        self.orders.clear()
        self.trades.clear()
        self.prices.clear()
        self.faults = Faults()
        self._seq = 0

    def set_price(self, symbol: str, price: Decimal) -> None:
        self.prices[symbol] = price
        for order in list(self.orders.values()):  # a resting LIMIT order fills once the price reaches it
            if order.status == "open" and order.pricetype == "LIMIT" and not self.faults.hold \
                    and self._marketable(order, price):
                self._fill(order, order.quantity - order.filled, price)

    def _take_order_fault(self) -> bool:
        """Whether the order faults apply to this order (and count it against ``times``)."""
        if self.faults.times is None:
            return True
        if self.faults.times <= 0:
            return False
        self.faults.times -= 1
        return True

    def place(self, v: dict[str, Any]) -> tuple[SimOrder, Optional[str]]:
        """Book an order; returns it and the after-acceptance fault to play (None: answer normally)."""
        faulty = self._take_order_fault() if self._order_faults_set() else False
        symbol = v["symbol"]
        price = self.prices.get(symbol) or (v["price"] if v["price"] > 0 else None)
        if price is None and self.price_source is not None:
            price = self.price_source(symbol, v["action"].upper())
        if faulty and self.faults.reject == "place":
            raise SimError(400, self.faults.reject_message)
        if price is None:
            raise SimError(400, f"No price for {symbol}: set one with POST /sim/price")
        self._seq += 1
        now = datetime.now(IST)
        order = SimOrder(orderid=f"{now:%y%m%d}{self._seq:08d}", strategy=v["strategy"], symbol=symbol,
                         exchange=v["exchange"], action=v["action"].upper(), quantity=v["quantity"],
                         price=v["price"], trigger_price=v["trigger_price"], pricetype=v["pricetype"],
                         product=v["product"], status="open", timestamp=broker_time(now))
        self.orders[order.orderid] = order
        if faulty and self.faults.reject == "book":
            order.status, order.reason = "rejected", self.faults.reject_message
        elif (faulty and self.faults.hold) or (order.pricetype != "MARKET" and not self._marketable(order, price)):
            pass  # rests open
        elif faulty and self.faults.partial is not None:
            part = int(order.quantity * self.faults.partial)
            self._fill(order, part, price)
            if self.faults.partial_rest == "cancel":
                order.status = "cancelled"
        else:
            self._fill(order, order.quantity, price)
        return order, (self.faults.after_accept if faulty else None)

    def _order_faults_set(self) -> bool:
        f = self.faults
        return bool(f.reject or f.partial is not None or f.hold or f.after_accept)

    @staticmethod
    def _marketable(order: SimOrder, price: Decimal) -> bool:
        if order.pricetype == "MARKET":
            return True
        if order.pricetype == "LIMIT":
            return price <= order.price if order.action == "BUY" else price >= order.price
        return False  # SL / SL-M rest until cancelled (the simulator has no trigger logic)

    def _fill(self, order: SimOrder, quantity: int, price: Decimal) -> None:
        if quantity <= 0:
            return
        pieces = min(self.faults.trades_per_order, quantity)
        step = self.faults.price_step if order.action == "BUY" else -self.faults.price_step
        base, extra = divmod(quantity, pieces)
        for i in range(pieces):
            size = base + (1 if i < extra else 0)
            self.trades.append(SimTrade(order.orderid, order.symbol, order.exchange, order.product, order.action,
                                        size, price + step * i, broker_time()))
        order.filled += quantity
        if order.filled >= order.quantity:
            order.status = "complete"

    def fill_open(self, orderid: str, price: Optional[Decimal]) -> SimOrder:
        """Fill what is left of an open order (``POST /sim/fill``), at the given or the last price."""
        order = self.get(orderid)
        if order.status != "open":
            raise SimError(400, f"Order {orderid} is {order.status}")
        fill_price = price or self.prices.get(order.symbol) or order.price
        self._fill(order, order.quantity - order.filled, fill_price)
        return order

    def get(self, orderid: str) -> SimOrder:
        order = self.orders.get(orderid)
        if order is None:
            raise SimError(404, f"Order {orderid} not found")
        return order

    def cancel(self, orderid: str) -> SimOrder:
        order = self.get(orderid)
        if order.status != "open":
            raise SimError(400, f"Order {orderid} is {order.status} and cannot be cancelled")
        order.status = "cancelled"
        return order

    def status_row(self, orderid: str) -> dict[str, Any]:
        """orderstatus's data: the order row, ``average_price`` only when complete and from the first trade."""
        order = self.get(orderid)
        row = order.row()
        first = next((t for t in self.trades if t.orderid == orderid), None)
        row["average_price"] = _money(first.price) if order.status == "complete" and first else 0.0
        return row

    def orderbook(self) -> dict[str, Any]:
        orders = list(self.orders.values())
        stats = {"total_buy_orders": sum(o.action == "BUY" for o in orders),
                 "total_sell_orders": sum(o.action == "SELL" for o in orders),
                 "total_completed_orders": sum(o.status == "complete" for o in orders),
                 "total_open_orders": sum(o.status == "open" for o in orders),
                 "total_rejected_orders": sum(o.status == "rejected" for o in orders)}
        return {"orders": [o.row() for o in orders], "statistics": stats}

    def positions(self) -> list[dict[str, Any]]:
        """Net position per (symbol, exchange, product): signed quantity, average price of the net, ltp, P&L."""
        books: dict[tuple[str, str, str], dict[str, Decimal]] = {}
        for t in self.trades:
            zero = {"qty": Decimal(0), "avg": Decimal(0), "realized": Decimal(0)}
            b = books.setdefault((t.symbol, t.exchange, t.product), zero)
            signed = Decimal(t.quantity if t.action == "BUY" else -t.quantity)
            qty, avg = b["qty"], b["avg"]
            if qty == 0 or (qty > 0) == (signed > 0):  # opening or adding
                b["avg"] = (qty * avg + signed * t.price) / (qty + signed)
                b["qty"] = qty + signed
            else:  # reducing, maybe flipping
                closed = min(abs(signed), abs(qty))
                b["realized"] += closed * (t.price - avg) * (1 if qty > 0 else -1)
                b["qty"] = qty + signed
                if b["qty"] == 0:
                    b["avg"] = Decimal(0)
                elif (b["qty"] > 0) != (qty > 0):
                    b["avg"] = t.price
        rows = []
        for (symbol, exchange, product), b in books.items():
            ltp = self.prices.get(symbol, b["avg"])
            pnl = b["realized"] + b["qty"] * (ltp - b["avg"])
            rows.append({"symbol": symbol, "exchange": exchange, "product": product, "quantity": int(b["qty"]),
                         "average_price": f"{b['avg'].quantize(CENT, ROUND_HALF_UP)}", "ltp": _money(ltp),
                         "pnl": _money(pnl)})
        return rows

    def quote(self, symbol: str) -> dict[str, Any]:
        price = self.prices.get(symbol)
        if price is None:
            raise SimError(400, f"No price for {symbol}: set one with POST /sim/price")
        p = _money(price)
        return {"ask": p, "bid": p, "high": p, "low": p, "ltp": p, "oi": 0, "open": p, "prev_close": p,
                "volume": 0}

    def funds(self) -> dict[str, str]:
        pnl = sum((Decimal(str(r["pnl"])) for r in self.positions()), Decimal(0))
        return {"availablecash": f"{self.cash:.2f}", "collateral": "0.00", "m2mrealized": "0.00",
                "m2munrealized": f"{pnl:.2f}", "utiliseddebits": "0.00"}

    def snapshot(self) -> dict[str, Any]:
        """Everything, for the trader and the tests (``GET /sim/state``)."""
        return {"faults": self.faults.as_json(), "prices": {k: str(v) for k, v in self.prices.items()},
                "orders": [o.row() | {"filled": o.filled, "strategy": o.strategy, "reason": o.reason}
                           for o in self.orders.values()],
                "trades": [t.row() for t in self.trades], "positions": self.positions()}
