"""Documents between Python records and the pm schema's JSON: positions, Decimals, times.

Money travels as text (``Decimal`` → ``str``) and comes back as ``Decimal`` (``parse_float``), so no
value passes through a float on its way to or from a numeric column.
"""

from __future__ import annotations

import json
from copy import copy
from dataclasses import fields
from datetime import datetime
from decimal import Decimal
from typing import Any, Optional

from pm_engine.core.models import Position

POSITION_FIELDS = [f.name for f in fields(Position)]
TIME_FIELDS = ("entry_timestamp", "exit_timestamp", "rollover_timestamp")
DECIMAL_FIELDS = tuple(f.name for f in fields(Position) if "Decimal" in str(f.type))


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default)


def loads(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def position_to_doc(position: Position) -> dict[str, Any]:
    """A position as the document pm.save_position takes (version excluded: the database owns it)."""
    return {name: getattr(position, name) for name in POSITION_FIELDS if name != "version"}


def position_from_row(row: dict[str, Any]) -> Position:
    """A position from a row (or its JSON form): numerics as Decimal, times as aware datetimes.

    Rows from psycopg2 are already typed; only the JSON form (pm.load_state) needs converting.
    """
    values = {name: row[name] for name in POSITION_FIELDS if name in row}
    for name in TIME_FIELDS:
        if isinstance(values.get(name), str):
            values[name] = datetime.fromisoformat(values[name])
    for name in DECIMAL_FIELDS:
        value = values.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            values[name] = Decimal(str(value))
    return Position(**values)


def changes(position: Position, origin: Optional[Position]) -> dict[str, Any]:
    """The document to save: for an update of a row read at the same version, only the changed fields.

    pm.save_position merges a document into the locked current row, so a partial document is a
    full update; it is just smaller to send and to parse (typically 3 keys instead of 44).
    """
    if not position.version or origin is None or origin.version != position.version:
        return position_to_doc(position)
    doc = {name: value for name in POSITION_FIELDS if name != "version"
           and (value := getattr(position, name)) != getattr(origin, name)}
    doc["position_id"] = position.position_id
    return doc


def next_versions(positions: list[dict[str, Any]]) -> dict[str, int]:
    """Each saved position's version after a successful save: expected + 1, or 1 when inserted.

    The same rule pm.apply_signal answers with; a reopened id appears twice, and its insert (last) wins.
    """
    return {p["doc"]["position_id"]: (p["expected_version"] or 0) + 1 for p in positions}


def copied(position: Position) -> Position:
    """A copy of a record (its values are immutable, so a shallow copy is a full one)."""
    return copy(position)
