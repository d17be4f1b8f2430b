"""Issue 19, item 1, in a real browser: Debian's Chromium visits an attacker's page on another site
(``evil.example``, resolved to this machine) while an engine without a read token runs here.

The page auto-submits top-level HTML forms — urlencoded and text/plain (a body that looks like JSON) — to
``POST /control`` (halt trading) and ``POST /positions/…/exit`` (close at 1.00), and a DNS-rebinding page
(the attacker's name pointing at the engine's port) posts JSON from "the same origin". Nothing may change.
"""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.tools.children import EngineProcess
from tests.browser.test_dashboard import CHROMIUM, FLAGS
from tests.helpers import payload, rows

SECRET = "cross-site-webhook-secret-0123456789"


def attacker_pages(engine: str) -> dict[str, str]:
    def form(action: str, fields: dict[str, str], enctype: str = "application/x-www-form-urlencoded") -> str:
        inputs = "".join(f"<input type='hidden' name='{k}' value='{v}'>" for k, v in fields.items())
        return (f"<html><body><form method='post' action='{engine}{action}' enctype='{enctype}'>{inputs}</form>"
                "<script>document.forms[0].submit()</script></body></html>")
    return {
        "/halt": form("/control", {"mode": "halted", "reason": "pwned"}),
        "/exit": form("/positions/BANK_NIFTY_Long_1/exit", {"price": "1", "reason": "pwned"}),
        # text/plain: name=value, so the body reads {"mode": "halted", "reason": "pwned", "x": "="}
        "/plain": form("/control", {'{"mode": "halted", "reason": "pwned", "x": "': '"}'}, "text/plain"),
    }


@pytest.fixture
def attacker() -> Iterator[tuple[int, dict[str, str]]]:
    pages: dict[str, str] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = pages.get(self.path, "<html><body>evil</body></html>").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], pages
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def engine(db_config: DatabaseConfig, tmp_path: Path) -> Iterator[EngineProcess]:
    started = EngineProcess(db_config, SECRET, log=tmp_path / "engine.log").start()  # no read token: loopback
    assert started.wait_ready(30), "engine did not start"
    stamp = (datetime.now(timezone.utc) - timedelta(minutes=2)).isoformat()
    body = {**payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, stamp, stop=51650, atr=350, er=0.85),
            "secret": SECRET}
    assert httpx.post(f"http://127.0.0.1:{started.port}/webhook", json=body).json()["outcome"] == "executed"
    yield started
    started.stop()


def test_a_page_on_another_site_cannot_change_the_book(engine: EngineProcess, attacker: tuple[int, dict[str, str]],
                                                       db_config: DatabaseConfig) -> None:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run `make install` as root, or `apt-get install chromium` (Debian)")
    from playwright.sync_api import sync_playwright

    port, pages = attacker
    target = f"http://127.0.0.1:{engine.port}"
    pages.update(attacker_pages(target))
    answers: list[tuple[str, int]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=FLAGS + ["--host-resolver-rules=MAP evil.example 127.0.0.1"])
        try:
            page = browser.new_context().new_page()
            page.on("response", lambda r: answers.append((r.url, r.status)) if r.url.startswith(target) else None)
            for name in ("/halt", "/exit", "/plain"):
                with page.expect_navigation(url=f"{target}/**", timeout=15_000):
                    page.goto(f"http://evil.example:{port}{name}")
            # DNS rebinding: the attacker's name now points at the engine, so its script is "same origin"
            page.goto(f"http://evil.example:{engine.port}/health")
            status = page.evaluate("""async () => (await fetch('/control', {method: 'POST',
                headers: {'Content-Type': 'application/json'},
                body: JSON.stringify({mode: 'halted', reason: 'rebound'})})).status""")
            read = page.evaluate("async () => (await fetch('/status')).status")
        finally:
            browser.close()
    # every top-level form reached the engine (so the browser did send it) and was refused
    assert [s for u, s in answers if u.endswith("/control") or u.endswith("/exit")] == [403, 403, 403], answers
    assert status == 400 and read == 400  # the rebound page's Host is not one this engine answers to
    assert rows(db_config, "SELECT mode FROM pm.trading_control") == [("active",)]
    assert rows(db_config, "SELECT status, exit_price FROM pm.portfolio_positions") == [("open", None)]
    # while this machine's own tools still steer it (JSON, no Origin from another site)
    same = httpx.post(target + "/control", json={"mode": "exits_only", "reason": "operator"})
    assert same.status_code == 200 and same.json()["mode"] == "exits_only"
