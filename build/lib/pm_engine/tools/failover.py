"""``pm-engine chaos --failover`` (``make ha``): lose the database's primary machine mid-stream.

A pg_auto_failover formation on loopback (``tools/formation.py``), the schema deployed through the
multi-host URL, two engine processes on that URL and a signal stream sent in order (repeats now
and then to both engines at once), resent on 503 or a refused connection as TradingView (or a
retrying proxy) would. Partway through, the primary's keeper and postmaster are SIGKILLed; the
formation promotes the standby and the stream goes on. The check: every signal acknowledged
before the kill (answered executed, blocked or duplicate) is on the new primary; nothing executed
twice; the database equals an in-memory replay of the stream. Last line:
``failover: acked=N lost=0 duplicated=0 mismatches=0 failover_s=X.X``.
"""

from __future__ import annotations

import http.client
import json
import random
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import psycopg2

from pm_engine.core.instruments import DEFAULT_INSTRUMENTS
from pm_engine.core.signals import parse_signal
from pm_engine.store.deploy import deploy
from pm_engine.tools.chaos import verify
from pm_engine.tools.children import EngineProcess, fetch_all, fetch_one, http_request
from pm_engine.tools.formation import Formation
from pm_engine.tools.samples import mixed_stream


@dataclass(frozen=True)
class FailoverSettings:
    signals: int = 300
    kill_at: float = 0.4  # the kill comes after this share of the stream
    synchronous: bool = True
    seed: int = 31
    give_up_s: float = 90.0  # a signal still refused after this long is counted lost
    # seconds the primary's WAL sender is stopped (SIGSTOP) just before the primary dies: a broken link. The
    # kill then comes by the clock, not by the stream (a synchronous commit waits for the standby meanwhile)
    stall_s: float = 0.0


@dataclass
class Clock:
    """When the primary died, and the refusal/success times that bound the failover as clients saw it."""

    killed_at: Optional[float] = None
    first_refused: Optional[float] = None
    first_executed_after: Optional[float] = None
    refusals: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def run_failover(settings: FailoverSettings = FailoverSettings(), progress: bool = True) -> int:
    """The whole run; returns 0 when nothing acknowledged was lost, nothing doubled and nothing differs."""
    started = time.monotonic()
    logdir = Path(tempfile.mkdtemp(prefix="pm-engine-failover-"))
    formation = Formation(synchronous=settings.synchronous)
    engines: list[EngineProcess] = []
    try:
        formation.start()
        print(f"failover: formation up in {time.monotonic() - started:.0f} s "
              f"({'synchronous' if settings.synchronous else 'asynchronous'} replication): {formation.describe()}",
              flush=True)
        config = formation.config()
        deploy(config)
        secret = secrets.token_urlsafe(24)
        # the second engine serves the reads that may lag from the standby (DATABASE_READ_URL)
        reads = {"DATABASE_READ_URL": formation.standby_config().url(hide_password=False)}
        engines = [EngineProcess(config, secret, log=logdir / f"engine{i}.log",
                                 env={"PM_MAX_SIGNAL_AGE_S": "0", **(reads if i else {})}).start() for i in range(2)]
        for engine in engines:
            if not engine.wait_ready(60):
                raise RuntimeError(f"an engine did not start; logs in {logdir}")
        status, body = http_request(engines[1].port, "GET", "/status?replica=1")
        replica = body.get("replica", {}) if status == 200 and isinstance(body, dict) else {}
        print(f"failover: reads that may lag come from a standby: {replica.get('standby')} "
              f"(replay lag {replica.get('lag_s')} s)", flush=True)
        stream = mixed_stream(settings.signals, seed=settings.seed, duplicate_ratio=0.2)
        clock = Clock()
        answers, before_kill = drive(stream, engines, secret, formation, settings, clock)
        leader_s = wait_for_leader(config, clock)
        logged = {fp for fp, _ in fetch_all(config, "bench_logged_fingerprints")}
        lost = len(before_kill - logged)
        verdict = verify(config, stream, answers)
        acked = sum(1 for got in answers.values() if any(a in ("executed", "blocked", "duplicate") for a in got))
        failover_s = ((clock.first_executed_after or clock.first_refused or 0) - (clock.first_refused or 0)
                      if clock.first_refused else 0.0)
        if replica.get("standby") is not True:
            verdict.mismatch(f"GET /status?replica=1 did not read from the standby: {status} {body}")
        if leader_s is None:
            verdict.mismatch("no background-job leader on the new primary, or orders left pending, after 40 s")
        else:
            print(f"failover: the job leader's advisory lock is held on the new primary and no order is pending, "
                  f"{leader_s:.1f} s after the kill", flush=True)
        for note in verdict.notes[:10]:
            print(f"  ! {note}")
        print(f"failover: {len(before_kill)} signals acknowledged before the kill, {clock.refusals} refusals "
              f"(503 or no connection) during the failover, {time.monotonic() - started:.0f} s in all", flush=True)
        print(f"failover: acked={acked} lost={lost} duplicated={verdict.duplicated} mismatches={verdict.mismatches} "
              f"failover_s={failover_s:.1f}", flush=True)
        ok = lost == verdict.duplicated == verdict.mismatches == 0
        if ok:
            shutil.rmtree(logdir, ignore_errors=True)
        else:
            print(f"engine logs kept in {logdir}")
        return 0 if ok else 1
    finally:
        for engine in engines:
            engine.stop()
        formation.destroy()


