"""The OpenAlgo REST client: one POST per call, JSON body with the API key, timeouts chosen per phase.

HTTP client: the standard library's ``http.client``, on purpose. Classifying a placeorder needs to
know exactly where an attempt failed — before the request could have left (connecting) or after
(sending, waiting, reading) — and ``http.client`` makes those separate steps we call ourselves:
``connect()`` finishes before one byte of the request is written, so any failure there is certainly
"not sent". A fresh connection per call (no pool): a pooled keep-alive connection that the gateway
closed while idle fails on the next request in a way that cannot be told apart from a cut after
sending; at 10 orders/s a TCP handshake costs nothing worth that ambiguity. No new dependency.

Deadlines, on purpose: every call has one total deadline — connect, send and the whole answer —
enforced by a timer that shuts the socket when it passes, because a per-read timeout alone lets a
gateway that sends its headers and then one byte every few seconds hold a call (and whatever waits
on it) forever. Connect 3 s at most within it — a gateway on the same host or LAN accepts in
milliseconds, a failed connect is "not sent" and safe to retry. 10 s in all for orders
(``order_timeout_s``, ``PM_OPENALGO_TIMEOUT_S``) — a broker answers a placement in well under a
second; past the deadline the order is ``unknown`` and resolved from the order book (never resent).
5 s in all for queries (order book, trade book, positions, quotes), which are simply retried. An
answer is read up to 4 MiB (``max_answer_bytes``); a longer one is no answer (a placement's is
``unknown``). ``oldest_call_s()`` says how long the oldest call in flight has waited, so the sender
can call the broker slow while a call is still stuck, within one deadline.

The API key is held in a ``Secret``: it never appears in a repr, a log line or an exception (error
texts from the gateway are scrubbed of it too).
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Optional
from urllib.parse import urlsplit

from pm_engine.adapters.openalgo.outcomes import OutcomeKind, PlaceOutcome, classify_answer
from pm_engine.adapters.openalgo.ratelimit import RateLimiter
from pm_engine.core.errors import PmError

log = logging.getLogger(__name__)


class Secret:
    """A string that does not print: repr and str show ``****``; ``reveal()`` is the one way in."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not value:
            raise ValueError("the OpenAlgo API key is empty")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def scrub(self, text: str) -> str:
        return text.replace(self._value, "****")

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __reduce__(self) -> Any:
        raise TypeError("a Secret is not pickled")


@dataclass(frozen=True)
class Timeouts:
    """``order_read_s`` and ``query_read_s`` are total deadlines of one call (connect + send + the whole answer)."""

    connect_s: float = 3.0
    order_read_s: float = 10.0
    query_read_s: float = 5.0
    max_answer_bytes: int = 4 * 1024 * 1024


@dataclass(frozen=True)
class OrderRequest:
    """One placeorder: MARKET and NRML unless said otherwise; quantity in the exchange's unit."""

    exchange: str
    symbol: str
    action: str  # BUY | SELL
    quantity: int
    product: str = "NRML"
    pricetype: str = "MARKET"
    price: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        if self.action not in ("BUY", "SELL"):
            raise ValueError(f"action must be BUY or SELL, got {self.action!r}")
        if isinstance(self.quantity, bool) or not isinstance(self.quantity, int) or self.quantity <= 0:
            raise ValueError(f"quantity must be a positive whole number, got {self.quantity!r}")
        if not self.symbol or not self.exchange:
            raise ValueError("symbol and exchange are required")


