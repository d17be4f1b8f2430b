"""Connection settings for the store's pool, and the postgresql:// URLs that name them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import parse_qsl, quote, unquote, urlencode

from pm_engine.core.errors import ConfigError


# libpq connection parameters a URL may carry after "?" (the rest are refused, so a typo is not ignored)
URL_OPTIONS = frozenset({"target_session_attrs", "sslmode", "sslrootcert", "sslcert", "sslkey", "application_name",
                         "connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                         "keepalives_count", "tcp_user_timeout", "load_balance_hosts"})


@dataclass(frozen=True)
class DatabaseConfig:
    """Connection settings for the engine's pool (docs/domain.md#persistence).

    Several hosts, libpq's way (``postgresql://h1:p1,h2:p2/db?target_session_attrs=read-write``):
    ``host``/``port`` are the first, ``more_hosts`` the rest, and libpq tries them in order for
    each new connection, keeping the first that matches ``target_session_attrs`` — so after a
    failover new connections reach whichever node is now primary.
    """

    host: str = "127.0.0.1"
    port: int = 5432
    database: str = "pm_engine"
    user: str = "postgres"
    password: Optional[str] = field(default=None, repr=False)
    # psycopg2's pool closes a connection handed back while `minconn` are already idle, so minconn
    # is how many connections stay open; below the engine's concurrency (request threads, order
    # sends, background jobs) every call would pay a new connection (measured: 3x fewer signals/s)
    minconn: int = 4
    maxconn: int = 10
    connect_timeout: int = 2
    more_hosts: tuple[tuple[str, int], ...] = ()
    options: tuple[tuple[str, str], ...] = ()  # e.g. (("target_session_attrs", "read-write"),)

    @property
    def hosts(self) -> list[tuple[str, int]]:
        return [(self.host, self.port), *self.more_hosts]

    def dsn_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect`` (several hosts as libpq's comma lists)."""
        kwargs: dict[str, Any] = {
            "host": ",".join(h for h, _ in self.hosts), "port": ",".join(str(p) for _, p in self.hosts),
            "dbname": self.database, "user": self.user,
            "connect_timeout": self.connect_timeout, "application_name": "pm-engine", **dict(self.options),
        }
        if not self.more_hosts:
            kwargs["port"] = self.port
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    def url(self, hide_password: bool = True) -> str:
        """A postgresql:// URL (all hosts and options); the password is masked unless asked for."""
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + ("***" if hide_password else quote(self.password, safe=""))
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        query = ("?" + urlencode(self.options)) if self.options else ""
        return f"postgresql://{auth}@{hosts}/{quote(self.database, safe='')}{query}"

    @classmethod
    def from_url(cls, url: str, **extra: Any) -> "DatabaseConfig":
        """Parse ``postgresql://user:password@host:port[,host2:port2…]/database[?option=value…]``."""
        scheme, sep, rest = url.partition("://")
        if not sep or scheme not in ("postgres", "postgresql"):
            raise ConfigError(f"DATABASE_URL must start with postgresql://, got scheme {scheme!r}")
        rest, _, query = rest.partition("?")
        netloc, _, path = rest.partition("/")
        if not path.strip("/"):
            raise ConfigError("DATABASE_URL names no database (postgresql://user@host:port/DATABASE)")
        userinfo, at, hostlist = netloc.rpartition("@")
        user, _, password = userinfo.partition(":") if at else ("", "", "")
        hosts: list[tuple[str, int]] = []
        for item in (hostlist or "127.0.0.1").split(","):
            name, colon, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
            if not colon:
                name, port = item.strip(), ""
            if port and not port.isdigit():
                raise ConfigError(f"DATABASE_URL: bad port {port!r} for host {name!r}")
            hosts.append((unquote(name) or "127.0.0.1", int(port) if port else 5432))
        options = tuple(parse_qsl(query, keep_blank_values=True))
        unknown = sorted({k for k, _ in options} - URL_OPTIONS)
        if unknown:
            raise ConfigError(f"DATABASE_URL: unsupported option(s) {', '.join(unknown)}")
        return cls(host=hosts[0][0], port=hosts[0][1], database=unquote(path.strip("/")),
                   user=unquote(user) or "postgres", password=unquote(password) if password else None,
                   more_hosts=tuple(hosts[1:]), options=options, **extra)
