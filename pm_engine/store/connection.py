"""Connection settings for the store's pool, and the postgresql:// URLs that name them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional
from urllib.parse import unquote, urlparse

from pm_engine.core.errors import ConfigError


@dataclass(frozen=True)
class DatabaseConfig:
    """Connection settings for the engine's pool (DOMAIN.md section 8)."""

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

    def dsn_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg2.connect``."""
        kwargs: dict[str, Any] = {
            "host": self.host, "port": self.port, "dbname": self.database, "user": self.user,
            "connect_timeout": self.connect_timeout, "application_name": "pm-engine",
        }
        if self.password:
            kwargs["password"] = self.password
        return kwargs

    def url(self, hide_password: bool = True) -> str:
        """A postgresql:// URL; the password is masked unless asked for."""
        auth = self.user
        if self.password:
            auth += ":" + ("***" if hide_password else self.password)
        return f"postgresql://{auth}@{self.host}:{self.port}/{self.database}"

    @classmethod
    def from_url(cls, url: str, **extra: Any) -> "DatabaseConfig":
        """Parse ``postgresql://user:password@host:port/database``."""
        parsed = urlparse(url)
        if parsed.scheme not in ("postgres", "postgresql"):
            raise ConfigError(f"DATABASE_URL must start with postgresql://, got scheme {parsed.scheme!r}")
        if not parsed.path.strip("/"):
            raise ConfigError("DATABASE_URL names no database (postgresql://user@host:port/DATABASE)")
        return cls(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or 5432,
            database=unquote(parsed.path.lstrip("/")),
            user=unquote(parsed.username or "postgres"),
            password=unquote(parsed.password) if parsed.password else None,
            **extra,
        )
