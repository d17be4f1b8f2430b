"""``pm-engine bench --quick`` runs end to end and writes the figures the issue names (no timing asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_quick_bench_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    run = subprocess.run([sys.executable, "-m", "pm_engine", "bench", "--quick", "--json", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    figures = json.loads(out.read_text())
    for key in ("select1_p50_us", "save_position_update_p50_us", "get_position_cached_p50_us",
                "round_trips_per_signal", "webhook_p50_us", "webhook_p99_us", "signals_per_s", "lost", "duplicated",
                "alert_to_order_sent_p50_us", "alert_to_order_sent_p99_us", "alert_to_fill_booked_p50_us",
                "alert_to_fill_booked_p99_us", "webhook_with_broker_p99_us"):
        assert isinstance(figures[key], (int, float)), key
    assert figures["lost"] == 0 and figures["duplicated"] == 0  # correctness holds under load; speed is reported
    assert figures["round_trips_per_signal"] <= 2 and [s["processes"] for s in figures["streams"]] == [1, 2, 4]
    for line in ("select1", "save_position_update", "webhook", "target ≤ 5 µs", "10 concurrent save_position"):
        assert line in run.stdout
    assert "×" in run.stdout  # every figure also as a ratio to the floor
    ratios = figures["alert_to_fill_booked_commit_floor_ratio"]  # issue 21: as ratios to the commit floor
    assert ratios["p50"] > 0 and ratios["p99"] >= ratios["p50"] and "× the commit floor" in run.stdout
    assert figures["alert_to_fill_booked_p50_us"] >= figures["alert_to_order_sent_p50_us"]  # sent before booked
