"""The statements the tools send: the product's named queries plus the tools' own (``queries.sql`` beside this module).

The bench's scratch databases and the checks a chaos or failover run ends with are not the product's business, so
they live here rather than in ``pm_engine/store/queries.sql``; both files are read by the one loader,
``pm_engine.store.queries.load_queries``. A name may be defined in only one of them.
"""

from __future__ import annotations

from pathlib import Path

from pm_engine.store.queries import QUERIES as PRODUCT_QUERIES
from pm_engine.store.queries import load_queries

TOOL_QUERY_FILE = Path(__file__).with_name("queries.sql")


def tool_queries(path: Path = TOOL_QUERY_FILE) -> dict[str, str]:
    """The product's queries and the tools' own; a tool query reusing a product query's name is an error."""
    own = load_queries(path)
    both = sorted(set(own) & set(PRODUCT_QUERIES))
    if both:
        raise ValueError(f"{path} redefines product queries: {', '.join(both)}")
    return {**PRODUCT_QUERIES, **own}


QUERIES: dict[str, str] = tool_queries()
