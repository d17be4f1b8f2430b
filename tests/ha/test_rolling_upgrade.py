"""Two engines on one database, upgraded one at a time (docs/operations.md, "Upgrading two instances one at a time").

A stream of alerts (a fifth of them repeats) goes to the two engines as a load balancer would send it: each
alert to one of them, and to the other when that one refuses the connection or answers 503. Meanwhile each
engine in turn is stopped (SIGTERM, its clean shutdown), the database is deployed — the first time a changed
``60_apply_signal.sql``, the function every signal calls, the second time ``pm-engine db-deploy``, which puts
the shipped file back — and the engine is started again. The other engine answers every alert while one is
down. At the end the database must equal an in-memory replay of the stream: nothing lost, nothing doubled.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pm_engine.config import DatabaseConfig
from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.core.signals import parse_signal
from pm_engine.store.deploy import DB_DIR, deploy
from pm_engine.tools.chaos import verify
from pm_engine.tools.children import EngineProcess
from pm_engine.tools.failover import Clock, FailoverSettings, send
from pm_engine.tools.samples import mixed_stream

SECRET = "rolling-upgrade-webhook-secret-0123456789"


class Stream(threading.Thread):
    """Sends the stream in order, each alert to engine ``i % 2`` first; records every answer and its time."""

    def __init__(self, stream: list[dict[str, Any]], engines: list[EngineProcess]) -> None:
        super().__init__(daemon=True)
        self.stream, self.engines = stream, engines
        self.answers: dict[str, list[str]] = {}
        self.answered_at: list[float] = []
        self.settings, self.clock = FailoverSettings(give_up_s=60.0), Clock()
        self.pace = threading.Event()  # set: go on at full speed; clear: one alert every 0.05 s

    def run(self) -> None:
        for i, payload in enumerate(self.stream):
            fingerprint = parse_signal(payload, DEFAULT_INSTRUMENTS, max_age=None).fingerprint
            outcome, at = send(self.engines, i % 2, json.dumps(payload).encode(), SECRET, self.settings, self.clock)
            self.answers.setdefault(fingerprint, []).append(outcome)
            self.answered_at.append(at)
            if not self.pace.is_set():
                time.sleep(0.05)

    def answered(self) -> int:
        return len(self.answered_at)

    def wait_for(self, count: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.answered() < count and self.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.answered() >= count, f"only {self.answered()} alerts answered"


def upgraded_db_dir(tmp: Path) -> Path:
    """A copy of db/ whose function file for signals differs (a comment), so the deploy re-applies it."""
    copy = tmp / "db"
    shutil.copytree(DB_DIR, copy)
    signals = copy / "functions" / "60_apply_signal.sql"
    signals.write_text(signals.read_text() + "\n-- the next version\n")
    return copy


def db_deploy_cli(config: DatabaseConfig) -> str:
    done = subprocess.run([sys.executable, "-m", "pm_engine", "db-deploy"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "DATABASE_URL": config.url(hide_password=False)})
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_two_instances_upgraded_one_at_a_time_lose_and_double_nothing(db_config: DatabaseConfig,
                                                                      tmp_path: Path) -> None:
    engines = [EngineProcess(db_config, SECRET, log=tmp_path / f"engine{i}.log", env={"PM_MAX_SIGNAL_AGE_S": "0"})
               for i in range(2)]
    stream = mixed_stream(160, seed=23, duplicate_ratio=0.2)
    sender = Stream(stream, engines)
    try:
        for engine in engines:
            assert engine.start().wait_ready(60), (tmp_path / "engine0.log").read_text()[-2000:]
        sender.start()
        windows: list[tuple[float, float]] = []
        for i, engine in enumerate(engines):
            sender.wait_for(30 + 50 * i)
            down = time.monotonic()
            engine.stop()
            assert not engine.alive()
            if i == 0:
                report = deploy(db_config, upgraded_db_dir(tmp_path))
                assert "60_apply_signal.sql" in report.summary(), report.summary()
            else:
                assert "60_apply_signal.sql" in db_deploy_cli(db_config)  # the shipped file again
            before = sender.answered()
            sender.wait_for(before + 10)  # the other engine answers alerts while this one is down
            assert engine.start().wait_ready(60), (tmp_path / f"engine{i}.log").read_text()[-2000:]
            windows.append((down, time.monotonic()))
        sender.pace.set()
        sender.join(timeout=180)
        assert not sender.is_alive()
    finally:
        for engine in engines:
            engine.stop()
    distinct = {parse_signal(p, DEFAULT_INSTRUMENTS, max_age=None).fingerprint for p in stream}
    assert len(sender.answers) == len(distinct)
    for start, end in windows:
        assert sum(1 for at in sender.answered_at if start <= at <= end) >= 10
    refused = {fp: got for fp, got in sender.answers.items() if any(a.startswith("error") for a in got)}
    assert not refused, refused
    verdict = verify(db_config, stream, sender.answers)
    assert (verdict.lost, verdict.duplicated, verdict.mismatches) == (0, 0, 0), verdict.notes[:10]
    assert "nothing to do" in db_deploy_cli(db_config)
