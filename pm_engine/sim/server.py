"""The simulator's HTTP server: OpenAlgo's ``POST /api/v1/<name>`` endpoints and the ``/sim/*`` controls.

The standard library's threaded HTTP server, on purpose: a simulator of a misbehaving gateway must
be able to accept an order and then cut the TCP connection without a byte of answer, or hold the
answer past the client's timeout; a framework between the handler and the socket would hide that.

Controls, each needing the simulator's API key (``Authorization: Bearer <key>``, or ``"apikey"`` in a
POST's JSON body, compared in constant time: any local user can reach loopback, and a price of 1 would
fill a real exit): ``POST /sim/price {"symbol", "price"}`` sets a last price, ``POST /sim/faults {...}``
sets switches (``Faults``), ``POST /sim/fill {"orderid", "price"?}`` fills an open order, ``POST
/sim/reset`` clears everything, ``GET /sim/state`` shows orders, trades, positions.

Bodies as the engine's: a declared ``Content-Length`` of digits only (``-1`` or a chunked body is
refused unread), at most ``MAX_BODY``; a request's head and body must have arrived within
``READ_S`` of its first byte (a timer shuts a slower connection), so slow clients hold nothing.
"""

from __future__ import annotations

import hmac
import io
import json
import socket
import struct
import sys
import threading
import time
from collections import deque
from datetime import datetime
from decimal import Decimal, InvalidOperation
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional

from pm_engine.core import intent
from pm_engine.sim.book import IST, Account, Faults, SimError, monthly_expiries
from pm_engine.sim.schemas import SCHEMAS, validate

ORDER_ENDPOINTS = ("placeorder", "cancelorder")
STRING_MESSAGES = ("placeorder", "orderstatus", "cancelorder")  # these answer the errors map as its text
RATE_LIMITED = {"status": "error", "message": "Rate limit exceeded. Please slow down your requests.",
                "retry_after": 60}
BAD_KEY = "Invalid openalgo apikey"
MAX_BODY = 64 * 1024
READ_S = 10.0  # a request's head and body arrive within this (the engine's header and body timeouts)
CONTROL_KEY = "the simulator's controls need its API key (Authorization: Bearer <key>)"


