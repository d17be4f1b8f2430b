"""Database and webhook settings: ``database_config.json`` sections, overridden by the environment.

Precedence (highest first): ``DATABASE_URL`` / ``PM_WEBHOOK_SECRET`` / ``PM_READ_TOKEN`` / ``PM_HOLIDAYS_FILE`` /
``PM_MCX_QUANTITY_UNIT`` in the environment, then the
section of the config file named by ``PM_ENV`` (default ``local``). Secrets never live in code.

Which config file (``config_file``): ``--db-config FILE``, else ``PM_DB_CONFIG``, else ``./database_config.json``
when the current directory has one (``DEFAULT_CONFIG``); without any, a command reads the ``make run`` cluster of
``./var`` (``PM_VAR_DIR``) if there is one, else the built-in defaults. Every command says on stderr which it chose.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional

from pm_engine.core.errors import ConfigError
from pm_engine.notify.settings import NotifySettings, notify_settings
from pm_engine.store.connection import DatabaseConfig

DEFAULT_CONFIG = "database_config.json"  # looked for in the current directory


def config_file(given: Optional[str], environ: Optional[dict[str, str]] = None) -> tuple[Optional[str], str]:
    """The config file to read and where that choice came from: ``--db-config``, ``PM_DB_CONFIG`` or the default."""
    env = os.environ if environ is None else environ
    if given:
        return given, "--db-config"
    if env.get("PM_DB_CONFIG"):
        return env["PM_DB_CONFIG"], "PM_DB_CONFIG"
    if Path(DEFAULT_CONFIG).is_file():
        return DEFAULT_CONFIG, f"./{DEFAULT_CONFIG}"
    return None, "defaults"


@dataclass(frozen=True)
class Settings:
    """Everything the engine reads from configuration."""

    database: DatabaseConfig
    webhook_secret: Optional[str] = field(default=None, repr=False)
    max_signal_age_s: int = 600
    allowed_ips: tuple[str, ...] = ()
    read_token: Optional[str] = field(default=None, repr=False)  # reads and operator actions (docs/domain.md)
    session_hours: float = 12.0  # how long a dashboard login lasts
    request_log_retention_days: int = 30  # refused requests older than this are deleted by the leader
    # reads that may lag (dashboard, report, status --as-of, /status?replica=1): a standby, never decisions
    read_database: Optional[DatabaseConfig] = None
    # trading holidays added or removed by the user (docs/domain.md#contracts-and-expiry); it wins
    holidays_file: Optional[str] = None
    # the instrument table's overrides (core/instruments.py load_instruments), e.g. Bank Nifty's synthetic execution
    instruments_file: Optional[str] = None
    # MCX order quantities in lots (OpenAlgo's Zerodha) or units (docs/domain.md#orders-through-openalgo)
    mcx_quantity_unit: str = "lots"
    # host names the dashboard and API answer to besides loopback names and IP addresses (DNS rebinding)
    allowed_hosts: tuple[str, ...] = ()
    notify: NotifySettings = NotifySettings()  # PM_NOTIFY_URLS / notify.urls ... (issue 24; URLs are secrets)
    broker: "BrokerSettings" = field(default_factory=lambda: BrokerSettings())


MIN_SECRET_LENGTH = 24  # the webhook secret and the read token: guessing must be hopeless, not merely slow


def check_secrets(settings: Settings) -> None:
    """Refuse to serve with a webhook secret or read token shorter than ``MIN_SECRET_LENGTH`` (said which)."""
    for name, value, where in (("webhook secret", settings.webhook_secret, "PM_WEBHOOK_SECRET / webhook_secret"),
                               ("read token", settings.read_token, "PM_READ_TOKEN / read_token")):
        if value is not None and len(value) < MIN_SECRET_LENGTH:
            raise ConfigError(f"the {name} ({where}) is {len(value)} characters; it must be at least "
                              f"{MIN_SECRET_LENGTH} (make one with: python3 -c "
                              "'import secrets; print(secrets.token_urlsafe(24))')")


@dataclass(frozen=True)
class BrokerSettings:
    """Where orders go (issue 21): ``paper`` (filled inside the database, the default) or ``openalgo``.

    From ``PM_BROKER`` / ``PM_OPENALGO_URL`` / ``PM_OPENALGO_API_KEY`` / ``PM_OPENALGO_STRATEGY`` /
    ``PM_MARKET_HOURS`` / ``PM_MAX_ORDER_AGE_S``, else the config file's ``broker`` object (``kind``, ``url``,
    ``api_key``, ``strategy``, ``market_hours``, ``max_order_age_s``, ``review_after_s``). The API key is a
    secret: never in a repr, a log line or an error.
    """

    kind: str = "paper"
    url: Optional[str] = None
    api_key: Optional[str] = field(default=None, repr=False)
    strategy: str = "pm-engine"
    market_hours_always: bool = False  # PM_MARKET_HOURS=always: send at any hour (the simulator, tests)
    max_order_age_s: float = 120.0  # an entry not sent by then is expired (an exit never is)
    review_after_s: float = 60.0  # an unknown order with nothing at the broker after this needs review
    order_timeout_s: float = 10.0  # how long a placeorder's answer is awaited before the order is unknown
    price_guard_base_pct: Optional[float] = None  # refuse a base entry when the quote is this % from the signal
    price_guard_pyramid_pct: Optional[float] = None  # ... a pyramid (None: no guard, the default)


# TradingView's published webhook senders (docs/domain.md#delivery-from-tradingview); "tradingview" in allowed_ips
# expands to them
TRADINGVIEW_IPS = ("52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7")


def expand_allowed_ips(values: Any) -> tuple[str, ...]:
    """The allow-list: addresses as given, with ``"tradingview"`` replaced by TradingView's four addresses."""
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise ConfigError("allowed_ips must be a list of addresses (or \"tradingview\")")
    out: list[str] = []
    for value in values:
        out.extend(TRADINGVIEW_IPS if str(value).strip().lower() == "tradingview" else [str(value).strip()])
    return tuple(dict.fromkeys(out))


