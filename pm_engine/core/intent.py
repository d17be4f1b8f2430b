"""Proof of intent for a state-changing HTTP request: which Host names are "this machine", and whether a
browser marked the request as sent by another site's page (issue 19). Pure functions on header values,
so the engine's ASGI guard (``web/guard.py``) and the broker simulator (``sim/server.py``) share one rule.
"""

from __future__ import annotations

import ipaddress
from typing import Optional
from urllib.parse import urlsplit

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})
SAME_SITE = frozenset({"same-origin", "none"})  # Sec-Fetch-Site values of our own pages and of typed URLs


def media_type(content_type: Optional[str]) -> str:
    """The media type of a Content-Type header, lower-cased, its parameters dropped: ``text/plain;
    x=application/json`` is ``text/plain`` (a substring test took it for JSON, issue 29)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json(content_type: Optional[str]) -> bool:
    """``application/json`` exactly (parameters such as ``charset`` allowed): what no cross-site form can send."""
    return media_type(content_type) == "application/json"


def host_allowed(host: str, allowed_names: frozenset[str] = LOOPBACK_NAMES) -> bool:
    """Loopback names, any IP address (a DNS-rebinding page always has a name), and the allowed names."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1:name.find("]")] if "]" in name else name
    elif name.count(":") == 1:
        name = name.partition(":")[0]
    if not name:
        return False
    if name in allowed_names:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def cross_site(sec_fetch_site: Optional[str], origin: Optional[str], host: str) -> Optional[str]:
    """Why a state-changing request looks sent by another site's page, or None.

    Browsers mark every request they send: ``Sec-Fetch-Site`` (Chromium, Firefox, Safari) and
    ``Origin`` on every POST. Our own pages send ``same-origin``; a script or curl sends neither."""
    if sec_fetch_site is not None and sec_fetch_site not in SAME_SITE:
        return f"cross-site request refused (Sec-Fetch-Site: {sec_fetch_site[:20]})"
    if origin is not None and (origin == "null" or urlsplit(origin).netloc.lower() != host.lower()):
        return f"cross-origin request refused (Origin: {origin[:80]})"
    return None
