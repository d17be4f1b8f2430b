"""``pm-engine broker-sim``: its options and its main loop (the CLI only wires them in)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from decimal import Decimal
from typing import Any

from pm_engine.sim.book import AFTER_ACCEPT, REJECT, Faults
from pm_engine.sim.server import make_server

KEY_ENV = "PM_OPENALGO_API_KEY"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default loopback; the API and the /sim/ controls need the key)")
    p.add_argument("--port", type=int, default=5000, help="port (default 5000, OpenAlgo's; 0 picks a free one)")
    p.add_argument("--api-key", metavar="KEY",
                   help=f"the API key callers must send (default: ${KEY_ENV}, as the engine reads it)")
    p.add_argument("--latency-ms", type=int, default=0, help="every API call waits this long")
    p.add_argument("--reject", choices=REJECT, help="reject orders: at placement (400) or in the order book")
    p.add_argument("--partial", type=Decimal, metavar="FRACTION",
                   help="fill only this fraction of each order (rounded down), the rest cancelled")
    p.add_argument("--after-accept", choices=AFTER_ACCEPT,
                   help="accept each order, then time out, cut the connection, answer 500, or answer without an id")
    p.add_argument("--hang", type=float, default=30.0, metavar="SECONDS", help="how long --after-accept timeout holds")
    p.add_argument("--hold", action="store_true", help="leave orders open, unfilled (POST /sim/fill fills them)")
    p.add_argument("--session-expired", action="store_true", help="answer every call 403, as an expired broker login")
    p.add_argument("--order-rate", type=int, default=10, help="orders per second per client before 429 (default 10)")


def run(args: argparse.Namespace) -> int:
    api_key = args.api_key or os.environ.get(KEY_ENV)
    if not api_key:
        print(f"pm-engine broker-sim: error: give --api-key or set {KEY_ENV}", file=sys.stderr)
        return 2
    try:
        faults = Faults()
        faults.update({"latency_ms": args.latency_ms, "reject": args.reject, "partial": args.partial,
                       "after_accept": args.after_accept, "hang_s": args.hang, "hold": args.hold,
                       "session_expired": args.session_expired, "order_rate": args.order_rate})
    except Exception as exc:  # noqa: BLE001 - a bad flag value, said plainly
        print(f"pm-engine broker-sim: error: {exc}", file=sys.stderr)
        return 2
    server = make_server(args.host, args.port, api_key, faults)
    host, port = str(server.server_address[0]), int(server.server_address[1])

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"broker-sim: OpenAlgo API on http://{host}:{port}/api/v1/ (controls under /sim/, with the key: "
          "Authorization: Bearer <key>)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
