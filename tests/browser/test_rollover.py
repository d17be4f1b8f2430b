"""Issue 22 on the dashboard: each group's contract, roll date, days to roll and roll state, before and after
``pm-engine rollover --all --force`` (paper broker: the legs fill inside the database), in a real browser."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from pm_engine.config import DatabaseConfig
from pm_engine.core.contracts import ContractCalendar, ist_date
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.tools.children import EngineProcess
from tests.browser.test_dashboard import SECRET, TOKEN, alert, browser  # noqa: F401 - the browser fixture


@pytest.fixture
def server(db_config: DatabaseConfig, tmp_path: Path) -> Iterator[EngineProcess]:
    engine = EngineProcess(db_config, SECRET, log=tmp_path / "engine.log",
                           env={"PM_READ_TOKEN": TOKEN, "PM_MAX_SIGNAL_AGE_S": "0"}).start()
    assert engine.wait_ready(30), "engine did not start"
    yield engine
    engine.stop()


def test_dashboard_shows_each_groups_roll(browser: Any, server: EngineProcess,  # noqa: F811
                                          db_config: DatabaseConfig) -> None:
    url = f"http://127.0.0.1:{server.port}"
    today = ist_date(datetime.now(timezone.utc))
    calendar = ContractCalendar(DEFAULT_INSTRUMENTS)
    held = calendar.on("BANK_NIFTY", today)
    assert held is not None
    following = calendar.after(held)
    entered = httpx.post(url + "/webhook", json=alert("BASE_ENTRY", "BANK_NIFTY", 52000, 2, stop=51650, atr=350,
                                                      er=0.85), timeout=10).json()
    assert entered["outcome"] == "executed", entered
    context = browser.new_context(viewport={"width": 390, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    try:
        page.goto(url + "/login")
        page.fill("#token", TOKEN)
        page.click("button[type=submit]")
        page.wait_for_url(url + "/")
        page.wait_for_selector(f"#rollover tbody td:has-text('{held.symbol}')", timeout=10_000)
        cells = page.locator("#rollover tbody tr", has_text="BANK_NIFTY").locator("td").all_text_contents()
        assert cells == ["BANK_NIFTY", held.symbol, held.roll_date.isoformat(), str((held.roll_date - today).days),
                         "none", following.symbol]
        done = subprocess.run([sys.executable, "-m", "pm_engine", "rollover", "--all", "--force", "--json"],
                              env={**os.environ, "DATABASE_URL": db_config.url(hide_password=False)},
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert [s["state"] for s in json.loads(done.stdout)["started"]] == ["rolled"]
        after_that = calendar.after(following).symbol  # the next contract is now the one after
        page.wait_for_selector(f"#rollover tbody td:has-text('{after_that}')", timeout=10_000)
        row = page.locator("#rollover tbody tr", has_text="BANK_NIFTY").locator("td").all_text_contents()
        assert row[1] == following.symbol and row[4] == "none"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390  # readable on a phone
        [position] = httpx.get(url + "/status", headers={"Authorization": f"Bearer {TOKEN}"}).json()["positions"]
        assert (position["rollover_count"], position["rollover_status"], position["contract"]) == \
            (1, "none", following.symbol)
    finally:
        context.close()
    assert problems == []
