"""What the benchmark and the chaos harness share: engine child processes (``python -m pm_engine live``),
loopback HTTP clients, and one-shot named queries for their final checks."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Optional

import psycopg2
import psycopg2.extras

from pm_engine.ops.cluster import free_port
from pm_engine.store.connection import DatabaseConfig
from pm_engine.tools.queries import QUERIES


def fetch_all(config: DatabaseConfig, name: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of one named query on a connection of its own (checks after a run)."""
    conn = psycopg2.connect(**config.dsn_kwargs())
    try:
        with conn.cursor() as cur:
            cur.execute(QUERIES[name], params)
            return list(cur.fetchall())
    finally:
        conn.close()


def fetch_one(config: DatabaseConfig, name: str, params: tuple[Any, ...] = ()) -> Any:
    """The first column of the first row of one named query (None when it has no row)."""
    rows = fetch_all(config, name, params)
    return rows[0][0] if rows else None


def committed_book(config: DatabaseConfig) -> dict[str, Any]:
    """The book as the database has committed it: closed equity and each open position's lots, entry and stops."""
    conn = psycopg2.connect(**config.dsn_kwargs())
    try:
        psycopg2.extras.register_default_jsonb(conn, loads=lambda text: json.loads(text, parse_float=Decimal))
        with conn.cursor() as cur:
            cur.execute(QUERIES["load_state"])
            state = cur.fetchone()[0]
    finally:
        conn.close()
    return {"closed_equity": Decimal(state["portfolio"]["closed_equity"]),
            "positions": {p["position_id"]: (int(p["lots"]), Decimal(p["entry_price"]), Decimal(p["current_stop"]))
                          for p in state["positions"]}}


def served_book(status: dict[str, Any]) -> dict[str, Any]:
    """The same shape from a ``GET /status`` body, for comparing what an instance shows with the database."""
    return {"closed_equity": Decimal(status["closed_equity"]),
            "positions": {p["position_id"]: (int(p["lots"]), Decimal(p["entry_price"]), Decimal(p["current_stop"]))
                          for p in status["positions"]}}


def http_request(port: int, method: str, path: str, body: Optional[bytes] = None,
                 headers: Optional[dict[str, str]] = None, timeout: float = 5.0) -> tuple[int, Any]:
    """One request on a fresh loopback connection: (status, the JSON body or None)."""
    client = KeepAliveClient(port, timeout)
    try:
        return client.request(method, path, body, headers or {})
    finally:
        client.close()


class KeepAliveClient:
    """One keep-alive loopback connection (http.client: the lightest sender, so a load driver is not the bound)."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.port, self.timeout = port, timeout
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        return self.request("POST", path, body, headers)

    def request(self, method: str, path: str, body: Optional[bytes], headers: dict[str, str]) -> tuple[int, Any]:
        """(status, the JSON body or None); a failed request drops the connection and raises."""
        try:
            self.conn.request(method, path, body, headers)
            response = self.conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            raise
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, None

    def close(self) -> None:
        self.conn.close()


class EngineProcess:
    """A ``live`` engine on a fixed free port against ``config``; restartable; output to ``log`` (or dropped)."""

    def __init__(self, config: DatabaseConfig, secret: str, log: Optional[Path] = None,
                 env: Optional[dict[str, str]] = None, args: tuple[str, ...] = ()) -> None:
        self.config, self.secret, self.log = config, secret, log
        self.extra_env = dict(env or {})
        self.extra_args = args
        self.port = free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.killed_by_us = False

    def start(self) -> "EngineProcess":
        env = {**os.environ, "DATABASE_URL": self.config.url(hide_password=False), "PM_WEBHOOK_SECRET": self.secret,
               **self.extra_env}
        command = [sys.executable, "-m", "pm_engine", "live", "--port", str(self.port), *self.extra_args]
        if self.log is None:
            self.proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        else:
            with self.log.open("ab") as out:
                self.proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.killed_by_us = False
        return self

    def wait_ready(self, timeout: float = 30) -> bool:
        """Wait until GET /health answers; False if the process died or the time ran out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                return False
            try:
                if http_request(self.port, "GET", "/health", timeout=1)[0] == 200:
                    return True
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.05)
        return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (a crash: no cleanup of any kind)."""
        if self.proc is not None and self.alive():
            self.killed_by_us = True
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
