"""Every SQL statement the Python side sends, loaded once from ``queries.sql`` beside this module.

The file holds named queries: a ``-- name --`` line, one or more ``-- description`` lines, then
the statement. Python code refers to queries by name only and passes values as parameters.
"""

from __future__ import annotations

import re
from pathlib import Path

QUERY_FILE = Path(__file__).with_name("queries.sql")
_HEADER = re.compile(r"^-- ([a-z0-9_]+) --$")


def load_queries(path: Path = QUERY_FILE) -> dict[str, str]:
    """Parse the named-query file; a name defined twice or a query without text is an error."""
    queries: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []

    def flush() -> None:
        if name is None:
            return
        body = "\n".join(line for line in lines if not line.startswith("--")).strip()
        if not body:
            raise ValueError(f"query {name!r} in {path} has no statement")
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice in {path}")
        queries[name] = body

    for line in path.read_text().splitlines():
        match = _HEADER.match(line.strip())
        if match:
            flush()
            name, lines = match.group(1), []
        else:
            lines.append(line)
    flush()
    return queries


QUERIES: dict[str, str] = load_queries()
