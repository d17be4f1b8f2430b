"""A private PostgreSQL cluster: for the test suite, the benchmark and ``make run``.

initdb and postgres refuse to run as root, so when we are root the cluster is created and run by
the ``postgres`` system user (``runuser -u postgres --``) in a folder it owns; as any other user
the same code runs the binaries directly. The cluster listens on 127.0.0.1 only and keeps its socket
in its own folder, so it never touches a server on 5432. With a ``password`` (``make run``) every
connection, socket or TCP, needs it (scram-sha-256: ``require_password``); without one (the test
suite's and the benchmark's throw-away clusters, ``temporary_cluster``) it trusts local connections.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from pm_engine.core.errors import PmError
from pm_engine.store.connection import DatabaseConfig


class ClusterError(PmError):
    """The private cluster could not be created, started or stopped."""


def find_bindir() -> Optional[Path]:
    """The newest installed PostgreSQL server binaries (``PM_PG_BINDIR`` wins), or None."""
    override = os.environ.get("PM_PG_BINDIR")
    if override:
        return Path(override)
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: int(Path(p).parent.parent.name) if Path(p).parent.parent.name.isdigit() else 0)
    if candidates:
        return Path(candidates[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        if out and (Path(out) / "initdb").exists():
            return Path(out)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


@dataclass
class LocalCluster:
    """One PostgreSQL cluster in ``datadir``; ``start()`` creates it on first use."""

    datadir: Path
    port: int = 0
    bindir: Optional[Path] = None
    fsync: bool = True
    throwaway: bool = False  # destroy() also removes the data folder's parent (a temporary folder)
    password: Optional[str] = field(default=None, repr=False)  # the postgres role's; None: trust (throw-away)
    _owner: Optional[str] = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.datadir = Path(self.datadir).resolve()
        self.bindir = self.bindir or find_bindir()
        if self.bindir is None:
            raise ClusterError("no PostgreSQL server binaries found (install postgresql-15, or set PM_PG_BINDIR)")
        if not self.port:
            self.port = free_port()
        self._owner = "postgres" if _as_root() else None

    # -- helpers ---------------------------------------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.bindir is not None
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._owner:
            cmd = ["runuser", "-u", self._owner, "--", *cmd]
        env = {**os.environ, "PGPASSWORD": self.password} if self.password else None
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if check and proc.returncode != 0:
            raise ClusterError(f"{args[0]} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")
        return proc

    def _chown(self, path: Path) -> None:
        if self._owner:
            entry = pwd.getpwnam(self._owner)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    @property
    def initialized(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    @property
    def running(self) -> bool:
        return self.initialized and self._run("pg_ctl", "-D", str(self.datadir), "status", check=False).returncode == 0

    def config(self, database: str = "postgres") -> DatabaseConfig:
        return DatabaseConfig(host="127.0.0.1", port=self.port, database=database, user="postgres",
                              password=self.password)

    # -- lifecycle -------------------------------------------------------------------------------
    def init(self) -> None:
        """initdb the folder (owned by the postgres user when we are root)."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.datadir, 0o700)
        self._chown(self.datadir)
        # the postgres user must be able to reach the folder through its parents
        # (root passes every access check, so look at the mode bits: others need search permission)
        for parent in self.datadir.parents:
            mode = os.stat(parent).st_mode
            if self._owner and parent != Path("/") and not mode & 0o001:
                print(f"note: letting the {self._owner} user traverse {parent} (chmod o+x)", file=sys.stderr)
                os.chmod(parent, mode | 0o001)
        if self.password is None:
            self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-instructions")
            return
        with tempfile.NamedTemporaryFile("w", prefix="pm-pw-", delete=False) as pwfile:  # created 0600
            pwfile.write(self.password + "\n")
        try:
            self._chown(Path(pwfile.name))
            self._run("initdb", "-D", str(self.datadir), "-U", "postgres", "--auth=scram-sha-256",
                      f"--pwfile={pwfile.name}", "-E", "UTF8", "--locale=C", "--no-instructions")
        finally:
            os.unlink(pwfile.name)

    def start(self) -> None:
        """Create if needed, then start and wait until it accepts connections."""
        if not self.initialized:
            self.init()
        if self.running:
            return
        opts = (f"-p {self.port} -k {self.datadir} -c listen_addresses=127.0.0.1 "
                f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200")
        if not self.fsync:
            # commits still reach the OS before they are acknowledged (synchronous_commit stays on),
            # so a killed server (pg_ctl -m immediate) loses nothing; only an OS crash could
            opts += " -c full_page_writes=off"
        log = self.datadir / "server.log"
        self._run("pg_ctl", "-D", str(self.datadir), "-o", opts, "-l", str(log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``, or ``immediate`` to simulate a crash)."""
        if self.running:
            self._run("pg_ctl", "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def create_database(self, name: str) -> None:
        """CREATE DATABASE unless it exists."""
        proc = self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name, check=False)
        if proc.returncode != 0 and "already exists" not in proc.stderr:
            raise ClusterError(f"createdb {name} failed: {proc.stderr.strip()}")

    def destroy(self) -> None:
        """Stop and delete the data folder (and its temporary parent for a throw-away cluster)."""
        self.stop("immediate")
        shutil.rmtree(self.datadir.parent if self.throwaway else self.datadir, ignore_errors=True)


def temporary_cluster(fsync: bool = False) -> LocalCluster:
    """A started, throw-away cluster in a new temporary folder (call ``destroy()`` when done): the test suite's, the
    benchmark's and the chaos run's (once ``tools/clusters.py``; one module now holds every private cluster)."""
    base = Path(tempfile.mkdtemp(prefix="pm-engine-pg-"))
    os.chmod(base, 0o755)
    cluster = LocalCluster(base / "data", fsync=fsync, throwaway=True)
    cluster.start()
    return cluster


PASSWORD_HBA = """# written by pm-engine: every connection needs the postgres role's password (scram-sha-256)
local   all  all                 scram-sha-256
host    all  all  127.0.0.1/32   scram-sha-256
host    all  all  ::1/128        scram-sha-256
"""


def require_password(connect: dict[str, Any], password: str, hba: Path) -> bool:
    """Make a running cluster ask every connection for ``password``: True if it had to be changed.

    A cluster created with trust authentication (an older ``make run``, or pgserver's own initdb) gets
    the password set over the trusted connection, then a ``pg_hba.conf`` of scram-sha-256 lines only,
    and a reload. ``connect``: the psycopg2 keywords for the postgres role, without a password.
    """
    import psycopg2

    from pm_engine.store.queries import QUERIES

    params = {**connect, "password": "", "connect_timeout": 5}
    try:
        conn = psycopg2.connect(**params)
    except psycopg2.OperationalError:
        return False  # refused without a password: it already asks for one
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(QUERIES["cluster_require_scram"])
            cur.execute(QUERIES["cluster_set_password"], (password,))
            stat = os.stat(hba)
            hba.write_text(PASSWORD_HBA)
            if _as_root():
                os.chown(hba, stat.st_uid, stat.st_gid)
            cur.execute(QUERIES["cluster_reload_config"])
    finally:
        conn.close()
    return True