class RateLimiter:
    """A moving one-second window per (client address, bucket), as OpenAlgo's "10 per second"."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def allow(self, client: str, bucket: str, limit: int) -> bool:
        now = time.monotonic()
        with self._lock:
            hits = self._hits.setdefault((client, bucket), deque())
            while hits and now - hits[0] >= 1.0:
                hits.popleft()
            if len(hits) >= limit:
                return False
            hits.append(now)
            return True


class SimServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog: a burst of orders is queued by the kernel, not refused (default 5)

    def __init__(self, address: tuple[str, int], account: Account) -> None:
        super().__init__(address, Handler)
        self.account = account
        self.limiter = RateLimiter()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection the caller (or the 'cut' fault) dropped is no error of the simulator's: say nothing."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class Handler(BaseHTTPRequestHandler):
    server: SimServer
    protocol_version = "HTTP/1.1"
    server_version = "pm-engine-broker-sim"
    timeout = READ_S  # per read; the timer below bounds the whole head and body
    _reading: Optional[threading.Timer] = None

    def handle_one_request(self) -> None:
        """One request, its head and body within ``READ_S`` of now (an idle keep-alive connection too)."""
        self._reading = threading.Timer(READ_S, self._too_slow)
        self._reading.daemon = True
        self._reading.start()
        try:
            super().handle_one_request()
        finally:
            self._read_done()

    def _read_done(self) -> None:
        if self._reading is not None:
            self._reading.cancel()

    def _too_slow(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        """Quiet: request lines would carry nothing useful, and bodies (with the API key) are never logged."""

    # --- plumbing -------------------------------------------------------------------------------------

    def _body(self) -> Any:
        declared = (self.headers.get("Content-Length") or "0").strip()
        if self.headers.get("Transfer-Encoding") or not declared.isascii() or not declared.isdigit():
            self.close_connection = True  # the body is left unread
            raise SimError(400, "Content-Length must be a number of bytes (no chunked bodies)")
        length = int(declared)
        if length > MAX_BODY:
            self.close_connection = True
            raise SimError(413, "Request body too large")
        raw = self.rfile.read(length) if length else b""
        self._read_done()
        if len(raw) < length:
            self.close_connection = True
            raise SimError(408, "the body did not arrive in time")
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise SimError(400, "Invalid JSON body") from None

    def _answer(self, status: int, document: Any) -> None:
        data = json.dumps(document).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            self.close_connection = True  # the client has gone (e.g. it timed out): nothing to tell it

    def _cut(self) -> None:
        """Reset the connection with no answer at all (SO_LINGER 0: the peer sees a RST)."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        for stream in (self.rfile, self.wfile):
            try:
                stream.close()
            except OSError:
                pass
        self.connection.close()
        self.wfile = io.BytesIO()  # what the base class still flushes goes nowhere

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass

    def _refusal(self, changes: bool) -> Optional[str]:
        """Why this request is refused before it is read (issue 19's rule, ``core/intent.py``): a Host that is
        not this machine (DNS rebinding), and for a POST a body that is not JSON or a browser's cross-site mark,
        so no web page the trader opens can move prices, switch faults or place orders here."""
        host = self.headers.get("Host") or ""
        if not intent.host_allowed(host):
            return "Host not allowed: use a loopback name or an IP address"
        if changes:
            if not intent.is_json(self.headers.get("Content-Type")):
                return "Content-Type must be application/json"
            return intent.cross_site(self.headers.get("Sec-Fetch-Site"), self.headers.get("Origin"), host)
        return None

    def _key_ok(self, body: Any = None) -> bool:
        """The simulator's API key, from ``Authorization: Bearer`` or a JSON body's ``apikey``, in constant time."""
        given = self.headers.get("Authorization") or ""
        key = given[7:].strip() if given[:7].lower() == "bearer " else None
        if key is None and isinstance(body, dict) and isinstance(body.get("apikey"), str):
            key = body["apikey"]
        return key is not None and hmac.compare_digest(key.encode(), self.server.account.api_key.encode())

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        self._read_done()
        path = self.path.rstrip("/")
        refused = self._refusal(changes=False)
        if refused:
            self.close_connection = True
            self._answer(403, {"status": "error", "message": refused})
        elif path.startswith("/sim/") and not self._key_ok():
            self._answer(401, {"status": "error", "message": CONTROL_KEY})
        elif path == "/sim/state":
            with self.server.account.lock:
                self._answer(200, self.server.account.snapshot())
        elif path == "":
            self._answer(200, {"status": "success", "message": "pm-engine broker simulator (OpenAlgo API v1)"})
        else:
            self._answer(404, {"status": "error", "message": f"Not found: {self.path}"})

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        path = self.path.rstrip("/")
        refused = self._refusal(changes=True)
        if refused:
            self.close_connection = True  # the body is left unread
            self._answer(403, {"status": "error", "message": refused})
            return
        try:
            body = self._body()
            if path.startswith("/api/v1/") and path[len("/api/v1/"):] in SCHEMAS:
                self._api(path[len("/api/v1/"):], body)
            elif path.startswith("/sim/"):
                if not self._key_ok(body):
                    raise SimError(401, CONTROL_KEY)
                self._answer(200, self._control(path[len("/sim/"):], body))
            else:
                self._answer(404, {"status": "error", "message": f"Not found: {self.path}"})
        except SimError as exc:
            self._answer(exc.status, {"status": "error", "message": exc.message})

    # --- the OpenAlgo API ---------------------------------------------------------------------------

    def _api(self, endpoint: str, body: Any) -> None:
        account = self.server.account
        faults = account.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        order_call = endpoint in ORDER_ENDPOINTS
        limit = faults.order_rate if order_call else faults.api_rate
        if not self.server.limiter.allow(self.client_address[0], "orders" if order_call else endpoint, limit):
            self._answer(429, RATE_LIMITED)
            return
        checked = validate(endpoint, body)
        if checked.errors:
            message: Any = str(checked.errors) if endpoint in STRING_MESSAGES else checked.errors
            raise SimError(400, message)
        values = checked.values
        if not hmac.compare_digest(str(values["apikey"]).encode(), account.api_key.encode()) or \
                faults.session_expired:
            raise SimError(403, BAD_KEY)
        if endpoint == "placeorder":
            self._place(values)
            return
        with account.lock:
            data = self._read(endpoint, values)
        self._answer(200, data)

    def _place(self, values: dict[str, Any]) -> None:
        account = self.server.account
        with account.lock:
            order, fault = account.place(values)
            hang = account.faults.hang_s
        if fault == "cut":
            self._cut()
        elif fault == "500":
            self._answer(500, {"status": "error", "message": "Failed to place order due to internal error"})
        elif fault == "no_orderid":
            self._answer(200, {"status": "success", "orderid": None})
        else:
            if fault == "timeout":
                time.sleep(hang)
            self._answer(200, {"status": "success", "orderid": order.orderid})

    def _read(self, endpoint: str, v: dict[str, Any]) -> dict[str, Any]:
        account = self.server.account
        if endpoint == "orderstatus":
            return {"status": "success", "data": account.status_row(v["orderid"])}
        if endpoint == "cancelorder":
            return {"status": "success", "orderid": account.cancel(v["orderid"]).orderid}
        if endpoint == "orderbook":
            return {"status": "success", "data": account.orderbook()}
        if endpoint == "tradebook":
            return {"status": "success", "data": [t.row() for t in account.trades]}
        if endpoint == "positionbook":
            return {"status": "success", "data": account.positions()}
        if endpoint == "quotes":
            return {"status": "success", "data": account.quote(v["symbol"])}
        if endpoint == "funds":
            return {"status": "success", "data": account.funds()}
        if endpoint == "expiry":
            dates = monthly_expiries(v["exchange"], datetime.now(IST).date())
            return {"status": "success", "data": dates,
                    "message": f"Found {len(dates)} expiry dates for {v['symbol']} {v['instrumenttype']} in "
                               f"{v['exchange']}"}
        return {"status": "success", "data": {"message": "pong", "broker": "simulator"}}  # ping

    # --- the controls -------------------------------------------------------------------------------

    def _control(self, name: str, body: Any) -> dict[str, Any]:
        account = self.server.account
        body = {k: v for k, v in body.items() if k != "apikey"} if isinstance(body, dict) else {}
        with account.lock:
            if name == "price":
                symbol, price = body.get("symbol"), _price(body.get("price"))
                if not isinstance(symbol, str) or not symbol:
                    raise SimError(400, {"symbol": ["Missing data for required field."]})
                account.set_price(symbol, price)
                return {"status": "success", "symbol": symbol, "price": str(price)}
            if name == "faults":
                account.faults.update(body)
                return {"status": "success", "faults": account.faults.as_json()}
            if name == "fill":
                fill_price = _price(body["price"]) if body.get("price") is not None else None
                order = account.fill_open(str(body.get("orderid")), fill_price)
                return {"status": "success", "orderid": order.orderid, "order_status": order.status}
            if name == "reset":
                account.reset()
                self.server.limiter = RateLimiter()
                return {"status": "success"}
        raise SimError(404, f"Not found: /sim/{name}")


def _price(value: Any) -> Decimal:
    try:
        price = Decimal(str(value))
    except InvalidOperation:
        price = Decimal(0)
    if not price.is_finite() or price <= 0:
        raise SimError(400, {"price": ["Price must be a positive number."]})
    return price


def make_server(host: str, port: int, api_key: str, faults: Optional[Faults] = None,
                price_source: Optional[Callable[[str, str], Optional[Decimal]]] = None) -> SimServer:
    """A bound (not yet serving) simulator; port 0 picks a free one (``server.server_address``). ``price_source``
    gives a symbol's last signal price when no price was set for it (``Account.price_source``)."""
    return SimServer((host, port), Account(api_key=api_key, faults=faults or Faults(), price_source=price_source))
