"""The broker simulator as a real child process (``pm-engine broker-sim --port 0``), for the broker tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

API_KEY = "sim-test-key-5f1c9a2e"


@dataclass
class Sim:
    url: str
    api_key: str
    process: subprocess.Popen[str]

    def control(self, name: str, document: Any = None) -> Any:
        request = urllib.request.Request(f"{self.url}/sim/{name}", json.dumps(document or {}).encode(), method="POST",
                                         headers={"Content-Type": "application/json", **self.auth})
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    @property
    def auth(self) -> dict[str, str]:
        """The controls need the simulator's key (issue 29)."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def state(self) -> Any:
        request = urllib.request.Request(f"{self.url}/sim/state", headers=self.auth)
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def post(self, endpoint: str, document: Any) -> tuple[int, Any]:
        """A raw API call: (HTTP status, parsed body)."""
        request = urllib.request.Request(f"{self.url}/api/v1/{endpoint}", json.dumps(document).encode(),
                                         method="POST", headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def sim_process() -> Iterator[Sim]:
    process = subprocess.Popen([sys.executable, "-m", "pm_engine", "broker-sim", "--port", "0", "--api-key", API_KEY],
                               stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "OpenAlgo API on http://" in line, line
    url = line.split("on ", 1)[1].split("/api/v1/")[0]
    try:
        yield Sim(url, API_KEY, process)
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def sim(sim_process: Sim) -> Sim:
    """The module's simulator, reset: no orders, no prices, no faults."""
    sim_process.control("reset")
    return sim_process
