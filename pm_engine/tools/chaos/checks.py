"""The checks after a chaos run: the database against an in-memory replay of the same stream (the reference),
the broker simulator against the book, the views every instance serves, and no secret in any log."""

from __future__ import annotations

import http.client
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Optional

from pm_engine.core.engine import TradingEngine
from pm_engine.core.reconcile import compare
from pm_engine.sim.book import Account
from pm_engine.store.connection import DatabaseConfig
from pm_engine.store.gateway import Store
from pm_engine.tools.chaos.harness import Harness
from pm_engine.tools.children import committed_book, fetch_all, http_request, served_book


# -- checks ----------------------------------------------------------------------------------------
@dataclass
class Verdict:
    lost: int = 0
    duplicated: int = 0
    mismatches: int = 0
    notes: list[str] = field(default_factory=list)

    def mismatch(self, note: str) -> None:
        self.mismatches += 1
        if len(self.notes) < 20:
            self.notes.append(note)


def reference(stream: list[dict[str, Any]]) -> tuple[TradingEngine, dict[str, str]]:
    """The same stream through the same trading core, in memory, once per distinct signal."""
    from pm_engine.core.orders import PaperBroker

    engine = TradingEngine(broker=PaperBroker(), max_signal_age=None)
    outcomes: dict[str, str] = {}
    for payload in stream:
        result = engine.process_payload(payload, check_time=False)
        if result.outcome.value != "duplicate":
            outcomes[result.fingerprint] = result.outcome.value
    return engine, outcomes


def verify_broker(config: DatabaseConfig, account: Account, verdict: Verdict) -> None:
    """Against the simulator: every order of ours is exactly one order at the broker (an order there that no order
    of ours links to was sent twice), each filled; and the broker's net position per contract is the book's."""
    ours = {str(row[0]): (str(row[1]), str(row[2])) for row in fetch_all(config, "chaos_broker_links")}
    with account.lock:
        at_broker = {oid: (o.symbol, o.action, o.status) for oid, o in account.orders.items()}
        positions = account.positions()
    extra = sorted(set(at_broker) - set(ours))
    verdict.duplicated += len(extra)
    for oid in extra[:5]:
        verdict.notes.append(f"broker order {oid} {at_broker[oid][:2]} is linked to no order of ours: sent twice")
    for oid in sorted(set(ours) - set(at_broker))[:20]:
        verdict.mismatch(f"order {ours[oid][0]} names broker order {oid}, which the broker does not have")
    for client_id, state in fetch_all(config, "chaos_unfilled_orders"):
        verdict.mismatch(f"order {client_id} ended {state}, not filled")
    store = Store(config)
    try:
        book, traded = store.orders.book_positions()
    finally:
        store.close()
    for difference in compare(book, traded, positions)["differences"]:
        verdict.mismatch(f"broker net {difference['broker_quantity']} != book {difference['book_quantity']} "
                         f"for {difference['symbol']}")


def verify(config: DatabaseConfig, stream: list[dict[str, Any]], answers: dict[str, list[str]],
           account: Optional[Account] = None) -> Verdict:
    verdict = Verdict()
    ref, expected = reference(stream)
    logged = dict(fetch_all(config, "bench_logged_fingerprints"))
    verdict.lost = len(set(expected) - set(logged))
    for fp in set(logged) - set(expected):
        verdict.mismatch(f"logged fingerprint {fp[:12]} was never sent")
    for fp, status in expected.items():
        if fp in logged and logged[fp] != status:
            verdict.mismatch(f"signal {fp[:12]}: database says {logged[fp]}, reference {status}")
    for fp, got in answers.items():
        if got.count("executed") > 1:
            verdict.duplicated += 1
        bad = [a for a in got if a.startswith("error")]
        if bad:
            verdict.mismatch(f"signal {fp[:12]} answered {bad[0]}")
    verdict.duplicated += int(fetch_all(config, "bench_orders_per_layer")[0][0])

    # positions, pyramiding and equity, as the engine recovers them
    store = Store(config)
    try:
        engine = TradingEngine(store=store, instance_id="chaos-check")
        if account is None:
            engine.send_queued()  # what any paper restart does: orders committed but never filled
        mine, theirs = engine.portfolio, ref.portfolio
        if mine.closed_equity != theirs.closed_equity:
            verdict.mismatch(f"closed equity {mine.closed_equity} != reference {theirs.closed_equity}")
        if set(mine.positions) != set(theirs.positions):
            verdict.mismatch(f"open positions {sorted(mine.positions)} != reference {sorted(theirs.positions)}")
        for pid in set(mine.positions) & set(theirs.positions):
            a, b = mine.positions[pid], theirs.positions[pid]
            for name in ("lots", "entry_price", "initial_stop", "current_stop", "highest_close", "is_base_position",
                         "limiter", "risk_contribution", "vol_contribution"):
                if getattr(a, name) != getattr(b, name):
                    verdict.mismatch(f"{pid}.{name}: {getattr(a, name)} != reference {getattr(b, name)}")
        mine_pyr = {k: (v.last_pyramid_price, v.base_position_id) for k, v in mine.pyramiding.items()}
        ref_pyr = {k: (v.last_pyramid_price, v.base_position_id) for k, v in theirs.pyramiding.items()}
        if mine_pyr != ref_pyr:
            verdict.mismatch(f"pyramiding {mine_pyr} != reference {ref_pyr}")
    finally:
        store.close()
    no_history, positions, portfolio, pyramiding = fetch_all(config, "history_check")[0]
    if no_history:
        verdict.mismatch(f"{no_history} committed signal(s) without their history rows")
    for count, what in ((positions, "position"), (portfolio, "portfolio"), (pyramiding, "pyramiding")):
        if count:
            verdict.mismatch(f"{count} {what} row(s) differ from their last history version")
    capital, equity, realized, open_twice, pending = fetch_all(config, "chaos_equity_check")[0]
    if Decimal(equity) != Decimal(capital) + Decimal(realized):
        verdict.mismatch(f"closed_equity {equity} != initial capital {capital} + realized {realized} (SQL)")
    if open_twice:
        verdict.duplicated += int(open_twice)
    if pending:
        verdict.mismatch(f"{pending} order(s) still pending after recovery")
    ref_orders = {(o.client_order_id, o.side, o.lots, o.price, o.exchange, o.symbol, o.quantity, o.leg)
                  for o in ref.broker.orders.values()}  # type: ignore
    db_orders = {tuple(row) for row in fetch_all(config, "chaos_orders")}
    if ref_orders != db_orders:
        verdict.mismatch(f"broker orders differ: {len(db_orders - ref_orders)} extra, "
                         f"{len(ref_orders - db_orders)} missing")
    if account is not None:
        verify_broker(config, account, verdict)
    return verdict


def stale_views(harness: Harness) -> list[str]:
    """Instances whose GET /status differs from the book the database committed (issue 10: must be none)."""
    book = committed_book(harness.config)
    stale = []
    for number, instance in enumerate(harness.instances):
        status, body = http_request(instance.port, "GET", "/status")
        if status != 200 or served_book(body) != book:
            stale.append(f"instance {number}: /status {status} differs from the database's book")
    return stale


def leaked_secrets(harness: Harness) -> int:
    """Occurrences of the webhook secret in engine logs and /status (must be 0)."""
    found = sum(path.read_text(errors="replace").count(harness.secret) for path in harness.logdir.glob("*.log"))
    for instance in harness.instances:
        if instance.alive():
            try:
                status, body = http_request(instance.port, "GET", "/status")
                found += json.dumps(body).count(harness.secret)
            except (OSError, http.client.HTTPException):
                pass
    return found
