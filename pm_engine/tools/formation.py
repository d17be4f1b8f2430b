"""A throw-away pg_auto_failover formation on loopback: a monitor, a primary and a standby.

For ``pm-engine chaos --failover``, ``bench --ha`` and the failover test. Each ``pg_autoctl`` runs
in a process group of its own (as the ``postgres`` user when we are root, since initdb and postgres
refuse root), so a node's keeper and its postmaster can be SIGKILLed together, as when its
machine dies. The monitor's and keepers' timeouts are shortened (``MONITOR_SETTINGS``,
``KEEPER_SETTINGS``; docs/ha.md says why each) so a failover completes
within what TradingView's resends cover.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import psycopg2

from pm_engine.ops.cluster import ClusterError, find_bindir, free_port
from pm_engine.store.connection import DatabaseConfig

PACKAGES = "postgresql-15-auto-failover pg-auto-failover-cli"
DATABASE = "pm_engine"
# how the monitor decides a node is gone, and how long it waits before promoting (milliseconds)
MONITOR_SETTINGS = {
    "pgautofailover.health_check_period": 1000,          # default 5000: probe each node every second
    "pgautofailover.health_check_timeout": 1000,         # default 5000: a probe that takes 1 s has failed
    "pgautofailover.health_check_max_retries": 1,        # default 2
    "pgautofailover.health_check_retry_delay": 500,      # default 2000
    "pgautofailover.node_considered_unhealthy_timeout": 2000,  # default 20000: unhealthy after 2 s of silence
    "pgautofailover.primary_demote_timeout": 2000,       # default 30000: the "about 30 s more" of the defaults
}
# the keepers' side (seconds): an isolated primary demotes itself sooner than the monitor promotes,
# and the standby does not wait long for its WAL receiver to stop
KEEPER_SETTINGS = {
    "timeout.network_partition_timeout": 3,              # default 20; must stay above the monitor's 2 s
    "timeout.prepare_promotion_walreceiver": 1,          # default 5
    "timeout.prepare_promotion_catchup": 5,              # default 30
}


def _children(parent: int) -> list[int]:
    """The pids whose parent is ``parent`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = (Path("/proc") / entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
    return found


def pg_autoctl() -> Optional[str]:
    return shutil.which("pg_autoctl")


@dataclass
class Node:
    name: str
    pgdata: Path
    port: int
    proc: Optional["subprocess.Popen[bytes]"] = None


@dataclass
class Formation:
    """Monitor + two Postgres nodes under ``base``; ``start()`` creates and starts them."""

    base: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pm-engine-ha-")))
    synchronous: bool = True
    nodes: list[Node] = field(default_factory=list)
    monitor: Optional[Node] = None

    def __post_init__(self) -> None:
        binary = pg_autoctl()
        bindir = find_bindir()
        if binary is None or bindir is None:
            raise ClusterError(f"pg_auto_failover is missing: run as root: apt-get install {PACKAGES} "
                               "(make install does it when run as root)")
        self.binary, self.bindir = binary, bindir
        self.owner = "postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
        os.chmod(self.base, 0o755)
        if self.owner:
            import pwd

            entry = pwd.getpwnam(self.owner)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)

    # -- running pg_autoctl ------------------------------------------------------------------------
    def _command(self, *args: str) -> list[str]:
        env = ["env", f"PATH={self.bindir}:{os.environ.get('PATH', '')}", f"XDG_RUNTIME_DIR={self.base}",
               f"XDG_CONFIG_HOME={self.base / 'config'}", f"XDG_DATA_HOME={self.base / 'data'}"]
        command = [*env, self.binary, *args]
        return ["runuser", "-u", self.owner, "--", *command] if self.owner else command

    def _run(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(self._command(*args), capture_output=True, text=True, errors="replace", timeout=timeout,
                              cwd=self.base)  # its log lines are not always valid UTF-8
        if done.returncode != 0:
            raise ClusterError(f"pg_autoctl {' '.join(args[:2])} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def _spawn(self, node: Node, *args: str) -> None:
        log = (self.base / f"{node.name}.log").open("ab")
        node.proc = subprocess.Popen(self._command(*args), stdout=log, stderr=subprocess.STDOUT, cwd=self.base,
                                     start_new_session=True)  # a process group: keeper, postgres and all

    def _sql(self, port: int, database: str, statement: str) -> list[tuple[Any, ...]]:
        conn = psycopg2.connect(host="127.0.0.1", port=port, dbname=database, user="postgres", connect_timeout=2)
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute(statement)
                return list(cur.fetchall()) if cur.description else []
        finally:
            conn.close()

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self, timeout: float = 240) -> "Formation":
        deadline = time.monotonic() + timeout
        self.monitor = Node("monitor", self.base / "monitor", free_port())
        self._spawn(self.monitor, "create", "monitor", "--pgdata", str(self.monitor.pgdata), "--pgport",
                    str(self.monitor.port), "--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl", "--run")
        self._wait(lambda: self._sql(self.monitor.port, "pg_auto_failover", "SELECT 1"), deadline, "the monitor")
        for name, value in MONITOR_SETTINGS.items():
            self._sql(self.monitor.port, "pg_auto_failover", f"ALTER SYSTEM SET {name} = {int(value)}")
        self._sql(self.monitor.port, "pg_auto_failover", "SELECT pg_reload_conf()")
        monitor_url = f"postgres://autoctl_node@127.0.0.1:{self.monitor.port}/pg_auto_failover?sslmode=disable"
        for number in (1, 2):
            node = Node(f"node_{number}", self.base / f"node{number}", free_port())
            self.nodes.append(node)
            self._spawn(node, "create", "postgres", "--pgdata", str(node.pgdata), "--pgport", str(node.port),
                        "--hostname", "127.0.0.1", "--auth", "trust", "--no-ssl", "--monitor", monitor_url,
                        "--dbname", DATABASE, "--name", node.name, "--run")
            wanted = {"single"} if number == 1 else {"primary", "secondary"}
            self._wait(lambda: wanted <= {s["reported"] for s in self.states()} or None, deadline,
                       f"{node.name} to join")
        for node in self.nodes:
            for key, value in KEEPER_SETTINGS.items():
                self._run("config", "set", "--pgdata", str(node.pgdata), key, str(value))
            self._run("reload", "--pgdata", str(node.pgdata))
        if not self.synchronous:  # asynchronous: the standby is not part of the commit quorum
            self._run("set", "node", "replication-quorum", "false", "--pgdata", str(self.nodes[1].pgdata))
            self._wait(lambda: self._sync_names() == "" or None, deadline, "asynchronous replication")
        else:
            self._wait(lambda: self._sync_names() or None, deadline, "synchronous replication")
        return self

    def _sync_names(self) -> str:
        primary = self.primary()
        return str(self._sql(primary.port, DATABASE, "SHOW synchronous_standby_names")[0][0]) if primary else "?"

    def _wait(self, probe: Any, deadline: float, what: str) -> None:
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if probe():
                    return
            except (psycopg2.Error, ClusterError, subprocess.SubprocessError, ValueError) as exc:
                last = exc
            time.sleep(0.5)
        raise ClusterError(f"pg_auto_failover formation: timed out waiting for {what} ({last}); logs in {self.base}")

    def states(self) -> list[dict[str, Any]]:
        """The monitor's view: one dict per node with name, port, reported and assigned state."""
        assert self.monitor is not None
        rows = self._sql(self.monitor.port, "pg_auto_failover",
                         "SELECT nodename, nodeport, reportedstate, goalstate FROM pgautofailover.node ORDER BY nodeid")
        return [{"name": r[0], "port": int(r[1]), "reported": str(r[2]), "assigned": str(r[3])} for r in rows]

    def primary(self) -> Optional[Node]:
        """The node that accepts writes now (asked of the nodes themselves), if any."""
        for node in self.nodes:
            try:
                if self._sql(node.port, DATABASE, "SELECT NOT pg_is_in_recovery()")[0][0]:
                    return node
            except psycopg2.Error:
                continue
        return None

    def config(self, **extra: Any) -> DatabaseConfig:
        """Both nodes, libpq's way: new connections go to whichever is primary."""
        first, second = self.nodes
        return DatabaseConfig(host="127.0.0.1", port=first.port, database=DATABASE, user="postgres",
                              more_hosts=(("127.0.0.1", second.port),),
                              options=(("target_session_attrs", "read-write"),), **extra)

    def standby_config(self) -> DatabaseConfig:
        first, second = self.nodes
        return DatabaseConfig(host="127.0.0.1", port=first.port, database=DATABASE, user="postgres", minconn=1,
                              maxconn=4, more_hosts=(("127.0.0.1", second.port),),
                              options=(("target_session_attrs", "prefer-standby"),))

    def kill_primary(self) -> Node:
        """SIGKILL the primary's keeper (its whole process group), its postmaster and every postgres process,
        as a machine dying."""
        node = self.primary()
        if node is None:
            raise ClusterError("no primary to kill")
        pid_file = node.pgdata / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        assert node.proc is not None
        # PostgreSQL's children leave the postmaster's process group (setsid), so they are killed by pid:
        # all at once, as when the machine dies (a backend or WAL sender left alive would go on working)
        doomed = [postmaster, *_children(postmaster)] if postmaster else []
        os.killpg(node.proc.pid, signal.SIGKILL)
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        node.proc.wait(10)
        return node

    def stall_replication(self) -> int:
        """SIGSTOP the primary's WAL sender, as a broken link would: its WAL stays on the primary (a stopped
        receiver would not do: what the sender already wrote waits in the standby's socket buffer).
        Returns the pid for ``resume``."""
        primary = self.primary()
        if primary is None:
            raise ClusterError("no primary to stall")
        pid = int(self._sql(primary.port, DATABASE, "SELECT pid FROM pg_stat_replication")[0][0])
        os.kill(pid, signal.SIGSTOP)
        return pid

    def resume(self, pid: int) -> None:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def destroy(self) -> None:
        for node in [*self.nodes, *([self.monitor] if self.monitor else [])]:
            if node.proc is not None and node.proc.poll() is None:
                try:
                    os.killpg(node.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                node.proc.wait(10)
            pid_file = node.pgdata / "postmaster.pid"
            if pid_file.exists():  # a postgres that outlived its keeper
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        shutil.rmtree(self.base, ignore_errors=True)

    def describe(self) -> str:
        return json.dumps(self.states())
