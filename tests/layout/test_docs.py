"""The documents say what the code does: every backticked name they use is checked against the code.

Read: README.md, docs/*.md, ARCHITECTURE.md, DATABASE_SETUP.md, db/README.md. In their inline code spans:

* a path (``pm_engine/core/engine.py``, ``core/engine.py``, ``78_rollover.sql``) exists, from the repository's root
  or from ``pm_engine/`` (a bare SQL file name in ``db/``'s folders, a bare Python file name anywhere);
* ``pm.name`` is a function (``CREATE OR REPLACE FUNCTION pm.name`` in ``db/functions``) or a table, view or
  sequence created by a migration; in db/README.md every ``name(...)`` is such a function too;
* a state transition ``a → b`` names states of one machine (orders, rolls, notification deliveries), and
  ``--state X`` an order state; every order and roll state is named somewhere in the documents;
* ``pm-engine X ...``: the subcommand exists in the argparse parser, with every ``--flag`` given, and ``make X``
  is a target of the Makefile;
* a Markdown link to a file in the repository points at one that exists.

Nothing in them (nor in the code's comments) cites a path outside the repository.

Runtime paths the engine creates (``var/...``) and example paths on a server (``/etc/...``) are not files of the
repository: they are listed in ``NOT_IN_REPO`` or are absolute; everything else must exist.
"""

from __future__ import annotations

import argparse
import re
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pm_engine"
DOCS = sorted([ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "DATABASE_SETUP.md", ROOT / "db" / "README.md",
               *(ROOT / "docs").glob("*.md")])

# paths that name what the engine or the trader creates at run time, not files of the repository
NOT_IN_REPO = ("var/", "equity.png", "bench.json", "trades.csv", "report.json", "database_config.json",
               "instruments.json", "holidays.json", "pm-engine.env", "pm-engine.service", "pm-engine@.service",
               "pm_engine.dump", "backup/")
PATH_SUFFIXES = (".py", ".sql", ".md", ".toml", ".json", ".txt", ".csv", ".yml", ".yaml", ".cfg", ".example",
                 ".html", ".js", ".css", ".ini", ".service", ".env", ".png", ".dump")


def parser() -> argparse.ArgumentParser:
    """The CLI's parser: the one place this test imports the CLI (adapt it here when the CLI moves)."""
    from pm_engine.cli import build_parser
    return build_parser()


# -- reading the documents -----------------------------------------------------------------------------------

FENCE = re.compile(r"^```.*?^```", re.S | re.M)
SPAN = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")


def prose(path: Path) -> str:
    """The document without its fenced blocks (their commands are read by ``fenced_commands``)."""
    return FENCE.sub("", path.read_text())


def spans(path: Path) -> list[str]:
    return [s.strip() for s in SPAN.findall(prose(path).replace("\\|", "|"))]


def all_spans() -> list[tuple[str, str]]:
    return [(p.relative_to(ROOT).as_posix(), s) for p in DOCS for s in spans(p)]


def fenced_commands() -> list[tuple[str, str]]:
    """``pm-engine ...`` lines of the fenced shell blocks (``$ `` prompts and ``.venv/bin/`` stripped)."""
    out = []
    for p in DOCS:
        for block in FENCE.findall(p.read_text()):
            for line in block.splitlines()[1:-1]:
                line = re.sub(r"^\s*\$\s+", "", line).strip()
                line = line.replace(".venv/bin/pm-engine", "pm-engine")
                if line.startswith("pm-engine "):
                    out.append((p.relative_to(ROOT).as_posix(), line.split("#")[0].strip()))
    return out


# -- what the code holds ---------------------------------------------------------------------------------------

@lru_cache(maxsize=None)
def sql_functions() -> frozenset[str]:
    text = "\n".join(f.read_text() for f in sorted((ROOT / "db" / "functions").glob("*.sql")))
    return frozenset(m.lower() for m in re.findall(r"CREATE\s+OR\s+REPLACE\s+FUNCTION\s+pm\.(\w+)", text, re.I))


