"""``notify`` settings: the URLs (secrets), which events are sent, the daily report's time, the limits.

``PM_NOTIFY_URLS`` (space- or comma-separated Apprise URLs) or ``notify.urls`` in the config file;
``PM_NOTIFY_EVENTS`` or ``notify.events``: tokens applied in order — a kind (``signal_blocked``),
a level (``warning``: every kind at that level or louder), ``default``, ``all``, or any of these
after ``-`` to remove it. A list starting with a removal starts from the default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import time
from typing import Any, Mapping, Optional

from pm_engine.core.errors import ConfigError
from pm_engine.core.replay.notification_kinds import DEFAULT_EVENTS, KINDS, LEVELS


@dataclass(frozen=True)
class NotifySettings:
    """What the notifier needs; ``urls`` carry credentials and are never shown (``repr`` hides them)."""

    urls: tuple[str, ...] = field(default=(), repr=False)
    events: frozenset[str] = DEFAULT_EVENTS
    report_time: time = time(0, 5)  # IST; MCX closes 23:30 or 23:55, so just after midnight reports the day ended
    burst: int = 20  # more messages than this in a minute to one URL become one digest (Telegram: ~20/min/chat)
    retry_s: float = 5.0  # first retry after a failed send; doubles per attempt
    retry_max_s: float = 600.0
    give_up_hours: float = 24.0

    @property
    def enabled(self) -> bool:
        return bool(self.urls)


_KEYS = {"urls", "events", "report_time", "burst", "retry_s", "retry_max_s", "give_up_hours"}


def split_list(value: Any, name: str) -> list[str]:
    """A list from the config file, or a space- or comma-separated string (the environment)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [part for part in re.split(r"[\s,]+", value.strip()) if part]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    raise ConfigError(f"{name} must be a list of strings or one space- or comma-separated string")


def parse_events(tokens: list[str]) -> frozenset[str]:
    """The kinds chosen by ``notify.events`` tokens (ConfigError naming an unknown token)."""
    chosen: set[str] = set(DEFAULT_EVENTS) if tokens and tokens[0].startswith("-") else set()
    for token in tokens:
        remove = token.startswith("-")
        name = token.lstrip("-").strip().lower()
        if name == "default":
            kinds = set(DEFAULT_EVENTS)
        elif name == "all":
            kinds = set(KINDS)
        elif name in LEVELS:
            kinds = {k.name for k in KINDS.values() if LEVELS.index(k.level) >= LEVELS.index(name)}
        elif name in KINDS:
            kinds = {name}
        else:
            raise ConfigError(f"notify.events: unknown event {token!r} (kinds: {', '.join(KINDS)}; levels: "
                              f"{', '.join(LEVELS)}; default; all)")
        chosen = chosen - kinds if remove else chosen | kinds
    return frozenset(chosen)


def parse_report_time(value: Any) -> time:
    match = re.fullmatch(r"([01]?\d|2[0-3]):([0-5]\d)", str(value).strip())
    if not match:
        raise ConfigError(f"notify.report_time must be HH:MM (IST), got {value!r}")
    return time(int(match.group(1)), int(match.group(2)))


def _number(value: Any, name: str, low: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"notify.{name} must be a number, got {value!r}") from None
    if number < low:
        raise ConfigError(f"notify.{name} must be at least {low}, got {value!r}")
    return number


def notify_settings(section: Optional[Mapping[str, Any]], env: Mapping[str, str]) -> NotifySettings:
    """The ``notify`` section of the config file, overridden by ``PM_NOTIFY_*`` in the environment."""
    section = dict(section or {})
    if not isinstance(section, dict):
        raise ConfigError("notify must be a JSON object")
    unknown = set(section) - _KEYS
    if unknown:
        raise ConfigError(f"unknown notify key(s): {', '.join(sorted(unknown))}")
    urls = split_list(env.get("PM_NOTIFY_URLS") or section.get("urls"), "notify.urls")
    for index, url in enumerate(urls, 1):
        if "://" not in url:  # the URL itself is never echoed: it may hold a token
            raise ConfigError(f"notify.urls: entry {index} is not a URL (scheme://...)")
    events_value = env.get("PM_NOTIFY_EVENTS") or section.get("events")
    defaults = NotifySettings()
    return NotifySettings(
        urls=tuple(dict.fromkeys(urls)),
        events=parse_events(split_list(events_value, "notify.events")) if events_value else DEFAULT_EVENTS,
        report_time=parse_report_time(env.get("PM_NOTIFY_REPORT_TIME") or section.get("report_time", "00:05")),
        burst=int(_number(env.get("PM_NOTIFY_BURST") or section.get("burst", defaults.burst), "burst", 1)),
        retry_s=_number(env.get("PM_NOTIFY_RETRY_S") or section.get("retry_s", defaults.retry_s), "retry_s", 0.1),
        retry_max_s=_number(env.get("PM_NOTIFY_RETRY_MAX_S") or section.get("retry_max_s", defaults.retry_max_s),
                            "retry_max_s", 0.1),
        give_up_hours=_number(env.get("PM_NOTIFY_GIVE_UP_HOURS") or section.get("give_up_hours", 24.0),
                              "give_up_hours", 0.001),
    )
