"""Deterministic streams of plausible signals, for the example CSV, tests and load generators."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping, Optional

from pm_engine.core.instruments import DEFAULT_INSTRUMENTS, InstrumentConfig

START_PRICES = {"BANK_NIFTY": 52000.0, "GOLD_MINI": 78000.0, "SILVER_MINI": 90000.0, "COPPER": 800.0}


def generate_signals(count: int, seed: int = 7, start: Optional[datetime] = None,
                     instruments: Optional[Mapping[str, InstrumentConfig]] = None,
                     step: timedelta = timedelta(minutes=15)) -> list[dict[str, Any]]:
    """``count`` payloads over the instruments: entries, pyramids on strength, exits on weakness."""
    rng = random.Random(seed)
    configs = dict(instruments or DEFAULT_INSTRUMENTS)
    names = [n for n in configs if n in START_PRICES] or list(configs)
    price = {n: START_PRICES.get(n, 1000.0) for n in names}
    layers = {n: 0 for n in names}
    last_add = {n: 0.0 for n in names}
    when = start or datetime(2025, 1, 6, 3, 45, tzinfo=timezone.utc)
    out: list[dict[str, Any]] = []
    while len(out) < count:
        name = rng.choice(names)
        cfg = configs[name]
        atr = round(price[name] * rng.uniform(0.004, 0.008), 2)
        price[name] = round(max(price[name] * 0.5, price[name] + rng.gauss(0.15, 1.0) * atr * 0.6), 2)
        p = price[name]
        when += step
        base = {"instrument": name, "price": p, "atr": atr, "er": round(rng.uniform(0.3, 0.95), 2),
                "supertrend": round(p - 2 * atr, 2), "roc": round(rng.uniform(-3, 3), 2),
                "lots": rng.randint(1, 5), "timestamp": when.isoformat()}
        if layers[name] == 0:
            if rng.random() < 0.6:
                out.append({**base, "type": "BASE_ENTRY", "position": "Long_1",
                            "stop": round(p - float(cfg.initial_stop_atr) * atr, 2)})
                layers[name], last_add[name] = 1, p
        elif rng.random() < 0.18:
            out.append({**base, "type": "EXIT", "position": "ALL", "reason": rng.choice(["SIGNAL", "STOP_LOSS"])})
            layers[name] = 0
        elif layers[name] <= cfg.max_pyramids and p > last_add[name] + atr:
            out.append({**base, "type": "PYRAMID", "position": f"Long_{layers[name] + 1}",
                        "stop": round(p - float(cfg.initial_stop_atr) * atr, 2)})
            layers[name] += 1
            last_add[name] = p
    return out


def mixed_stream(count: int, seed: int = 7, duplicate_ratio: float = 0.3,
                 instruments: Optional[Mapping[str, InstrumentConfig]] = None) -> list[dict[str, Any]]:
    """``count`` payloads of which ``duplicate_ratio`` are repeats of a recent earlier payload.

    A repeat follows its original within a few signals, as a TradingView retry or an alert
    delivered to two engine instances would; with several senders it can arrive at the same moment.
    """
    rng = random.Random(seed + 1)
    distinct = generate_signals(max(1, round(count * (1 - duplicate_ratio))), seed, instruments=instruments,
                                step=timedelta(seconds=1))
    out: list[dict[str, Any]] = []
    repeats = count - len(distinct)
    for i, payload in enumerate(distinct):
        out.append(payload)
        remaining = len(distinct) - i
        while repeats and rng.random() < repeats / remaining:
            out.append(dict(out[-1 - rng.randrange(min(len(out), 4))]))
            repeats -= 1
    while repeats:
        out.append(dict(out[-1]))
        repeats -= 1
    return out
