"""Settings from the config file and the environment: tokens, allow-list, read replica."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pm_engine.config import TRADINGVIEW_IPS, load_settings
from pm_engine.core.errors import ConfigError


def write(tmp_path: Path, section: dict[str, object]) -> str:
    path = tmp_path / "database_config.json"
    path.write_text(json.dumps({"local": section}))
    return str(path)


def test_tradingview_expands_to_its_four_addresses(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, {"allowed_ips": ["tradingview", "203.0.113.5"]}), environ={})
    assert settings.allowed_ips == (*TRADINGVIEW_IPS, "203.0.113.5")
    assert "52.89.214.238" in settings.allowed_ips and len(settings.allowed_ips) == 5
    with pytest.raises(ConfigError, match="allowed_ips must be a list"):
        load_settings(write(tmp_path, {"allowed_ips": "tradingview"}), environ={})


def test_the_read_token_and_replica_come_from_the_environment_first(tmp_path: Path) -> None:
    path = write(tmp_path, {"read_token": "from-file", "read_url": "postgresql://r@replica:5433/pm",
                            "request_log_retention_days": 10})
    settings = load_settings(path, environ={"PM_READ_TOKEN": "from-env"})
    assert settings.read_token == "from-env" and settings.request_log_retention_days == 10
    assert settings.read_database is not None and settings.read_database.hosts == [("replica", 5433)]
    assert "from-env" not in repr(settings) and "from-file" not in repr(settings)  # never printed by accident
    replica = load_settings(path, environ={"DATABASE_READ_URL": "postgresql://u@a:1,b:2/pm?target_session_attrs="
                                                                "prefer-standby"}).read_database
    assert replica is not None and replica.hosts == [("a", 1), ("b", 2)]
    assert dict(replica.options) == {"target_session_attrs": "prefer-standby"}
    with pytest.raises(ConfigError, match="unknown config key"):
        load_settings(write(tmp_path, {"read_tokn": "x"}), environ={})
