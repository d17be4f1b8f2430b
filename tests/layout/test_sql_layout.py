"""The PL/pgSQL keeps its one way of doing each thing (issue 30): every function under its two-line header,
SET search_path on every SECURITY DEFINER function, the book's lock and version, an order's end and a state
machine's check each written once (in 06_book_and_machines.sql) and called everywhere else, function files
deployed in a dependency order with one number each. Static: reads db/functions as text, starts nothing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = sorted((ROOT / "db" / "functions").glob("*.sql"))
HELPERS = ROOT / "db" / "functions" / "06_book_and_machines.sql"
CREATE = re.compile(r"^CREATE OR REPLACE FUNCTION pm\.(\w+)\(", re.M)


def functions(path: Path) -> list[tuple[str, list[str], str]]:
    """(name, the comment lines just above it, its text up to the end of its body) for each function."""
    text = path.read_text()
    lines = text.splitlines()
    found = []
    for match in CREATE.finditer(text):
        at = text.count("\n", 0, match.start())
        above = []
        i = at - 1
        while i >= 0 and (lines[i].startswith("--") or lines[i].startswith("DROP FUNCTION")):
            if lines[i].startswith("--"):
                above.insert(0, lines[i])
            i -= 1
        end = text.find("$$;", text.find("$$", match.end()) + 2)
        found.append((match.group(1), above, text[match.start():end]))
    return found


def test_every_function_has_its_two_line_header() -> None:
    missing = [f"{path.name}: pm.{name}" for path in FUNCTIONS for name, above, _ in functions(path)
               if len(above) < 2 or above[0] != f"-- pm.{name}"]
    assert missing == []


def test_every_security_definer_function_sets_its_search_path() -> None:
    bare = [f"{path.name}: pm.{name}" for path in FUNCTIONS for name, _, body in functions(path)
            if "SECURITY DEFINER" in body.split("AS $$")[0] and "SET search_path" not in body.split("AS $$")[0]]
    assert bare == []
    assert sum("SECURITY DEFINER" in body for path in FUNCTIONS for _, _, body in functions(path)) > 50


def test_the_book_lock_bump_and_order_end_are_written_once() -> None:
    patterns = {
        "a hand-written book lock": re.compile(r"FROM pm\.portfolio_state\s+WHERE id = 1 FOR UPDATE"),
        "a hand-written book version bump": re.compile(r"UPDATE pm\.portfolio_state\s+SET version = version \+ 1"),
        "an inline list of ended order states": re.compile(r"'filled', 'cancelled', 'rejected', 'expired'"),
        "a hand-written transition check": re.compile(r"FROM pm\.(order|roll|notification)_transitions"),
    }
    for what, pattern in patterns.items():
        places = [path.name for path in FUNCTIONS if path != HELPERS and pattern.search(path.read_text())]
        assert places == [], f"{what} in {places}"
        assert pattern.search(HELPERS.read_text()) or what.endswith("check"), what


def test_each_roll_transition_checks_its_move_once() -> None:
    machine = ROOT / "db" / "functions" / "79_roll_machine.sql"
    for name, _, body in functions(machine):
        checks = len(re.findall(r"pm\.check_transition\(|pm\.lock_roll\(", body))
        if name.startswith("roll_") and name not in {"roll_leg_ended"}:
            assert checks == 1, f"pm.{name} checks its transition {checks} times"


def test_function_files_have_one_number_each() -> None:
    numbers = [path.name.split("_", 1)[0] for path in FUNCTIONS]
    assert len(numbers) == len(set(numbers)), numbers
