"""Hostile input: webhooks from hypothesis strategies, each a 4xx JSON error that leaves the database unchanged but
for its audit row."""

from __future__ import annotations

import http.client
import time
from dataclasses import dataclass, field
from typing import Optional

from pm_engine.tools.chaos.harness import Harness
from pm_engine.tools.children import KeepAliveClient, fetch_all, fetch_one, http_request


@dataclass
class FuzzReport:
    sent: int = 0
    by_status: dict[int, int] = field(default_factory=dict)
    failures: int = 0
    unchanged: bool = True
    audited: int = 0  # rows request_log gained
    dropped: int = 0  # refusals over the audit's per-source cap (counted by the engine, not written)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(self.by_status.items()))
        return (f"fuzz: {self.sent} hostile webhooks -> {statuses}; {self.failures} not a 4xx JSON error; "
                f"database {'unchanged' if self.unchanged else 'CHANGED'} but for {self.audited} audit rows "
                f"({self.dropped} over the flood cap)")


def fuzz(harness: Harness, count: int) -> Optional[FuzzReport]:
    """``count`` hostile webhooks from hypothesis strategies; each must be a 4xx JSON error, nothing written."""
    try:
        from pm_engine.tools.fuzzing import hostile_requests
    except ImportError:  # pragma: no cover - a runtime-only install
        print("fuzz skipped: hypothesis is not installed (pip install -r requirements-dev.txt)")
        return None

    instance = next(i for i in harness.instances if i.alive())
    instance.wait_ready()
    before = fetch_all(harness.config, "db_checksums")
    report = FuzzReport()
    client = KeepAliveClient(instance.port, timeout=5)  # keep-alive: 10,000 requests

    def check(case: tuple[bytes, dict[str, str], str]) -> None:
        body, headers, path = case
        try:
            try:
                status, answer = client.post(path, body, headers)
            except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                # the engine closed the idle keep-alive connection (5 s; a loaded machine can pause the
                # generator that long): a client resends on a fresh connection, once
                status, answer = client.post(path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            report.failures += 1
            report.notes.append(f"fuzz: no answer ({exc.__class__.__name__}) to {body[:80]!r}")
            return
        report.sent += 1
        report.by_status[status] = report.by_status.get(status, 0) + 1
        if not (400 <= status < 500 and isinstance(answer, dict) and answer.get("error")):
            report.failures += 1
            if len(report.notes) < 10:
                report.notes.append(f"fuzz: {status} {answer!r} for {body[:120]!r}")

    def audit_counters() -> dict[str, int]:
        status, body = http_request(instance.port, "GET", "/status")  # loopback: no read token configured here
        return dict(body["refusal_audit"]) if status == 200 else {"written": 0, "dropped": 0}

    logged_before, counters_before = int(fetch_one(harness.config, "request_log_count")), audit_counters()
    hostile_requests(check, count, harness.secret)
    client.close()
    report.unchanged = fetch_all(harness.config, "db_checksums") == before
    # every refusal has its audit row, up to the flood cap: wait for the writer's last batch
    deadline = time.monotonic() + 10
    while True:
        counters = audit_counters()
        report.dropped = counters["dropped"] - counters_before["dropped"]
        report.audited = int(fetch_one(harness.config, "request_log_count")) - logged_before
        if report.audited == report.sent - report.dropped or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if report.audited != report.sent - report.dropped:
        report.failures += 1
        report.notes.append(f"fuzz: {report.sent} refusals, {report.dropped} over the cap, but {report.audited} "
                            "audit rows")
    secrets_stored = int(fetch_one(harness.config, "request_log_containing", (harness.secret, harness.secret)))
    if secrets_stored:
        report.failures += 1
        report.notes.append(f"fuzz: the webhook secret is stored in {secrets_stored} audit row(s)")
    return report
