"""Arguments and helpers every command group shares: the database a command reads, parsing a time, a price, a
duration, printing a row, and who a change is recorded as."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable

from pm_engine.config import load_settings
from pm_engine.core.errors import DatabaseUnavailableError


def db_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db-config", metavar="FILE",
                        help="database_config.json (section chosen by PM_ENV, default 'local'); default: "
                             "PM_DB_CONFIG, else ./database_config.json, else the make run cluster of ./var; "
                             "DATABASE_URL in the environment overrides it. The first line on stderr names the "
                             "database read")


def settings_of(args: argparse.Namespace) -> Any:
    """The settings every database command reads, chosen once per run (cached on ``args``), with where they came from.

    ``DATABASE_URL``, else the config file (``--db-config``, ``PM_DB_CONFIG``, ``./database_config.json``), else the
    ``make run`` cluster of ``./var`` (``PM_VAR_DIR``) when there is one, else the built-in defaults.
    """
    cached = getattr(args, "_chosen", None)
    if cached is not None:
        return cached
    from dataclasses import replace

    from pm_engine.config import config_file
    from pm_engine.ops.embedded import embedded_settings, var_dir

    path, source = config_file(getattr(args, "db_config", None))
    settings = load_settings(path)
    if os.environ.get("DATABASE_URL"):
        source = "DATABASE_URL"
    elif path:
        source = f"{source} {path}"
    else:
        embedded = embedded_settings()
        if embedded is not None:
            settings = replace(settings, database=embedded.database, webhook_secret=embedded.webhook_secret,
                               read_token=embedded.read_token)
            source = f"the make run cluster in {var_dir()}"
        else:
            source = "built-in defaults: no DATABASE_URL, --db-config, PM_DB_CONFIG or ./database_config.json"
    args._chosen = settings
    args._source = source
    args._embedded = source.startswith("the make run")
    return settings


def database_line(args: argparse.Namespace) -> str:
    """``pm-engine CMD: database host:port/name as user (source)``: which book a command reads; never the password."""
    settings = settings_of(args)
    target = settings.database
    hosts = ",".join(f"{h}:{p}" for h, p in target.hosts)
    line = f"pm-engine {args.command}: database {hosts}/{target.database} as {target.user} ({args._source})"
    if settings.read_database is not None:
        r = settings.read_database
        line += f"; reads that may lag: {','.join(f'{h}:{p}' for h, p in r.hosts)}/{r.database}"
    return line


def holidays_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--holidays", metavar="FILE",
                        help="trading holidays to add or remove ({\"NSE\": {\"add\": [...], \"remove\": [...], "
                             "\"years\": [...]}}); they win over the shipped lists (also PM_HOLIDAYS_FILE, "
                             "holidays_file in the config)")


def number_or_off(value: str) -> Any:
    """A breaker setting: a positive number, or ``off``."""
    if value.strip().lower() == "off":
        return "off"
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number (or 'off'): {value!r}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError("must be positive (use 'off' to switch a breaker off)")
    return int(number) if number.is_integer() else number


def price_arg(value: str) -> Any:
    from decimal import Decimal, InvalidOperation

    try:
        price = Decimal(value)
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"not a price: {value!r}") from None
    if not price.is_finite() or price <= 0:
        raise argparse.ArgumentTypeError("the price must be positive")
    return price


def time_arg(value: str) -> Any:
    """``--from`` / ``--to`` / ``--as-of``: ISO 8601; a time without a zone is IST (as in alerts)."""
    from pm_engine.core.signals import SignalValidationError, parse_timestamp

    try:
        return parse_timestamp(value)
    except SignalValidationError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {value!r} (e.g. 2025-11-28T14:05:00+05:30)")


def date_arg(value: str) -> Any:
    from datetime import date

    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (YYYY-MM-DD, an IST trading day)") from None


def duration_arg(value: str) -> Any:
    """``--for 30m``, ``2h``, ``1d``, ``1h30m``: a positive duration."""
    import re
    from datetime import timedelta

    parts = re.fullmatch(r"(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", value.strip().lower())
    if not value.strip() or parts is None:
        raise argparse.ArgumentTypeError(f"not a duration: {value!r} (e.g. 30m, 2h, 1d, 1h30m)")
    days, hours, minutes, seconds = (int(x or 0) for x in parts.groups())
    duration = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if duration.total_seconds() <= 0:
        raise argparse.ArgumentTypeError("the duration must be positive")
    return duration


def open_store(args: argparse.Namespace, may_lag: bool = False) -> Any:
    """The database ``settings_of`` chose (``DATABASE_URL``, a config file, else a ``make run``); None (said why)
    if down.

    ``may_lag``: a read that may come from the read replica (``DATABASE_READ_URL``) when one is configured.
    """
    from pm_engine.store.gateway import Store

    settings = settings_of(args)
    embedded = args._embedded
    target = settings.read_database if may_lag and settings.read_database else settings.database
    try:
        return Store(target, connect_attempts=1)
    except DatabaseUnavailableError as exc:
        hint = ("is `make run` running?" if embedded
                else "is the database up? (DATABASE_URL / --db-config / PM_DB_CONFIG)")
        print(f"pm-engine {args.command}: {exc}\n{hint}", file=sys.stderr)
        return None


def with_store(args: argparse.Namespace, work: Callable[[Any], int], may_lag: bool = False) -> int:
    """``work(db)`` on the store of ``open_store`` (1 when it is down), closed afterwards."""
    store = open_store(args, may_lag)
    if store is None:
        return 1
    try:
        return work(store)
    finally:
        store.close()


def print_body(body: Any, as_json: bool, text: Callable[[Any], str]) -> int:
    import json

    from pm_engine.core.statistics import as_json as to_json

    print(json.dumps(to_json(body), indent=2) if as_json else text(body))
    return 0


def fmt_when(value: Any) -> str:
    """A time from a row (datetime) or a JSON document (ISO text), shown to the second, in UTC."""
    from datetime import datetime, timezone

    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return f"{when.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def fmt_until(value: Any) -> str:
    """A lock's end: ``until <time>``, or ``until unlocked`` for one with no end (stored as infinity)."""
    from datetime import datetime

    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return "until unlocked" if when is None or when.year >= 9999 else f"until {fmt_when(when)}"


def who() -> str:
    """Who a CLI change is recorded as: ``cli:user@host``."""
    import getpass
    import re
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container): the number will do
        user = str(os.getuid())

    def clean(text: str) -> str:  # the characters pm.check_principal accepts (a principal is never free text)
        return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:40] or "_"
    return f"cli:{clean(user)}@{clean(socket.gethostname())}"