_DB_KEYS = {"host", "port", "database", "user", "password", "minconn", "maxconn", "connect_timeout"}


def _section(path: Path, env: str) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a JSON object")
    section = raw.get(env, raw if env not in raw and "host" in raw else None)
    if not isinstance(section, dict):
        raise ConfigError(f"config file {path} has no {env!r} section (sections: {', '.join(raw)})")
    return section


def load_settings(config_file: Optional[str] = None, environ: Optional[dict[str, str]] = None) -> Settings:
    """Read settings from the config file (if any) and the environment."""
    env = dict(os.environ if environ is None else environ)
    section: dict[str, Any] = {}
    if config_file:
        section = _section(Path(config_file), env.get("PM_ENV", "local"))
    unknown = set(section) - _DB_KEYS - {"webhook_secret", "max_signal_age_s", "allowed_ips", "read_token",
                                         "session_hours", "request_log_retention_days", "read_url", "holidays_file",
                                         "instruments_file",
                                         "mcx_quantity_unit", "allowed_hosts", "notify", "broker"}
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(sorted(unknown))}")
    db_values = {k: v for k, v in section.items() if k in _DB_KEYS}
    try:
        if env.get("DATABASE_URL"):
            pool = {k: int(db_values[k]) for k in ("minconn", "maxconn") if k in db_values}
            database = DatabaseConfig.from_url(env["DATABASE_URL"], **pool)
        else:
            database = DatabaseConfig(**db_values)
        if database.minconn > database.maxconn and "minconn" not in db_values:  # a small maxconn in the file
            database = replace(database, minconn=database.maxconn)
        if not 1 <= database.minconn <= database.maxconn:
            raise ConfigError("need 1 <= minconn <= maxconn")
    except TypeError as exc:
        raise ConfigError(f"bad database settings: {exc}") from None
    mcx_unit = str(env.get("PM_MCX_QUANTITY_UNIT") or section.get("mcx_quantity_unit", "lots")).strip().lower()
    if mcx_unit not in ("lots", "units"):
        raise ConfigError(f"mcx_quantity_unit must be lots or units, got {mcx_unit!r}")
    return Settings(
        database=database,
        webhook_secret=env.get("PM_WEBHOOK_SECRET") or section.get("webhook_secret"),
        max_signal_age_s=int(env.get("PM_MAX_SIGNAL_AGE_S") or section.get("max_signal_age_s", 600)),
        allowed_ips=expand_allowed_ips(section.get("allowed_ips", ())),
        read_token=env.get("PM_READ_TOKEN") or section.get("read_token"),
        session_hours=float(env.get("PM_SESSION_HOURS") or section.get("session_hours", 12.0)),
        request_log_retention_days=int(env.get("PM_REQUEST_LOG_RETENTION_DAYS")
                                       or section.get("request_log_retention_days", 30)),
        read_database=(DatabaseConfig.from_url(env.get("DATABASE_READ_URL") or section["read_url"], minconn=1,
                                               maxconn=4)
                       if env.get("DATABASE_READ_URL") or section.get("read_url") else None),
        holidays_file=env.get("PM_HOLIDAYS_FILE") or section.get("holidays_file"),
        instruments_file=env.get("PM_INSTRUMENTS_FILE") or section.get("instruments_file"),
        mcx_quantity_unit=mcx_unit,
        allowed_hosts=_host_names(env.get("PM_ALLOWED_HOSTS", "").split(",") if env.get("PM_ALLOWED_HOSTS")
                                  else section.get("allowed_hosts", ())),
        notify=notify_settings(section.get("notify"), env),
        broker=broker_settings(section.get("broker", {}), env),
    )


