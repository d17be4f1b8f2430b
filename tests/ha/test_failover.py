"""Issue 15 inside make test: a short `pm-engine chaos --failover` on a real pg_auto_failover formation
(monitor + primary + synchronous standby on loopback): the primary's keeper and postmaster are SIGKILLed
mid-stream and nothing acknowledged is lost, nothing doubled, nothing differs. About 2 minutes, most of it
the formation starting. Where pg_auto_failover is missing it fails saying what to install."""

from __future__ import annotations

import re
import subprocess
import sys

from pm_engine.store.connection import DatabaseConfig


def test_short_failover_run_loses_nothing_acknowledged() -> None:
    run = subprocess.run([sys.executable, "-m", "pm_engine", "chaos", "--failover", "--short"], capture_output=True,
                         text=True, timeout=900)
    print(run.stdout[-4000:], run.stderr[-4000:])
    assert "pg_auto_failover is missing" not in run.stderr, run.stderr  # the message says what to install
    final = re.search(r"^failover: acked=(\d+) lost=(\d+) duplicated=(\d+) mismatches=(\d+) failover_s=([\d.]+)$",
                      run.stdout, re.MULTILINE)
    assert final is not None, run.stdout + run.stderr
    acked, lost, duplicated, mismatches = map(int, final.groups()[:4])
    failover_s = float(final.group(5))
    assert (lost, duplicated, mismatches) == (0, 0, 0)
    assert acked >= 60 and run.returncode == 0
    assert 0 < failover_s < 15  # within TradingView's resends (3, about 5 s apart)
    assert "advisory lock is held on the new primary" in run.stdout
    assert "reads that may lag come from a standby: True" in run.stdout
    refused = re.search(r"(\d+) refusals \(503 or no connection\) during the failover", run.stdout)
    assert refused is not None and int(refused.group(1)) > 0  # the kill really interrupted the stream


def test_multi_host_urls_round_trip() -> None:
    url = "postgresql://pm:s%3Acret@10.0.0.1:5432,10.0.0.2:5433/pm_engine?target_session_attrs=read-write"
    config = DatabaseConfig.from_url(url)
    assert config.hosts == [("10.0.0.1", 5432), ("10.0.0.2", 5433)] and config.password == "s:cret"
    assert config.url(hide_password=False) == url
    assert config.url() == url.replace("s%3Acret", "***")
    kwargs = config.dsn_kwargs()
    assert kwargs["host"] == "10.0.0.1,10.0.0.2" and kwargs["port"] == "5432,5433"
    assert kwargs["target_session_attrs"] == "read-write"
    assert DatabaseConfig.from_url("postgresql://db.example/pm").hosts == [("db.example", 5432)]


def test_bad_urls_are_refused_clearly() -> None:
    import pytest

    from pm_engine.core.errors import ConfigError

    for url, message in (("mysql://x/db", "must start with postgresql://"), ("postgresql://h:5432", "no database"),
                         ("postgresql://h:port/db", "bad port"), ("postgresql://h/db?sslmod=require", "unsupported")):
        with pytest.raises(ConfigError, match=message):
            DatabaseConfig.from_url(url)
