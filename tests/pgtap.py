"""Run a pgTAP file with psql and parse its TAP stream.

Every ``ok`` / ``not ok`` line and the ``1..N`` plan are parsed; a psql error (ON_ERROR_STOP), a
missing plan or a plan that does not match the assertions run is a failure of its own, so a file
that dies half-way can never pass by printing no "not ok".
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

_PLAN = re.compile(r"^1\.\.(\d+)")
_TEST = re.compile(r"^(not ok|ok) (\d+)(?: - (.*))?$")


@dataclass
class Assertion:
    ok: bool
    number: int
    description: str
    diagnostics: list[str] = field(default_factory=list)


@dataclass
class TapResult:
    path: Path
    plan: Optional[int] = None
    assertions: list[Assertion] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def problems(self) -> list[str]:
        """Failures that are not a single assertion's: psql errors and plan mismatches."""
        found = []
        if self.error:
            found.append(f"psql error: {self.error}")
        if self.plan is None:
            found.append("no 1..N plan printed")
        elif self.plan != len(self.assertions):
            found.append(f"planned {self.plan} assertions, ran {len(self.assertions)}")
        numbers = [a.number for a in self.assertions]
        if numbers != list(range(1, len(numbers) + 1)):
            found.append(f"assertion numbers out of sequence: {numbers}")
        return found


def parse_tap(path: Path, output: str) -> TapResult:
    result = TapResult(path)
    for line in output.splitlines():
        line = line.rstrip()
        if not line:
            continue
        plan = _PLAN.match(line)
        test = _TEST.match(line)
        if plan and result.plan is None:
            result.plan = int(plan.group(1))
        elif test:
            result.assertions.append(Assertion(test.group(1) == "ok", int(test.group(2)), test.group(3) or ""))
        elif line.startswith("#") and result.assertions:
            result.assertions[-1].diagnostics.append(line)
    return result


def run_pgtap(path: Path, psql: Path, host: str, port: int, user: str, dbname: str) -> TapResult:
    """Run ``path`` inside one transaction that is rolled back, and parse what it printed."""
    script = f"BEGIN;\n\\i {path}\nROLLBACK;\n"
    proc = subprocess.run(
        [str(psql), "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", host, "-p", str(port), "-U", user, "-d", dbname],
        input=script, capture_output=True, text=True, timeout=120, check=False,
    )
    result = parse_tap(path, proc.stdout)
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line or "FATAL" in line]
    if proc.returncode != 0 or errors:
        result.error = "; ".join(errors) or proc.stderr.strip() or f"psql exited {proc.returncode}"
    return result
