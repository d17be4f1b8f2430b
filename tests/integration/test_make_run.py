"""`make run` end to end: embedded cluster, printed curl line, status, Ctrl+C, and state kept across runs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from pm_engine.core.contracts import ContractCalendar, ist_date
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.ops.cluster import free_port


def start(var: Path, port: int, embedded: str) -> tuple[subprocess.Popen[str], list[str]]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PM_WEBHOOK_SECRET")}
    env.update(PM_VAR_DIR=str(var), PM_EMBEDDED=embedded)
    proc = subprocess.Popen([sys.executable, "-m", "pm_engine", "run", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    deadline = time.monotonic() + 60
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "serving http" in line:  # printed just before uvicorn binds: wait until it answers
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        return proc, lines
                except httpx.TransportError:
                    time.sleep(0.05)
            break
    proc.kill()
    raise AssertionError("make run did not start:\n" + "".join(lines))


def status(var: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    return subprocess.run([sys.executable, "-m", "pm_engine", "status"], env={**env, "PM_VAR_DIR": str(var)},
                          capture_output=True, text=True, timeout=30, check=True).stdout


@pytest.mark.parametrize("embedded", ["installed", "pgserver"])
def test_make_run_curl_status_restart(tmp_path: Path, embedded: str) -> None:
    var, port = tmp_path / "var", free_port()
    proc, lines = start(var, port, embedded)
    try:
        curl = next(line for line in lines if "curl -s -X POST" in line)
        body = re.search(r"-d '(.*)'", curl)
        assert body is not None
        sent = httpx.post(f"http://127.0.0.1:{port}/webhook", content=body.group(1),
                          headers={"Content-Type": "text/plain"}, timeout=10)
        assert sent.json()["outcome"] == "executed", sent.text
        shown = status(var)
        assert "BANK_NIFTY_Long_1" in shown
        contract = ContractCalendar(DEFAULT_INSTRUMENTS).on("BANK_NIFTY", ist_date(datetime.now(timezone.utc)))
        assert contract is not None and f"{contract.symbol} (expiry {contract.expiry.isoformat()}" in shown
        secret = json.loads((var / "embedded.json").read_text())["webhook_secret"]
        assert oct((var / "embedded.json").stat().st_mode)[-3:] == "600" and secret in curl
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    stopped = subprocess.run([sys.executable, "-m", "pm_engine", "status"], capture_output=True, text=True,
                             env={**os.environ, "PM_VAR_DIR": str(var)}, timeout=30)
    assert stopped.returncode == 1 and "is `make run` running?" in stopped.stderr  # clear, and fast
    proc, _ = start(var, port, embedded)
    try:
        assert "BANK_NIFTY_Long_1" in status(var)  # the same state on the next run
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