class OpenAlgoError(PmError):
    """A query (not a placement) failed. ``kind``: unreachable | lost | session | rate_limited | refused | error."""

    def __init__(self, kind: str, message: str, http_status: Optional[int] = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = http_status


class _NotSent(Exception):
    """No request left: the connection was never made."""


class _Lost(Exception):
    """The request may have left, and no complete answer came back."""


@dataclass(frozen=True)
class _Reply:
    status: int
    document: Any  # parsed JSON, or None when the body was not JSON


class OpenAlgoClient:
    """OpenAlgo's API v1 at ``url`` (e.g. ``http://127.0.0.1:5000``), with its key and strategy label."""

    def __init__(self, url: str, api_key: str, strategy: str = "pm-engine", timeouts: Timeouts = Timeouts(),
                 order_limiter: Optional[RateLimiter] = None, query_limiter: Optional[RateLimiter] = None,
                 rate_limited_retries: int = 3) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:  # the value is not echoed: it may hold a secret
            raise ValueError("PM_OPENALGO_URL must be an http(s) URL with a host (e.g. http://127.0.0.1:5000)")
        name = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        where = name if parts.port is None else f"{name}:{parts.port}"
        self.url = f"{parts.scheme}://{where}{parts.path.rstrip('/')}"  # no user:password part, ever shown
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._base = parts.path.rstrip("/") + "/api/v1/"
        self._key = Secret(api_key)
        self.strategy = strategy
        self.timeouts = timeouts
        self.order_limiter = order_limiter or RateLimiter(10)
        self.query_limiter = query_limiter or RateLimiter(10)
        self.rate_limited_retries = rate_limited_retries
        self._calls: dict[int, float] = {}  # calls in flight: a token -> when it began (monotonic)
        self._calls_lock = threading.Lock()

    def oldest_call_s(self) -> float:
        """How long the oldest call now in flight has waited (0 when none is)."""
        with self._calls_lock:
            begun = min(self._calls.values(), default=None)
        return 0.0 if begun is None else time.monotonic() - begun

    def __repr__(self) -> str:
        return f"OpenAlgoClient(url={self.url!r}, strategy={self.strategy!r}, api_key=****)"

    # --- orders -------------------------------------------------------------------------------------

    def placeorder(self, order: OrderRequest) -> PlaceOutcome:
        """Place one order and classify the attempt; never raises for what the network or the gateway did."""
        payload = {"strategy": self.strategy, "exchange": order.exchange, "symbol": order.symbol,
                   "action": order.action, "quantity": str(order.quantity), "pricetype": order.pricetype,
                   "product": order.product}
        if order.price:
            payload["price"] = str(order.price)
        for _ in range(1 + max(0, self.rate_limited_retries)):
            outcome = self._place_once(payload)
            if outcome.http_status != 429:
                break
            # 429 is certainly not placed, so trying again is safe: a burst is queued, never failed (a request
            # delayed between the limiter and the wire can still land in a gateway second that is already full)
            time.sleep(self.order_limiter.window)
        level = logging.INFO if outcome.kind is OutcomeKind.ACCEPTED else logging.WARNING
        log.log(level, "placeorder %s %s %s x%d: %s (%s)", order.exchange, order.symbol, order.action,
                order.quantity, outcome.kind.value, outcome.reason)
        return outcome

    def _place_once(self, payload: dict[str, Any]) -> PlaceOutcome:
        self.order_limiter.acquire()
        try:
            reply = self._post("placeorder", payload, self.timeouts.order_read_s)
        except _NotSent as exc:
            return PlaceOutcome(OutcomeKind.NOT_SENT, str(exc))
        except _Lost as exc:
            return PlaceOutcome(OutcomeKind.UNKNOWN, str(exc))
        outcome = classify_answer(reply.status, reply.document)
        return PlaceOutcome(outcome.kind, self._key.scrub(outcome.reason), outcome.broker_order_id, outcome.http_status)

    def cancelorder(self, orderid: str) -> str:
        """Cancel an open order; returns its id (an OpenAlgoError when the gateway refuses or is unreachable)."""
        self.order_limiter.acquire()
        data = self._query("cancelorder", {"strategy": self.strategy, "orderid": orderid}, key="orderid")
        return str(data)

    # --- queries ------------------------------------------------------------------------------------

    def orderstatus(self, orderid: str) -> dict[str, Any]:
        data = self._query("orderstatus", {"strategy": self.strategy, "orderid": orderid})
        return _mapping(data, "orderstatus")

    def orderbook(self) -> list[dict[str, Any]]:
        """Today's orders (``data.orders``); rows carry no strategy."""
        data = _mapping(self._query("orderbook", {}), "orderbook")
        return _rows(data.get("orders"), "orderbook")

    def tradebook(self) -> list[dict[str, Any]]:
        """Today's fills: the authoritative filled quantity and price per order."""
        return _rows(self._query("tradebook", {}), "tradebook")

    def positionbook(self) -> list[dict[str, Any]]:
        """Net positions of the whole account (signed quantity per symbol, exchange and product)."""
        return _rows(self._query("positionbook", {}), "positionbook")

    def quotes(self, symbol: str, exchange: str) -> dict[str, Any]:
        return _mapping(self._query("quotes", {"symbol": symbol, "exchange": exchange}), "quotes")

    def ping(self) -> dict[str, Any]:
        """``{"message": "pong", "broker": ...}``: the gateway is up and the key and broker session are good."""
        return _mapping(self._query("ping", {}), "ping")

    def _query(self, endpoint: str, payload: dict[str, Any], key: str = "data") -> Any:
        if endpoint != "cancelorder":  # cancelorder counts against the order budget (its caller took it)
            self.query_limiter.acquire()
        try:
            reply = self._post(endpoint, payload, self.timeouts.query_read_s)
        except _NotSent as exc:
            raise OpenAlgoError("unreachable", f"{endpoint}: {exc}") from None
        except _Lost as exc:
            raise OpenAlgoError("lost", f"{endpoint}: {exc}") from None
        document = reply.document
        if reply.status == 200 and isinstance(document, dict) and document.get("status") == "success" \
                and key in document:
            return document[key]
        message = self._key.scrub(_text(document.get("message") if isinstance(document, dict) else document))
        kind = {403: "session", 429: "rate_limited"}.get(reply.status)
        kind = kind or ("refused" if 400 <= reply.status < 500 else "error")
        raise OpenAlgoError(kind, f"{endpoint}: HTTP {reply.status}: {message}", reply.status)

    # --- the wire -----------------------------------------------------------------------------------

    def _post(self, endpoint: str, payload: dict[str, Any], total_s: float) -> _Reply:
        token = object()
        begun = time.monotonic()
        with self._calls_lock:
            self._calls[id(token)] = begun
        try:
            return self._post_within(endpoint, payload, total_s, begun + total_s)
        finally:
            with self._calls_lock:
                self._calls.pop(id(token), None)

    def _post_within(self, endpoint: str, payload: dict[str, Any], total_s: float, deadline: float) -> _Reply:
        where = f"{self._host}:{self._port}"
        connect_s = max(0.001, min(self.timeouts.connect_s, total_s))
        conn: http.client.HTTPConnection
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=connect_s)
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=connect_s)
        expired = threading.Event()
        timer: Optional[threading.Timer] = None
        try:
            try:
                conn.connect()
            except socket.gaierror:
                raise _NotSent(f"cannot resolve {self._host} (not sent)") from None
            except TimeoutError:
                raise _NotSent(f"no connection to {where} within {connect_s:g} s (not sent)") from None
            except OSError as exc:
                raise _NotSent(f"cannot connect to {where}: {exc.strerror or type(exc).__name__} (not sent)") from None
            sock = conn.sock
            assert sock is not None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _NotSent(f"no connection to {where} within {total_s:g} s (not sent)")
            sock.settimeout(remaining)
            timer = threading.Timer(remaining, _expire, (sock, expired))
            timer.daemon = True
            timer.start()
            body = json.dumps({"apikey": self._key.reveal(), **payload}).encode()
            try:
                conn.request("POST", self._base + endpoint, body=body,
                             headers={"Content-Type": "application/json", "Accept": "application/json"})
                response = conn.getresponse()
                raw = _read_capped(response, self.timeouts.max_answer_bytes)
            except _TooLarge:
                raise _Lost(f"the answer from {where} is larger than {self.timeouts.max_answer_bytes // 1024} KiB "
                            "(the request was sent)") from None
            except (TimeoutError, http.client.HTTPException, OSError, ValueError) as exc:
                if expired.is_set() or isinstance(exc, TimeoutError) or time.monotonic() >= deadline:
                    raise _Lost(f"no answer from {where} within {total_s:g} s (all of it) after the request was sent "
                                "(broker slow / not answering)") from None
                raise _Lost(f"connection to {where} lost after the request was sent ({type(exc).__name__})") from None
        finally:
            if timer is not None:
                timer.cancel()
            conn.close()
        try:
            document = json.loads(raw)
        except (ValueError, RecursionError):
            document = None
        return _Reply(response.status, document)


class _TooLarge(Exception):
    """The answer passed ``max_answer_bytes``."""


def _expire(sock: socket.socket, expired: threading.Event) -> None:
    """The deadline passed: shut the socket, so the read blocked on it returns at once."""
    expired.set()
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _read_capped(response: http.client.HTTPResponse, cap: int) -> bytes:
    """The whole answer, or _TooLarge past ``cap`` bytes (never more than cap + 64 KiB held)."""
    parts: list[bytes] = []
    size = 0
    while True:
        chunk = response.read1(65536)
        if not chunk:
            if response.length:  # read1 answers an early end with b"": the declared body is not all here
                raise http.client.IncompleteRead(b"".join(parts), response.length)
            return b"".join(parts)
        size += len(chunk)
        if size > cap:
            raise _TooLarge()
        parts.append(chunk)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value) if value is not None else ""


def _mapping(value: Any, endpoint: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise OpenAlgoError("error", f"{endpoint}: unexpected answer shape")
    return value


def _rows(value: Any, endpoint: str) -> list[dict[str, Any]]:
    if value is None:
        return []  # some brokers answer an empty book with null
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise OpenAlgoError("error", f"{endpoint}: unexpected answer shape")
    return value
