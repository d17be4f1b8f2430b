"""What a chaos run does (signals, engines, kills, restarts, faults) and what it counts while it runs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ChaosSettings:
    signals: int = 5000
    instances: int = 3
    kills: int = 10
    db_restarts: int = 2
    duplicate_ratio: float = 0.3
    fault_after_commit: float = 0.002
    fuzz: int = 10000
    seed: int = 23
    broker: bool = False  # orders go to the broker simulator over HTTP (else the paper broker, in the database)
    broker_faults: int = 0  # broker faults played during the run: unclear answers after acceptance, expired sessions


SHORT = ChaosSettings(signals=400, instances=2, kills=2, db_restarts=1, fault_after_commit=0.005, fuzz=400)
# against the broker simulator: every order over HTTP, so fewer signals (the hostile input is the paper run's)
BROKER = ChaosSettings(signals=2000, kills=10, db_restarts=2, fuzz=0, broker=True, broker_faults=20)
SHORT_BROKER = ChaosSettings(signals=150, instances=2, kills=2, db_restarts=1, fault_after_commit=0.005, fuzz=0,
                             broker=True, broker_faults=4)
BROKER_FAULTS = ("timeout", "cut", "500", "session_expired")
SETTLE_S = 90.0  # how long the orders in flight at the end may take to settle (a 403's backoff, a dead sender)


@dataclass
class Counts:
    sent: int = 0
    requests: int = 0
    retried: int = 0
    duplicates: int = 0
    kills: int = 0
    fault_kills: int = 0
    broker_faults: int = 0
    reviewed: int = 0
    db_restarts: int = 0
    restarts: int = 0
    server_errors: int = 0
    max_503_ms: float = 0.0
    ready_503: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)