def _host_names(values: Any) -> tuple[str, ...]:
    """``allowed_hosts``: names as given (lower case, no port), e.g. the proxy's public name."""
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise ConfigError("allowed_hosts must be a list of host names")
    return tuple(dict.fromkeys(str(v).strip().lower() for v in values if str(v).strip()))


_BROKER_KEYS = {"kind", "url", "api_key", "strategy", "market_hours", "max_order_age_s", "review_after_s",
                "order_timeout_s", "price_guard_base_pct", "price_guard_pyramid_pct"}


def broker_settings(section: Any, env: dict[str, str], kind: Optional[str] = None) -> BrokerSettings:
    """The broker settings from the config file's ``broker`` object and the environment (which wins)."""
    if not isinstance(section, dict):
        raise ConfigError("broker must be a JSON object (kind, url, api_key, strategy, market_hours, ...)")
    unknown = set(section) - _BROKER_KEYS
    if unknown:
        raise ConfigError(f"unknown broker key(s): {', '.join(sorted(unknown))}")
    chosen = str(kind or env.get("PM_BROKER") or section.get("kind", "paper")).strip().lower()
    if chosen not in ("paper", "openalgo"):
        raise ConfigError(f"broker kind must be paper or openalgo, got {chosen!r}")
    hours = str(env.get("PM_MARKET_HOURS") or section.get("market_hours", "exchange")).strip().lower()
    if hours not in ("always", "exchange"):
        raise ConfigError(f"market_hours must be always or exchange, got {hours!r}")
    try:
        max_age = float(env.get("PM_MAX_ORDER_AGE_S") or section.get("max_order_age_s", 120))
        review = float(env.get("PM_ORDER_REVIEW_AFTER_S") or section.get("review_after_s", 60))
        timeout = float(env.get("PM_OPENALGO_TIMEOUT_S") or section.get("order_timeout_s", 10))
        guards = [env.get(f"PM_PRICE_GUARD_{name.upper()}_PCT") or section.get(f"price_guard_{name}_pct")
                  for name in ("base", "pyramid")]
        base_guard, pyramid_guard = (float(g) if g not in (None, "") else None for g in guards)
    except (TypeError, ValueError):
        raise ConfigError("max_order_age_s, review_after_s, order_timeout_s and the price guards must be numbers"
                          ) from None
    if any(g is not None and g <= 0 for g in (base_guard, pyramid_guard)):
        raise ConfigError("price_guard_base_pct and price_guard_pyramid_pct must be positive percentages")
    if max_age <= 0 or review <= 0 or timeout <= 0:
        raise ConfigError("max_order_age_s, review_after_s and order_timeout_s must be positive")
    settings = BrokerSettings(kind=chosen, url=env.get("PM_OPENALGO_URL") or section.get("url"),
                              api_key=env.get("PM_OPENALGO_API_KEY") or section.get("api_key"),
                              strategy=str(env.get("PM_OPENALGO_STRATEGY") or section.get("strategy") or "pm-engine"),
                              market_hours_always=hours == "always", max_order_age_s=max_age, review_after_s=review,
                              order_timeout_s=timeout, price_guard_base_pct=base_guard,
                              price_guard_pyramid_pct=pyramid_guard)
    return settings  # the URL and API key are checked by the commands that talk to the broker (require_broker)


def require_broker(broker: BrokerSettings) -> None:
    """Refuse to talk to OpenAlgo without its URL or API key (said which). Only the commands that reach the broker
    (``live``/``run`` with it, ``reconcile``) call this: ``status``, ``capital`` and the rest read the database only,
    so they run without the broker's secrets."""
    if broker.kind != "openalgo":
        return
    if not broker.url:
        raise ConfigError("broker openalgo needs a URL (PM_OPENALGO_URL or broker.url)")
    if not broker.api_key:
        raise ConfigError("broker openalgo needs an API key (PM_OPENALGO_API_KEY or broker.api_key)")
