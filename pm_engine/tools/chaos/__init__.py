"""``pm-engine chaos``: crashes, database restarts, concurrent instances and hostile input lose nothing.

A driver sends a stream of signals (30 % repeated, some of the repeats to a second instance at
the same moment) to N engine processes sharing one PostgreSQL, one distinct signal at a time,
resending any request whose connection failed, timed out or got a 503 — as a retrying proxy
would. Meanwhile the harness SIGKILLs engine processes (and restarts them) and restarts
PostgreSQL with an immediate shutdown. The engines also run with a small chance of killing
themselves in the worst window (``PM_FAULT_CRASH=after_commit``: state durable, orders unsent).

At the end the database must equal an in-memory replay of the same stream through the same
trading core (the reference model), position by position, with exactly one outcome row per
distinct signal, no order twice, closed equity = initial capital + Σ realized P&L (checked in
SQL), and no secret in any log. Then a fuzzer sends hostile webhooks: every one must get a 4xx
JSON error and leave the database byte-for-byte unchanged.

One module per concern: ``settings`` (what a run does), ``harness`` (processes, chaos agent, driver),
``checks`` (the database against the reference), ``hostile`` (hostile input); ``run_chaos`` here runs them in order.
"""

from __future__ import annotations

import shutil
import time

from pm_engine.tools.chaos.checks import Verdict, leaked_secrets, stale_views, verify
from pm_engine.tools.chaos.harness import Harness
from pm_engine.tools.chaos.hostile import fuzz
from pm_engine.tools.chaos.settings import BROKER, SETTLE_S, SHORT, SHORT_BROKER, ChaosSettings
from pm_engine.tools.samples import mixed_stream

__all__ = ["BROKER", "SHORT", "SHORT_BROKER", "ChaosSettings", "Verdict", "run_chaos", "verify"]


def run_chaos(settings: ChaosSettings = ChaosSettings(), progress: bool = True) -> int:
    """The whole run; returns 0 when nothing was lost, duplicated or mismatched, else 1."""
    started = time.monotonic()
    stream = mixed_stream(settings.signals, seed=settings.seed, duplicate_ratio=settings.duplicate_ratio)
    harness = Harness(settings)
    try:
        harness.start()
        print(f"chaos: {settings.signals} signals to {settings.instances} engines on 127.0.0.1:"
              f"{harness.cluster.port}; {settings.kills} kills, {settings.db_restarts} database restarts, "
              f"self-kill chance after commit {settings.fault_after_commit}"
              + (f"; orders to the broker simulator, {settings.broker_faults} broker faults" if settings.broker
                 else ""), flush=True)
        answers = harness.drive(stream, progress)
        for instance in harness.instances:
            instance.wait_ready()
        waiting = harness.settle() if harness.sim is not None else []
        verdict = verify(harness.config, stream, answers, harness.sim.account if harness.sim else None)
        if waiting:
            verdict.mismatch(f"orders of {waiting} still in flight {SETTLE_S:.0f} s after the stream")
        for note in stale_views(harness):
            verdict.mismatch(note)
        leaks = leaked_secrets(harness)
        if leaks:
            verdict.mismatch(f"the webhook secret appears {leaks} time(s) in logs or /status")
        fuzz_report = fuzz(harness, settings.fuzz) if settings.fuzz else None
    finally:
        harness.close()
    c = harness.counts
    print(f"requests {c.requests}, engine restarts {c.restarts} (self-kills after commit {c.fault_kills}), "
          f"slowest 503 {c.max_503_ms:.0f} ms, /ready said 503 during {c.ready_503} of {c.db_restarts} outages, "
          f"defect answers {c.server_errors}, {time.monotonic() - started:.0f} s")
    if fuzz_report:
        print(fuzz_report.summary())
        if fuzz_report.failures:
            verdict.mismatches += fuzz_report.failures
            verdict.notes.extend(fuzz_report.notes[:10])
        if not fuzz_report.unchanged:
            verdict.mismatch("the fuzzer changed the database")
    if c.max_503_ms >= 3000:
        verdict.mismatch(f"a 503 took {c.max_503_ms:.0f} ms (TradingView waits 3 s)")
    for note in verdict.notes:
        print(f"  ! {note}")
    if settings.broker:
        print(f"broker: {c.broker_faults} faults played, {c.reviewed} needs_review order(s) resolved as the trader "
              f"would; every order of ours is one order at the broker, "
              "and the broker's net position per contract is checked against the book")
    print(f"chaos: sent={c.sent} retried={c.retried} duplicates={c.duplicates} kills={c.kills + c.fault_kills} "
          f"db_restarts={c.db_restarts} lost={verdict.lost} duplicated={verdict.duplicated} "
          f"mismatches={verdict.mismatches}", flush=True)
    if verdict.lost == verdict.duplicated == verdict.mismatches == 0:
        shutil.rmtree(harness.logdir, ignore_errors=True)
        return 0
    print(f"engine logs kept in {harness.logdir}")
    return 1
