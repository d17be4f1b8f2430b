"""The short chaos run (``pm-engine chaos --short``) inside ``make test``; ``make chaos`` runs the full one."""

from __future__ import annotations

import re
import subprocess
import sys


def test_short_chaos_run_loses_and_duplicates_nothing() -> None:
    run = subprocess.run([sys.executable, "-m", "pm_engine", "chaos", "--short"], capture_output=True, text=True,
                         timeout=600)
    print(run.stdout[-3000:], run.stderr[-3000:])
    final = re.search(r"^chaos: sent=(\d+) retried=(\d+) duplicates=(\d+) kills=(\d+) db_restarts=(\d+) "
                      r"lost=(\d+) duplicated=(\d+) mismatches=(\d+)$", run.stdout, re.MULTILINE)
    assert final is not None, run.stdout + run.stderr
    sent, _, duplicates, kills, db_restarts, lost, duplicated, mismatches = map(int, final.groups())
    assert (lost, duplicated, mismatches) == (0, 0, 0)
    assert run.returncode == 0
    assert sent >= 400 and duplicates > 0 and kills >= 2 and db_restarts == 1  # the chaos really happened
    fuzz = re.search(r"^fuzz: (\d+) hostile webhooks .*; 0 not a 4xx JSON error; database unchanged but for (\d+) "
                     r"audit rows \((\d+) over the flood cap\)$", run.stdout, re.MULTILINE)
    assert fuzz is not None and int(fuzz.group(1)) >= 300, run.stdout
    sent_fuzz, audited, dropped = map(int, fuzz.groups())
    assert audited == sent_fuzz - dropped and audited >= 50  # one audit row per refusal, up to the cap
    assert re.search(r"^fuzz: .* 429: \d+", run.stdout, re.MULTILINE)  # the brute-force limit answered
    assert "/ready said 503 during 1 of 1 outages" in run.stdout


def test_chaos_refuses_bad_arguments() -> None:
    run = subprocess.run([sys.executable, "-m", "pm_engine", "chaos", "--signals", "0"], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and "--signals must be >= 1" in run.stderr


def test_short_chaos_run_against_the_broker_simulator() -> None:
    """Issue 21: kills, a database restart and broker faults with every order over HTTP to the simulator: nothing
    lost or duplicated, each order of ours exactly one order at the broker, its net positions the book's."""
    run = subprocess.run([sys.executable, "-m", "pm_engine", "chaos", "--short", "--broker", "sim"],
                         capture_output=True, text=True, timeout=600)
    print(run.stdout[-3000:], run.stderr[-3000:])
    final = re.search(r"^chaos: sent=(\d+) retried=(\d+) duplicates=(\d+) kills=(\d+) db_restarts=(\d+) "
                      r"lost=(\d+) duplicated=(\d+) mismatches=(\d+)$", run.stdout, re.MULTILINE)
    assert final is not None, run.stdout + run.stderr
    sent, _, duplicates, kills, db_restarts, lost, duplicated, mismatches = map(int, final.groups())
    assert (lost, duplicated, mismatches) == (0, 0, 0) and run.returncode == 0
    assert sent >= 150 and duplicates > 0 and kills >= 2 and db_restarts == 1
    played = re.search(r"^broker: (\d+) faults played", run.stdout, re.MULTILINE)
    assert played is not None and int(played.group(1)) == 4  # the broker misbehaved, and nothing was lost
