"""Issue 23 in a real browser: the dashboard's capital form, under the page's CSP, against a real engine.

Log in; deposit through the form, confirm (the question shows the closed equity before and after), and the
ledger and the closed equity update without a reload; a dismissed confirmation records nothing; a withdrawal
below the margin in use is refused with the reason and records nothing; the card fits a 390 px screen.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.tools.children import EngineProcess
from tests.helpers import payload, rows

CHROMIUM = Path("/usr/bin/chromium")
SECRET, TOKEN = "browser-capital-secret-0123456789", "browser-capital-token-0123456789"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture
def page_on_engine(db_config: DatabaseConfig, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    """A logged-out page (CSP enforced) and the address of an engine holding a 4-lot BANK_NIFTY base."""
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: run `make install` as root, or `apt-get install chromium` (Debian)")
    from playwright.sync_api import sync_playwright

    engine = EngineProcess(db_config, SECRET, log=tmp_path / "engine.log",
                           env={"PM_READ_TOKEN": TOKEN, "PM_MAX_SIGNAL_AGE_S": "0"}).start()
    try:
        assert engine.wait_ready(30), "engine did not start"
        url = f"http://127.0.0.1:{engine.port}"
        stamp = (datetime.now(timezone.utc) - timedelta(minutes=2)).isoformat()
        entered = httpx.post(url + "/webhook", json={**payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, stamp,
                                                               stop=51650, atr=350, er=0.85), "secret": SECRET})
        assert entered.json()["lots"] == 4  # margin in use 1,080,000
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            try:
                yield context.new_page(), url
            finally:
                context.close()
                browser.close()
    finally:
        engine.stop()


def test_capital_form_confirms_records_and_refuses(page_on_engine: tuple[Any, str], db_config: DatabaseConfig) -> None:
    page, url = page_on_engine
    said: list[str] = []
    replies: list[bool] = [True, False, True]  # confirm the deposit, dismiss the withdrawal, confirm the big one
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))

    def answer(dialog: Any) -> None:
        said.append(dialog.message)
        if dialog.type == "confirm" and not replies.pop(0):
            dialog.dismiss()
        else:
            dialog.accept()
    page.on("dialog", answer)

    def ledger() -> list[tuple[Any, ...]]:
        return rows(db_config, "SELECT kind, amount, note, recorded_by FROM pm.capital_flows ORDER BY id")

    page.goto(url + "/login")
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector("#closed-equity:has-text('50,00,000.00')", timeout=10_000)

    page.select_option("#capital-kind", "deposit")
    page.fill("#capital-amount", "1000000")
    page.fill("#capital-note", "browser deposit")
    page.click("#capital-form button[type=submit]")
    page.wait_for_selector("#capital-ledger li:has-text('browser deposit')", timeout=10_000)
    page.wait_for_selector("#closed-equity:has-text('60,00,000.00')", timeout=10_000)
    assert said[0] == ("Deposit ₹10,00,000.00? Closed equity 50,00,000.00 → 60,00,000.00. "
                       "Sizing uses it from the next signal.")
    assert "recorded" in page.text_content("#capital-result")
    recorded = ledger()
    assert [(k, str(a), n) for k, a, n, _ in recorded] == [("deposit", "1000000.00", "browser deposit")]
    assert recorded[0][3].startswith("dashboard:")  # who: the dashboard session

    page.select_option("#capital-kind", "withdrawal")
    page.fill("#capital-amount", "500000")
    page.click("#capital-form button[type=submit]")
    page.wait_for_timeout(500)  # nothing should happen: give a wrong POST the time to land
    assert said[1].startswith("Withdraw ₹5,00,000.00? Closed equity 60,00,000.00 → 55,00,000.00.")
    assert len(ledger()) == 1, "a dismissed confirmation records nothing"

    page.fill("#capital-amount", "4920000.01")  # leaves 1,079,999.99 below the 1,080,000 in use
    page.click("#capital-form button[type=submit]")
    for _ in range(100):  # the confirmation, then the refusal's alert
        if len(said) >= 4:
            break
        page.wait_for_timeout(100)
    assert len(said) == 4 and said[3].startswith("Refused: withdrawal of 4920000.01 would leave closed equity "
                                                 "1079999.99 below the margin in use 1080000.00"), said
    assert len(ledger()) == 1, "a refused withdrawal records nothing"

    page.set_viewport_size({"width": 390, "height": 900})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert [e for e in errors if "409" not in e] == []  # the refusal's 409 is reported by the browser; nothing else
