"""Throw-away PostgreSQL clusters for the benchmark, the chaos run and the tests."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pm_engine.ops.cluster import LocalCluster


def temporary_cluster(fsync: bool = False) -> LocalCluster:
    """A started, throw-away cluster in a new temporary folder (call ``destroy()`` when done)."""
    base = Path(tempfile.mkdtemp(prefix="pm-engine-pg-"))
    os.chmod(base, 0o755)
    cluster = LocalCluster(base / "data", fsync=fsync, throwaway=True)
    cluster.start()
    return cluster