@lru_cache(maxsize=None)
def sql_relations() -> frozenset[str]:
    text = "\n".join(f.read_text() for d in ("migrations", "functions") for f in (ROOT / "db" / d).glob("*.sql"))
    text += (PACKAGE / "store" / "queries.sql").read_text()  # pm.schema_migrations: made by the deploy itself
    found = re.findall(r"CREATE\s+(?:OR\s+REPLACE\s+)?(?:UNIQUE\s+)?(?:TABLE|VIEW|SEQUENCE|TYPE|INDEX)\s+"
                       r"(?:IF\s+NOT\s+EXISTS\s+)?pm\.(\w+)", text, re.I)
    renamed = re.findall(r"RENAME\s+TO\s+(\w+)", text, re.I)
    return frozenset(n.lower() for n in found + renamed)


@lru_cache(maxsize=None)
def python_defs() -> frozenset[str]:
    text = "\n".join(f.read_text() for f in PACKAGE.rglob("*.py"))
    return frozenset(re.findall(r"^\s*(?:async\s+)?(?:def|class)\s+(\w+)", text, re.M))


def order_states() -> tuple[str, ...]:
    from pm_engine.core.replay.states import ORDER_STATES
    text = (ROOT / "db" / "migrations" / "008_order_states.sql").read_text()
    check = re.search(r"broker_orders_status_check CHECK \(status IN \(([^)]*)\)", text)
    assert check is not None, "migration 008's order states constraint moved: update this test"
    in_sql = tuple(re.findall(r"'(\w+)'", check.group(1)))
    assert set(in_sql) == set(ORDER_STATES), "the order states of the code and of migration 008 differ"
    return ORDER_STATES


def transitions(table: str) -> set[tuple[str, str]]:
    """(from, to) pairs inserted into ``pm.<table>`` by the migrations."""
    text = "\n".join(f.read_text() for f in sorted((ROOT / "db" / "migrations").glob("*.sql")))
    pairs: set[tuple[str, str]] = set()
    for block in re.findall(rf"INSERT INTO pm\.{table}\s*\([^)]*\)\s*VALUES(.*?)\);\s*$", text, re.S | re.I | re.M):
        pairs.update(re.findall(r"\(\s*'(\w+)'\s*,\s*'(\w+)'", block))
    return pairs


def roll_states() -> set[str]:
    return {s for pair in transitions("roll_transitions") for s in pair}


def machines() -> dict[str, set[tuple[str, str]]]:
    return {"order": transitions("order_transitions"), "roll": transitions("roll_transitions"),
            "notification": transitions("notification_transitions")}


@lru_cache(maxsize=None)
def make_targets() -> frozenset[str]:
    return frozenset(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M))


# -- paths -----------------------------------------------------------------------------------------------------

def looks_like_path(span: str) -> bool:
    if "NNN" in span or span.startswith(("application/", "text/")):
        return False  # a pattern (``migrations/NNN_name.sql``) or a media type
    if " " in span or span.startswith(("/", "http", "~", "-", ".")) or any(c in span for c in "{}<>*?=$|,()[]"):
        return False
    if span.count("/") == 0:
        return span.endswith(PATH_SUFFIXES)
    return bool(re.fullmatch(r"[\w.@-]+(/[\w.@-]+)+/?", span)) and (
        span.endswith(PATH_SUFFIXES) or span.endswith("/") or "." not in span.rsplit("/", 1)[-1])


def path_exists(span: str) -> bool:
    name = span.split("#")[0].rstrip("/")
    if span.startswith(NOT_IN_REPO) or name in NOT_IN_REPO:
        return True
    for base in (ROOT, PACKAGE, ROOT / "db"):
        if (base / name).exists():
            return True
    if "/" not in name:
        if name.endswith(".sql"):
            return any((ROOT / "db" / d / name).exists() for d in ("functions", "migrations", "tests")) \
                or (PACKAGE / "store" / name).exists()
        return any(p.name == name for p in ROOT.rglob(name) if ".venv" not in p.parts and ".git" not in p.parts)
    return False


