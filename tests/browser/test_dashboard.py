"""Issue 14 in a real browser: Debian's Chromium driven by Playwright against a real engine on a real PostgreSQL.

Log in; an alert sent over HTTP appears (position and equity point) without a reload; Pause, confirm, an entry is
blocked; Resume; /docs renders offline. Any console error or failed request fails the test. Desktop and 390 px.
"""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.contracts import ContractCalendar, ist_date
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.tools.children import EngineProcess
from pm_engine.tools.samples import generate_signals
from tests.brokersim import Sim, sim, sim_process  # noqa: F401 - fixtures
from tests.helpers import payload

CHROMIUM = Path("/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
SECRET, TOKEN = "browser-webhook-secret-0123456789", "browser-read-token-0123456789"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run `make install` as root, or `apt-get install chromium` (Debian), "
                    "for the browser tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture
def server(db_config: DatabaseConfig, tmp_path: Path) -> Iterator[EngineProcess]:
    """An engine with a few days of history on the other instruments (BANK_NIFTY is left to the test)."""
    engine = EngineProcess(db_config, SECRET, log=tmp_path / "engine.log",
                           env={"PM_READ_TOKEN": TOKEN, "PM_MAX_SIGNAL_AGE_S": "0"}).start()
    assert engine.wait_ready(30), "engine did not start"
    start = datetime.now(timezone.utc) - timedelta(days=6)
    for body in generate_signals(80, seed=3, start=start, step=timedelta(minutes=30)):
        if body["instrument"] != "BANK_NIFTY":
            answer = httpx.post(f"http://127.0.0.1:{engine.port}/webhook", json={**body, "secret": SECRET}, timeout=10)
            assert answer.status_code == 200, answer.text
    yield engine
    engine.stop()


def alert(kind: str, instrument: str, price: float, minutes: float, **extra: Any) -> dict[str, Any]:
    stamp = (datetime.now(timezone.utc) - timedelta(minutes=minutes)).isoformat()
    return {**payload(kind, instrument, "Long_1" if kind != "EXIT" else "ALL", price, stamp, **extra),
            "secret": SECRET}


@pytest.mark.parametrize("width", [1280, 390])
def test_dashboard_end_to_end(browser: Any, server: EngineProcess, width: int, pg2: Any) -> None:
    url = f"http://127.0.0.1:{server.port}"
    # bypass_csp: the test's own wait_for_function expressions are evaluated as strings, which the
    # dashboard's policy forbids; test_exit_button_closes_a_position runs under the policy
    context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} {r.failure}"))
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    answers = iter(["browser test: news", "browser test"])
    page.on("dialog", lambda d: d.accept(next(answers, "")) if d.type == "prompt" else d.accept())
    with pg2.cursor() as cur:  # issue 28's labels: an instance stopped cleanly, a lock with no end
        cur.execute("SELECT pm.register_instance('old-host-1', 'old-host', 8081, 'x')")
        cur.execute("SELECT pm.stop_instance('old-host-1')")
        cur.execute("SELECT pm.lock_instrument('COPPER', 'infinity', 'book and broker differ', 'reconcile')")
    try:
        page.goto(url + "/")
        assert page.url.endswith("/login")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(url + "/")
        page.wait_for_function("document.getElementById('updated').textContent.startsWith('updated')")
        page.evaluate("window.__sameLoad = true")
        assert page.text_content("#mode-detail").startswith("the default (never changed)")  # not "migration 004"
        page.wait_for_selector("#instances tbody tr:has-text('old-host-1') td:has-text('stopped')", timeout=10_000)
        assert "crashed" not in page.locator("#instances tbody tr", has_text="old-host-1").text_content()
        assert "COPPER until unlocked: book and broker differ" in page.text_content("#locks")
        points = int(page.text_content("#curve-points").split()[0])

        body = alert("BASE_ENTRY", "BANK_NIFTY", 52000, 2, stop=51650, atr=350, er=0.85)
        entered = httpx.post(url + "/webhook", json=body, timeout=10).json()
        assert entered["outcome"] == "executed"
        page.wait_for_selector("#positions tbody td:has-text('BANK_NIFTY')", timeout=10_000)
        contract = ContractCalendar(DEFAULT_INSTRUMENTS).on("BANK_NIFTY", ist_date(datetime.now(timezone.utc)))
        assert contract is not None and entered["contract"] == contract.symbol
        row = page.locator("#positions tbody tr", has_text="BANK_NIFTY")
        assert row.locator("td.contract").text_content() == contract.symbol  # the contract it holds, and its expiry
        assert row.locator("td").nth(3).text_content().startswith(contract.expiry.isoformat() + " (")
        page.wait_for_function(f"parseInt(document.getElementById('curve-points').textContent) > {points}",
                               timeout=10_000)
        assert page.evaluate("window.__sameLoad") is True  # refreshed in place, not reloaded

        page.click("button[data-mode=halted]")
        page.wait_for_function("document.getElementById('mode').textContent === 'halted'", timeout=10_000)
        assert "dashboard:127.0.0.1" in page.text_content("#mode-detail")
        body = alert("BASE_ENTRY", "GOLD_MINI", 78000, 1, stop=77880, atr=600, er=0.5)
        blocked = httpx.post(url + "/webhook", json=body, timeout=10).json()
        assert blocked["outcome"] == "blocked"
        page.wait_for_selector("#signals tbody tr:has(td.blocked):has-text('trading paused')", timeout=10_000)
        page.click("button[data-mode=active]")
        page.wait_for_function("document.getElementById('mode').textContent === 'active'", timeout=10_000)
        page.wait_for_selector("#instances tbody td:has-text('yes')", timeout=10_000)  # the leader is shown
        if width <= 400:  # reads well on a phone: nothing wider than the screen but the scrolling tables
            assert page.evaluate("document.documentElement.scrollWidth") <= width
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / f"dashboard-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        if width > 400 and os.environ.get("PM_UPDATE_SCREENSHOT"):
            shutil.copy(shot, ROOT / "docs" / "dashboard.png")

        page.goto(url + "/docs")
        page.wait_for_selector("text=Receive a TradingView alert", timeout=15_000)
        page.screenshot(path=str(ARTIFACTS / f"docs-{width}.png"))
        page.goto(url + "/redoc")
        page.wait_for_selector("h2:has-text('Receive a TradingView alert')", timeout=15_000)
    finally:
        context.close()
    assert problems == []


