"""A gateway that drips (issue 29, item 2): a real HTTP server on loopback, in a thread of the test.

Placements of the ``drip`` symbols are answered with headers and then one space every ``every_s``
for as long as the caller listens — what a stuck broker gateway did in the review. Everything else is
answered at once like OpenAlgo: other placements accepted and filled at ``price``, the order book, the
trade book and the position book from those fills. Not a mock: the engine's client meets real sockets.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class DripBroker(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, drip: set[str], price: float, every_s: float = 0.5) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.drip, self.price, self.every_s = drip, price, every_s
        self.orders: list[dict[str, Any]] = []  # accepted placements, filled at once
        self.placements: list[str] = []  # the symbol of every placeorder received, dripped or not
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> "DripBroker":
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.stopping.set()
        self.shutdown()
        self.server_close()

    def answer(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if endpoint == "placeorder":
                order = {"orderid": f"DRIP{len(self.orders) + 1}", "symbol": body["symbol"],
                         "exchange": body["exchange"], "product": body["product"], "action": body["action"],
                         "quantity": int(body["quantity"]), "order_status": "complete", "pricetype": "MARKET",
                         "price": 0.0, "trigger_price": 0.0, "timestamp": time.strftime("%Y-%m-%d %H:%M:%S")}
                self.orders.append(order)
                return {"status": "success", "orderid": order["orderid"]}
            if endpoint == "orderbook":
                return {"status": "success", "data": {"orders": [dict(o) for o in self.orders]}}
            if endpoint == "tradebook":
                return {"status": "success", "data": [{**o, "average_price": self.price} for o in self.orders]}
            if endpoint == "positionbook":
                net: dict[tuple[str, str, str], int] = {}
                for o in self.orders:
                    key = (o["symbol"], o["exchange"], o["product"])
                    net[key] = net.get(key, 0) + (o["quantity"] if o["action"] == "BUY" else -o["quantity"])
                return {"status": "success", "data": [{"symbol": s, "exchange": e, "product": p, "quantity": q,
                                                       "average_price": str(self.price)}
                                                      for (s, e, p), q in net.items()]}
            return {"status": "success", "data": {"message": "pong", "broker": "drip"}}


class _Handler(BaseHTTPRequestHandler):
    server: DripBroker
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        endpoint = self.path.rstrip("/").rsplit("/", 1)[-1]
        if endpoint == "placeorder":
            with self.server.lock:
                self.server.placements.append(str(body.get("symbol")))
            if body.get("symbol") in self.server.drip:
                self._drip()
                return
        data = json.dumps(self.server.answer(endpoint, body)).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _drip(self) -> None:
        """Headers, then a space every ``every_s`` (a per-read timeout never fires) until the caller hangs up."""
        self.close_connection = True
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
            self.wfile.flush()
            while not self.server.stopping.is_set():
                time.sleep(self.server.every_s)
                self.wfile.write(b" ")
                self.wfile.flush()
        except OSError:
            pass  # the caller gave up: its deadline passed