def test_every_path_named_exists():
    missing = [(doc, s) for doc, s in all_spans() if looks_like_path(s) and not path_exists(s)]
    assert not missing, f"paths the documents name that do not exist: {missing}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_every_link_into_the_repository_exists():
    broken = []
    for p in DOCS:
        for target in LINK.findall(p.read_text()):
            if target.startswith(("http://", "https://", "mailto:", "#")):
                continue
            file = target.split("#")[0]
            if not (p.parent / file).resolve().exists():
                broken.append((p.relative_to(ROOT).as_posix(), target))
            elif not (p.parent / file).resolve().is_relative_to(ROOT):
                broken.append((p.relative_to(ROOT).as_posix(), target))
    assert not broken, f"links to files that are not in the repository: {broken}"


# -- SQL -------------------------------------------------------------------------------------------------------

PM_NAME = re.compile(r"(?<![\w.,/@:-])pm\.(?!example\b)(\w+)(\s*\()?")  # not a host name (pm.example.com)


def test_every_sql_name_exists():
    wrong = []
    for doc, s in all_spans():
        for name, call in PM_NAME.findall(s):
            name = name.lower()
            if call and name not in sql_functions():
                wrong.append((doc, s))
            elif not call and name not in sql_functions() and name not in sql_relations():
                wrong.append((doc, s))
    assert not wrong, f"pm.* names the documents use that db/ does not create: {wrong}"


# PostgreSQL's and the libraries' own functions the documents name beside ours
BUILTINS = frozenset({"clock_timestamp", "statement_timestamp", "transaction_timestamp", "now", "numeric", "connect",
                      "pg_advisory_xact_lock", "pg_try_advisory_lock", "pg_advisory_lock", "txid_current",
                      "pg_current_wal_lsn", "gen_random_uuid", "date_trunc", "coalesce", "greatest", "least",
                      "pg_control_system"})


def test_db_readme_functions_exist():
    """db/README.md's tables list functions by bare name: each ``name(`` is a function of db/functions."""
    text = prose(ROOT / "db" / "README.md")
    wrong = sorted({m for s in SPAN.findall(text) for m in re.findall(r"(?<![\w.])([a-z_][a-z0-9_]*)\(", s)
                    if m not in sql_functions() and m not in BUILTINS})
    assert not wrong, f"db/README.md names functions db/functions does not create: {wrong}"


def test_called_names_exist_somewhere():
    """A ``name(...)`` span elsewhere is a function of the database or of the package."""
    wrong = []
    for doc, s in all_spans():
        m = re.fullmatch(r"([a-z_][a-z0-9_]*)\(.*\)(\s*→.*)?", s)
        if m and m.group(1) not in sql_functions() | python_defs() | BUILTINS:
            wrong.append((doc, s))
    assert not wrong, f"functions the documents name that neither db/ nor pm_engine/ define: {wrong}"


# -- states ----------------------------------------------------------------------------------------------------

ARROW = re.compile(r"^([a-z_]+)\s*(?:→|->)\s*([a-z_]+)$")


def test_transitions_named_are_transitions():
    known = machines()
    states = {s for pairs in known.values() for pair in pairs for s in pair}
    wrong = []
    for doc, s in all_spans():
        m = ARROW.match(s)
        if m and not (m.group(1) in states and m.group(2) in states):
            wrong.append((doc, s))
    assert not wrong, f"state moves naming states no machine has: {wrong}"


def test_order_states_named_are_order_states():
    states = set(order_states())
    wrong = []
    for doc, s in all_spans() + fenced_commands():
        for value in re.findall(r"--state[ =]([a-z_]+)", s):
            if value not in states:
                wrong.append((doc, s))
    assert not wrong, f"--state values that are not order states: {wrong}"


def test_every_state_is_documented():
    named = {s for _, s in all_spans()}
    missing = [s for s in (*order_states(), *sorted(roll_states() - {"none"})) if s not in named]
    assert not missing, f"states no document names: {missing}"


# -- commands --------------------------------------------------------------------------------------------------

def subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def flags(p: argparse.ArgumentParser) -> set[str]:
    return {o for a in p._actions for o in a.option_strings}