def test_exit_button_closes_a_position(browser: Any, server: EngineProcess) -> None:
    url = f"http://127.0.0.1:{server.port}"
    httpx.post(url + "/webhook", json=alert("BASE_ENTRY", "BANK_NIFTY", 52000, 2, stop=51650, atr=350, er=0.85))
    context = browser.new_context(viewport={"width": 1280, "height": 900})  # the page's CSP enforced
    page = context.new_page()
    said: list[str] = []
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def answer(dialog: Any) -> None:
        said.append(dialog.message)
        dialog.accept("browser exit" if dialog.type == "prompt" else None)
    page.on("dialog", answer)
    try:
        page.goto(url + "/login")
        page.fill("#token", "wrong token")
        page.click("button[type=submit]")
        assert "not the read/operator token" in page.text_content(".error")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_selector("#positions button.exit", timeout=10_000)
        page.click("#positions button.exit")
        page.wait_for_selector("#trades tbody td:has-text('MANUAL: BROWSER EXIT')", timeout=10_000)
        assert said[0].startswith("Exit BANK_NIFTY_Long_1") and any(m.startswith("executed") for m in said)
        assert page.locator("#positions tbody td:has-text('BANK_NIFTY')").count() == 0
    finally:
        context.close()
    # the wrong token's answer is a 401 page (the browser reports it); nothing else may fail, CSP included
    assert [e for e in errors if "401" not in e] == []


def test_orders_panel_and_broker_health(browser: Any, db_config: DatabaseConfig, sim: Sim,  # noqa: F811
                                        tmp_path: Path) -> None:
    """Issue 21: the dashboard lists the broker's orders (filled at the fill price, against the signal's) and says
    when the broker's session has expired, with the time since."""
    contract = ContractCalendar(DEFAULT_INSTRUMENTS).on("GOLD_MINI", ist_date(datetime.now(timezone.utc)))
    assert contract is not None
    sim.control("price", {"symbol": contract.symbol, "price": "75012.5"})
    engine = EngineProcess(db_config, SECRET, log=tmp_path / "engine.log",
                           env={"PM_READ_TOKEN": TOKEN, "PM_BROKER": "openalgo", "PM_OPENALGO_URL": sim.url,
                                "PM_OPENALGO_API_KEY": sim.api_key, "PM_MARKET_HOURS": "always"}).start()
    assert engine.wait_ready(30), "engine did not start"
    url = f"http://127.0.0.1:{engine.port}"
    context = browser.new_context(viewport={"width": 390, "height": 900})  # a phone; the page's CSP enforced
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        sent = httpx.post(url + "/webhook", json=alert("BASE_ENTRY", "GOLD_MINI", 75000, 0.1, stop=74300, atr=400,
                                                       er=0.8), timeout=10)
        assert sent.json()["outcome"] == "executed", sent.text
        page.goto(url + "/login")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        row = page.locator("#orders tbody tr", has_text=contract.symbol)
        row.locator("td:has-text('filled')").first.wait_for(timeout=15_000)
        assert "@ 75012.50" in row.inner_text() and "75000.00" in row.inner_text() and "12.50" in row.inner_text()
        page.wait_for_selector("#broker-badge:has-text('broker connected')", timeout=10_000)
        sim.control("faults", {"session_expired": True})
        exit_sent = httpx.post(url + "/webhook", json=alert("EXIT", "GOLD_MINI", 75500, 0.05, reason="SIGNAL"),
                               timeout=10)
        assert exit_sent.json()["outcome"] == "executed", exit_sent.text  # decided while the broker is away
        page.wait_for_selector("#broker-badge.session_expired:has-text('broker session expired for')",
                               timeout=15_000)
        page.wait_for_selector("#orders tbody td.order-queued", timeout=10_000)  # the exit waits, queued
    finally:
        context.close()
        sim.control("faults", {"session_expired": False})
        engine.stop()
    assert errors == []
