"""The layer contracts are enforced, not hoped for: a forbidden import breaks `lint-imports` (so `make lint`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pm_engine

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
TOP_LEVEL = {"__init__.py", "__main__.py", "config.py", "py.typed"}


def lint_copy(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """Run the contracts on a copy of the package with ``line`` appended to ``module``."""
    shutil.copytree(ROOT / "pm_engine", tmp_path / "pm_engine", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "pm_engine" / module
    target.write_text(target.read_text() + "\n" + line + "\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "250"}  # one line per contract
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


def test_the_package_keeps_its_contracts() -> None:
    done = subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("module, line, contract", [
    ("core/sizing.py", "import psycopg2  # noqa", "core is pure trading"),
    ("core/engine.py", "from pm_engine.store import gateway  # noqa", "core is pure trading"),
    ("store/gateway.py", "from pm_engine.web import app  # noqa", "store imports only core"),
    ("web/app.py", "from pm_engine.tools import bench  # noqa", "product code never imports tools"),
    ("ops/jobs.py", "from pm_engine.web import app  # noqa", "layers"),
    ("adapters/openalgo/client.py", "from pm_engine.store import gateway  # noqa", "adapters import only core"),
    ("adapters/openalgo/client.py", "import psycopg2  # noqa", "adapters import only core"),
    ("sim/server.py", "from pm_engine.adapters.openalgo import client  # noqa", "the broker simulator imports only"),
    ("core/orders.py", "from pm_engine.adapters.openalgo import client  # noqa", "core and store never import"),
    ("store/outbox.py", "from pm_engine.sim import book  # noqa", "core and store never import"),
    ("notify/notifier.py", "import psycopg2  # noqa", "notify is an adapter"),
    ("notify/messages.py", "from pm_engine.store import gateway  # noqa", "notify is an adapter"),
    ("store/gateway.py", "import apprise  # noqa", "store imports only core"),
    ("cli/book.py", "from pm_engine.web import app  # noqa", "the CLI parses and prints"),
    ("cli/serving.py", "import uvicorn  # noqa", "the CLI parses and prints"),
    ("app/wiring.py", "from pm_engine.cli import main  # noqa", "the wiring (pm_engine.app) assembles"),
    ("app/wiring.py", "from pm_engine.tools import bench  # noqa", "product code never imports tools"),
    ("web/orders.py", "from pm_engine.adapters.openalgo import client  # noqa", "web, config and notify never"),
    ("notify/notifier.py", "from pm_engine.sim import book  # noqa", "notify is an adapter"),
    ("adapters/openalgo/client.py", "from pm_engine.notify import kinds  # noqa", "adapters import only core"),
    ("sim/book.py", "from pm_engine.notify import kinds  # noqa", "the broker simulator imports only"),
    ("sim/book.py", "from pm_engine.app import wiring  # noqa", "layers"),
])
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    done = lint_copy(tmp_path, module, line)
    assert done.returncode != 0
    broken = [row for row in done.stdout.splitlines() if row.rstrip().endswith("BROKEN")]
    assert any(row.startswith(contract) for row in broken), done.stdout


def test_only_the_entry_points_live_at_the_top() -> None:
    top = {p.name for p in Path(pm_engine.__file__).parent.iterdir() if p.is_file()}
    assert top <= TOP_LEVEL, f"move {sorted(top - TOP_LEVEL)} into a layer"


def test_the_public_api() -> None:
    from pm_engine import Book, Position, Signal, SignalResult, Store, TradingEngine
    assert {c.__module__.split(".")[1] for c in (TradingEngine, Book, Position, Signal,
                                                 SignalResult)} == {"core"}
    assert Store.__module__ == "pm_engine.store.gateway"


def test_the_documented_python_api_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    document = (ROOT / "ARCHITECTURE.md").read_text()
    section = document[document.index("## Python API"):]
    code = section[section.index("```python") + len("```python"):section.index("```\n", section.index("```python"))]
    exec(compile(code, "ARCHITECTURE.md", "exec"), {})  # noqa: S102 - the documented example, run as written
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("executed entered 4 lots of BANK_NIFTY")
    assert printed[-1] == "5180000.00"