def command_problem(line: str) -> str | None:
    """Why a ``pm-engine ...`` span is not a command of the parser (None: it is)."""
    words = re.sub(r"[\[\]]", " ", line).split()[1:]
    if words and words[0].endswith(":"):
        return None  # a line the CLI prints (``pm-engine status: database ...``), not a command
    if not words or words[0].startswith("-"):
        return None if not words or words[0] in flags(parser()) else f"no option {words[0]}"
    commands = subparsers(parser())
    if words[0] not in commands:
        return f"no subcommand {words[0]}"
    chain = [commands[words[0]]]
    for word in words[1:]:
        for alternative in word.split("|"):
            nested = subparsers(chain[-1])
            if alternative in nested:
                chain.append(nested[alternative])
    known = set().union(*(flags(p) for p in chain)) | {"-h", "--help"}
    given = re.findall(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", " ".join(words[1:]))
    unknown = [f for f in given if f not in known]
    return f"{words[0]} has no {', '.join(unknown)}" if unknown else None


def test_every_command_named_is_in_the_parser():
    wrong = []
    for doc, s in all_spans() + fenced_commands():
        s = s.replace(".venv/bin/pm-engine", "pm-engine").replace("python -m pm_engine", "pm-engine")
        words = s.split()
        while words and "=" in words[0] and not words[0].startswith("-"):
            words.pop(0)  # DATABASE_URL=... pm-engine db-deploy
        if words and words[0].endswith("/pm-engine"):
            words[0] = "pm-engine"  # /opt/pm-engine/.venv/bin/pm-engine live ...
        if words and words[0] == "pm-engine":
            problem = command_problem(" ".join(words).split(";")[0].split(" && ")[0].split(" | ")[0])
            if problem:
                wrong.append((doc, s, problem))
    assert not wrong, f"commands the documents name that the CLI does not have: {wrong}"


def test_every_make_target_named_exists():
    wrong = []
    for doc, s in all_spans():
        m = re.match(r"make ([a-z][\w-]*)", s)
        if m and m.group(1) not in make_targets():
            wrong.append((doc, s))
    assert not wrong, f"make targets the documents name that the Makefile lacks: {wrong}"


# -- nothing outside the repository --------------------------------------------------------------------------

def without_section_numbers(path: Path) -> str:
    """The text, less docs/domain.md's "Section numbers", which explains the migrations' old citations."""
    text = path.read_text(errors="replace")
    return text.split("## Section numbers")[0] if path == ROOT / "docs" / "domain.md" else text


def test_no_citation_outside_the_repository():
    outside = re.compile(r"\.\./shared|shared/spec|\bDOMAIN\.md|EXECUTION-NOTES\.md")
    # the applied migrations are never edited (the deploy checks their checksums): they cite docs/domain.md's
    # sections by number, "DOMAIN.md section N", which docs/domain.md keeps
    files = [*DOCS, *(f for d in ("pm_engine", "db", "tests", "docker", "examples") for f in (ROOT / d).rglob("*")
                      if f.is_file() and f.suffix in (".py", ".sql", ".md", ".toml", ".txt", ".html", ".yml", ".json")
                      and "migrations" not in f.parts)]
    files += [ROOT / "Makefile", ROOT / "pyproject.toml"]
    cited = sorted({f.relative_to(ROOT).as_posix() for f in files
                    if f != Path(__file__) and outside.search(without_section_numbers(f))})
    assert not cited, f"files citing a path outside the repository (cite docs/domain.md): {cited}"


@pytest.mark.parametrize("name", ["deployment", "configuration", "broker", "rollover", "notifications", "ha",
                                  "security", "operations", "tradingview", "domain"])
def test_docs_folder_has_each_guide_and_readme_links_it(name):
    assert (ROOT / "docs" / f"{name}.md").is_file()
    assert f"docs/{name}.md" in (ROOT / "README.md").read_text(), f"README.md does not link docs/{name}.md"


# -- anchors, the package map, the settings ------------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]", lambda m: "_" if m.group(0) == "_" else "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@lru_cache(maxsize=None)
def anchors(path: Path) -> frozenset[str]:
    return frozenset(slug(h) for h in re.findall(r"^#{1,6} (.+)$", FENCE.sub("", path.read_text()), re.M))


def test_every_anchor_named_exists():
    """Links ``file.md#anchor`` in the documents, and citations of docs/domain.md's sections in the code."""
    broken = []
    for p in DOCS:
        for target in LINK.findall(p.read_text()):
            if "#" in target and not target.startswith("http"):
                file, anchor = target.split("#", 1)
                path = (p.parent / file).resolve() if file else p
                if path.suffix == ".md" and path.exists() and anchor not in anchors(path):
                    broken.append((p.relative_to(ROOT).as_posix(), target))
    domain = ROOT / "docs" / "domain.md"
    for f in [*PACKAGE.rglob("*.py"), *(ROOT / "db" / "functions").glob("*.sql"), *(ROOT / "tests").rglob("*.py"),
              *PACKAGE.rglob("*.json"), *DOCS]:
        for first, more in re.findall(r"docs/domain\.md#([\w-]+)((?:, #[\w-]+)*)", f.read_text()):
            for anchor in [first, *re.findall(r"#([\w-]+)", more)]:
                if anchor not in anchors(domain):
                    broken.append((f.relative_to(ROOT).as_posix(), anchor))
    assert not broken, f"anchors that no heading has: {broken}"


def test_the_package_map_names_every_module():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    section = text[text.index("## Package map"):text.index("\n## ", text.index("## Package map") + 5)]
    missing = []
    for module in sorted(PACKAGE.rglob("*.py")):
        rel = module.relative_to(PACKAGE)
        if module.name in ("__init__.py", "__main__.py"):
            continue
        name = module.stem
        if len(rel.parts) == 1:
            found = f"pm_engine/{module.name}" in section
        else:
            row = [line for line in section.splitlines() if f"`pm_engine/{rel.parts[0]}/`" in line]
            found = bool(row) and re.search(rf"`{name}`|\b{name}\b", row[0]) is not None
        if not found:
            missing.append(rel.as_posix())
    assert not missing, f"modules ARCHITECTURE.md's package map does not name: {missing}"


def settings_the_code_reads() -> set[str]:
    names: set[str] = set()
    for f in PACKAGE.rglob("*.py"):
        text = f.read_text()
        names.update(re.findall(r"[\"'](PM_[A-Z_]+[A-Z]|DATABASE_(?:READ_)?URL)[\"']", text))
        for prefix, suffix in re.findall(r"f[\"'](PM_[A-Z_]*)\{name\.upper\(\)\}([A-Z_]*)[\"']", text):
            names.update({f"{prefix}BASE{suffix}", f"{prefix}PYRAMID{suffix}"})  # PM_PRICE_GUARD_{name}_PCT
    return names


def test_configuration_names_every_setting():
    from pm_engine import config
    from pm_engine.notify import settings as notify
    text = (ROOT / "docs" / "configuration.md").read_text()
    missing = sorted(n for n in settings_the_code_reads() if f"`{n}`" not in text)
    keys = {*config._DB_KEYS, "webhook_secret", "max_signal_age_s", "allowed_ips", "read_token", "session_hours",
            "request_log_retention_days", "read_url", "holidays_file", "instruments_file", "mcx_quantity_unit",
            "allowed_hosts"}
    missing += sorted(k for k in keys if f"`{k}`" not in text and f"{k}`" not in text)
    missing += sorted(f"broker.{k}" for k in config._BROKER_KEYS if f"`broker.{k}`" not in text)
    missing += sorted(f"notify.{k}" for k in notify._KEYS if f"`notify.{k}`" not in text)
    assert not missing, f"settings the code reads that docs/configuration.md does not name: {missing}"


def test_the_order_states_table_is_the_machines():
    """docs/broker.md's table of order states lists each state of the order machine, and nothing else."""
    text = (ROOT / "docs" / "broker.md").read_text()
    section = text[text.index("## Order states"):text.index("\n## ", text.index("## Order states") + 5)]
    listed = {s for row in re.findall(r"^\| (`[^|]+`) \|", section, re.M) for s in re.findall(r"`(\w+)`", row)}
    assert listed == set(order_states())
