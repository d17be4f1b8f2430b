"""``pm-engine bench``: latency and throughput of the persistence path, as ratios to the floor.

Everything is measured in one run against one PostgreSQL (a throw-away cluster with fsync on,
or a scratch database created on the ``DATABASE_URL`` server), after warm-up, and printed as
absolute times and as multiples of the ``SELECT 1`` round trip measured first through the same
driver and connection settings. Each part gets a fresh database so earlier parts cannot slow
later ones. ``--json FILE`` writes the figures; ``--quick`` runs every part smaller.

One module per concern: ``measure`` (sizes, timings, fresh databases), ``store`` (floor, store, engine,
webhook), ``broker`` (orders to the simulator), ``stream`` (concurrent engines and writers); the report here.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any, Optional

from pm_engine.tools.bench.broker import part_broker
from pm_engine.tools.bench.measure import Databases, QUICK, Sizes, Stats
from pm_engine.tools.bench.store import part_engine, part_floor, part_open_lists, part_store, part_webhook
from pm_engine.tools.bench.stream import part_stream, part_writers


# -- report --------------------------------------------------------------------------------------
def run_bench(quick: bool = False, json_path: Optional[str] = None, url: Optional[str] = None) -> dict[str, Any]:
    sizes = QUICK if quick else Sizes()
    dbs = Databases(url)
    results: dict[str, Any] = {"quick": quick, "machine": machine()}
    lines: list[str] = []
    try:
        floor_db = dbs.new("floor")
        floor, commit = part_floor(floor_db, sizes)
        f50 = floor.p50
        results["select1_p50_us"] = round(f50, 1)
        results["select1_p99_us"] = round(floor.p99, 1)

        def row(name: str, stats: Stats, target: str = "") -> None:
            results[f"{name}_p50_us"] = round(stats.p50, 2)
            results[f"{name}_p99_us"] = round(stats.p99, 2)
            results[f"{name}_max_us"] = round(stats.max, 2)
            line = (f"{name:<32} p50 {stats.p50:>9.1f} µs ({stats.p50 / f50:>6.2f}×)  p99 {stats.p99:>9.1f} µs "
                    f"({stats.p99 / f50:>6.2f}×)  max {stats.max:>9.1f} µs")
            lines.append(line + (f"   {target}" if target else ""))
            print(lines[-1], flush=True)

        print(f"\n{'operation':<32} (ratios to the SELECT 1 p50 of this run)")
        row("select1", floor)
        row("commit_floor", commit, "(smallest version-checked PL/pgSQL update: the fsync-bound floor)")
        store = part_store(dbs.new("store"), sizes)
        save_ok = store["save_position_update"].p50 <= 4 * f50
        cached_ok = store["get_position_cached"].p50 <= 5
        row("save_position_insert", store["save_position_insert"])
        row("save_position_update", store["save_position_update"],
            f"target ≤ 4× floor: {'MET' if save_ok else 'MISSED'} "
            f"({store['save_position_update'].p50 / commit.p50:.2f}× the commit floor)")
        row("get_position_cached", store["get_position_cached"], f"target ≤ 5 µs: {'MET' if cached_ok else 'MISSED'}")
        row("get_position_miss", store["get_position_miss"])
        for name, stats in part_open_lists(dbs.new, sizes).items():
            row(name, stats)
        engine_stats, trips = part_engine(dbs.new("engine"), sizes)
        row("engine_signal", engine_stats)
        results["round_trips_per_signal"] = round(trips["all"], 3)
        results["round_trips_by_outcome"] = {k: round(v, 3) for k, v in trips.items()}
        trips_ok = trips["max"] <= 2
        print(f"{'round trips per signal':<32} mean {trips['all']:.2f}, max {trips['max']:.0f}  "
              f"({', '.join(f'{k} {v:.2f}' for k, v in trips.items() if k not in ('all', 'max', 'order_sends'))}"
              f"; plus {trips['order_sends']:.2f} per signal for the batched paper fills)   "
              f"target ≤ 2: {'MET' if trips_ok else 'MISSED'}", flush=True)
        hook = part_webhook(dbs.new("webhook"), sizes)
        web_ok = hook.p99 <= 3000
        row("webhook", hook, f"target p99 ≤ 3 ms: {'MET' if web_ok else 'MISSED'}")
        results["webhook_p50_us"], results["webhook_p99_us"] = round(hook.p50, 1), round(hook.p99, 1)
        print(f"\nbroker: {sizes.broker_alerts} alerts (entry, exit, ...) one at a time through an engine to the "
              "broker simulator (no latency); ratios to the SELECT 1 p50, and to the commit floor's p50:")
        for name, stats in part_broker(dbs.new("broker"), sizes).items():
            row(name, stats, f"p50 {stats.p50 / commit.p50:.2f}×, p99 {stats.p99 / commit.p50:.2f}× the commit floor")
            results[f"{name}_commit_floor_ratio"] = {"p50": round(stats.p50 / commit.p50, 2),
                                                     "p99": round(stats.p99 / commit.p50, 2)}

        print(f"\nthroughput: {sizes.stream} mixed signals (30 % repeats) over HTTP from 4 concurrent senders, "
              "engines sharing one database")
        streams = []
        for processes in (1, 2, 4):
            result = part_stream(dbs.new(f"stream_{processes}"), processes, sizes.stream)
            streams.append(result)
            print(f"  {processes} process(es): {result.per_second:>7.0f} signals/s  ({result.sent} sent, "
                  f"{result.distinct} distinct, {result.retried} resent after 503, lost {result.lost}, "
                  f"duplicated {result.duplicated}; outcomes {result.outcomes})", flush=True)
        best = max(s.per_second for s in streams)
        results["streams"] = [{"processes": s.processes, "signals_per_s": round(s.per_second, 1), "sent": s.sent,
                               "retried": s.retried, "lost": s.lost, "duplicated": s.duplicated}
                              for s in streams]
        results["signals_per_s"] = round(best, 1)
        results["lost"] = sum(s.lost for s in streams)
        results["duplicated"] = sum(s.duplicated for s in streams)
        throughput_ok = best >= 1000 and results["lost"] == 0 and results["duplicated"] == 0
        print(f"  best {best:.0f} signals/s, lost {results['lost']}, duplicated {results['duplicated']}   "
              f"target ≥ 1000/s, 0 lost, 0 duplicated: {'MET' if throughput_ok else 'MISSED'}")

        rate, saved, errors = part_writers(dbs.new("writers"), sizes)
        results["concurrent_writers"] = {"writers": 10, "saves_per_s": round(rate, 1), "all_saved": saved == 10,
                                         "errors": errors}
        print(f"\n10 concurrent save_position writers: {rate:.0f} saves/s, {saved}/10 positions at their final "
              f"version, {errors} errors (no deadlock)")
        results["targets"] = {"save_position_update": save_ok, "get_position_cached": cached_ok,
                              "round_trips": trips_ok, "webhook_p99": web_ok, "throughput": throughput_ok}
    finally:
        dbs.close()
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults written to {json_path}")
    return results


def run_ha_bench(quick: bool = False, json_path: Optional[str] = None) -> dict[str, Any]:
    """What a synchronous standby costs a signal: the same parts on a single node and on the primary of a
    pg_auto_failover formation (monitor + primary + synchronous standby on loopback), in one run."""
    from pm_engine.tools.formation import Formation

    sizes = QUICK if quick else Sizes()
    results: dict[str, Any] = {"quick": quick, "machine": machine()}
    single = Databases(None)
    formation: Optional[Formation] = None
    ha: Optional[Databases] = None
    try:
        print("starting a pg_auto_failover formation (monitor, primary, synchronous standby) ...", flush=True)
        formation = Formation(synchronous=True).start()
        ha = Databases(replace(formation.config(), database="postgres").url(hide_password=False))
        measured: dict[str, dict[str, Stats]] = {}
        for label, dbs in (("single", single), ("ha", ha)):
            floor, commit = part_floor(dbs.new("floor"), sizes)
            engine_stats, _ = part_engine(dbs.new("engine"), sizes)
            hook = part_webhook(dbs.new("webhook"), sizes)
            measured[label] = {"select1": floor, "commit_floor": commit, "engine_signal": engine_stats,
                               "webhook": hook}
        print(f"\n{'operation':<16} {'single node p50':>16} {'p99':>10} {'sync standby p50':>18} {'p99':>10} "
              f"{'ratio p50':>10} {'ratio p99':>10}")
        for name in ("select1", "commit_floor", "engine_signal", "webhook"):
            one, two = measured["single"][name], measured["ha"][name]
            results[name] = {"single_p50_us": round(one.p50, 1), "single_p99_us": round(one.p99, 1),
                             "ha_p50_us": round(two.p50, 1), "ha_p99_us": round(two.p99, 1),
                             "ratio_p50": round(two.p50 / one.p50, 2), "ratio_p99": round(two.p99 / one.p99, 2)}
            r = results[name]
            print(f"{name:<16} {one.p50:>13.1f} µs {one.p99:>7.1f} µs {two.p50:>15.1f} µs {two.p99:>7.1f} µs "
                  f"{r['ratio_p50']:>9.2f}× {r['ratio_p99']:>9.2f}×", flush=True)
    finally:
        single.close()
        if ha is not None:
            ha.close()
        if formation is not None:
            formation.destroy()
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nresults written to {json_path}")
    return results


def machine() -> str:
    import platform

    return f"{platform.system()} {platform.release()}, Python {platform.python_version()}, {os.cpu_count()} cores"