def drive(stream: list[dict[str, Any]], engines: list[EngineProcess], secret: str, formation: Formation,
          settings: FailoverSettings, clock: Clock) -> tuple[dict[str, list[str]], set[str]]:
    """Send the stream in order; kill the primary partway. Returns every answer, and what was acked before."""
    rng = random.Random(settings.seed)
    answers: dict[str, list[str]] = {}
    answered: dict[str, float] = {}  # when each signal was first acknowledged
    timers: list[threading.Timer] = []
    kill_index = int(len(stream) * settings.kill_at)
    for i, payload in enumerate(stream):
        fp = parse_signal(payload, DEFAULT_INSTRUMENTS).fingerprint
        body = json.dumps(payload).encode()
        if i == kill_index and settings.stall_s > 0:  # replication stops, then the primary dies
            stalled = formation.stall_replication()
            timers.append(threading.Timer(settings.stall_s, _kill, (formation, clock, stalled)))
            timers[-1].start()
        elif i == kill_index:  # a moment into this request: the machine dies mid-flight
            timers.append(threading.Timer(rng.uniform(0, 0.003), _kill, (formation, clock)))
            timers[-1].start()
        target = rng.randrange(len(engines))
        targets = [target, 1 - target] if fp in answers and rng.random() < 0.5 else [target]
        got: list[tuple[str, float]] = []
        threads = [threading.Thread(target=lambda t=t: got.append(send(engines, t, body, secret, settings, clock)))
                   for t in targets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        answers.setdefault(fp, []).extend(outcome for outcome, _ in got)
        answered[fp] = min([answered.get(fp, float("inf"))] + [at for outcome, at in got
                                                               if outcome in ("executed", "blocked", "duplicate")])
    for timer in timers:  # the stream may end before a delayed kill: the kill still happens, then the checks
        timer.join()
    killed = clock.killed_at or float("inf")
    return answers, {fp for fp, at in answered.items() if at < killed}


def wait_for_leader(config: Any, clock: Clock, timeout: float = 40.0) -> Optional[float]:
    """Seconds from the kill until one instance holds the jobs lock on the new primary and nothing is pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if fetch_one(config, "job_lock_holders") == 1 and fetch_one(config, "pending_order_count") == 0:
                return time.monotonic() - (clock.killed_at or time.monotonic())
        except psycopg2.Error:
            pass
        time.sleep(0.5)
    return None


def _kill(formation: Formation, clock: Clock, stalled: Optional[int] = None) -> None:
    formation.kill_primary()
    clock.killed_at = time.monotonic()
    if stalled is not None:
        formation.resume(stalled)


def send(engines: list[EngineProcess], target: int, body: bytes, secret: str, settings: FailoverSettings,
         clock: Clock) -> tuple[str, float]:
    """Resend until an engine answers 200 (after 503 or a refused connection), timing the failover.

    Returns the outcome and when it arrived."""
    headers = {"Content-Type": "text/plain", "X-PM-Secret": secret}
    deadline = time.monotonic() + settings.give_up_s
    attempt = 0
    while time.monotonic() < deadline:
        engine = engines[(target + attempt) % len(engines)]
        attempt += 1
        try:
            status, answer = http_request(engine.port, "POST", "/webhook", body, headers, timeout=10)
        except (OSError, http.client.HTTPException):
            status, answer = 0, None
        if status == 200:
            outcome = str(answer["outcome"])
            with clock.lock:
                if (outcome == "executed" and clock.first_refused is not None
                        and clock.first_executed_after is None):
                    clock.first_executed_after = time.monotonic()
            return outcome, time.monotonic()
        if status in (0, 503):
            with clock.lock:
                clock.refusals += 1
                if clock.first_refused is None:
                    clock.first_refused = time.monotonic()
            time.sleep(0.2)
            continue
        return f"error {status}: {answer}", time.monotonic()
    return "error: no answer within the give-up time", time.monotonic()
