"""Issue 28 item 2: reports once money moves. A withdrawal, a review that gives an exit's P&L back (a second
history row of the flow's portfolio version) and a deposit: the SQL report and the Python one agree, and both
equal the ledger and the book (closing equity per period, withdrawals, time-weighted return)."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal as D
from typing import Any

from pm_engine.config import DatabaseConfig
from pm_engine.core.engine import TradingEngine
from pm_engine.core.orders import Fill, Order
from pm_engine.core.replay.statistics import pnl_by_period, time_weighted_return
from pm_engine.core.statistics import Trade, as_json
from pm_engine.store.gateway import Store
from tests.helpers import payload, rows


class AtTheBroker:
    """A broker that keeps every order queued: the sender would send them; here they wait for the test."""

    def place_orders(self, orders: list[Order]) -> list[Fill]:
        return []


def cli(db_config: DatabaseConfig, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_config.url(hide_password=False)}
    env.pop("PM_OPENALGO_API_KEY", None)
    return subprocess.run([sys.executable, "-m", "pm_engine", *args], env=env, capture_output=True, text=True,
                          timeout=60)


def test_report_with_flows_and_a_review_equals_the_ledger_and_the_book(db_config: DatabaseConfig, pg2: Any) -> None:
    store = Store(db_config)
    try:
        broker = TradingEngine(store=store, max_signal_age=None, broker=AtTheBroker())  # type: ignore[arg-type]
        paper = TradingEngine(store=store, max_signal_age=None)
        # a paper trade: +1,000 points on 4 lots of Bank Nifty (₹30 a point) = +120,000
        for body in (payload("BASE_ENTRY", "BANK_NIFTY", "Long_1", 52000, "2026-10-30T10:30:00+05:30", stop=51650,
                             atr=350, er=0.85),
                     payload("EXIT", "BANK_NIFTY", "ALL", 53000, "2026-10-30T11:30:00+05:30", reason="SIGNAL")):
            assert paper.process_payload(body, check_time=False).outcome.value == "executed"
        # a GOLD_MINI entry at the broker (still queued) and its exit decided: its P&L is in closed equity
        for body in (payload("BASE_ENTRY", "GOLD_MINI", "Long_1", 75000, "2026-10-30T12:30:00+05:30", stop=74300,
                             atr=400, er=0.8),
                     payload("EXIT", "GOLD_MINI", "ALL", 75500, "2026-10-30T13:30:00+05:30", reason="SIGNAL")):
            broker.portfolio.load()
            assert broker.process_payload(body, check_time=False).outcome.value == "executed"
        [(gold_pnl,)] = rows(db_config, "SELECT realized_pnl FROM pm.portfolio_positions "
                                        "WHERE instrument = 'GOLD_MINI'")
        assert gold_pnl > 0
        withdrawn = cli(db_config, "capital", "withdraw", "3000000", "--note", "to start at 20 lakh")
        assert withdrawn.returncode == 0, withdrawn.stderr
        # the entry was never at the broker: the trader says so; booking gives the exit's P&L back
        [(entry_id,)] = rows(db_config, "SELECT client_order_id FROM pm.broker_orders WHERE instrument = 'GOLD_MINI' "
                                        "AND side = 'BUY'")
        with pg2.cursor() as cur:
            cur.execute("SELECT pm.order_sending(%s)", (entry_id,))
            cur.execute("SELECT pm.order_unknown(%s, 'no answer')", (entry_id,))
            cur.execute("SELECT pm.order_needs_review(%s, 'nothing at the broker')", (entry_id,))
        reviewed = cli(db_config, "orders", "review", entry_id, "--not-at-broker", "--reason", "not in the book")
        assert reviewed.returncode == 0, reviewed.stderr
        deposited = cli(db_config, "capital", "deposit", "500000")
        assert deposited.returncode == 0, deposited.stderr
        # the case of the issue: a flow's portfolio version has two history rows
        assert rows(db_config, "SELECT count(*) FROM pm.portfolio_history h JOIN pm.capital_flows f "
                               "ON f.portfolio_version = h.version WHERE f.kind = 'withdrawal'") == [(2,)]

        [(book,)] = rows(db_config, "SELECT closed_equity FROM pm.portfolio_state")
        assert book == D("5000000") + D("120000") - D("3000000") + D("500000")  # the gold trade never happened
        ledger = store.capital.capital_ledger()
        assert sorted((f["kind"], f["amount"]) for f in ledger) == [
            ("deposit", D("500000.00")), ("withdrawal", D("3000000.00"))]
        stats = store.history.trade_stats()
        assert (stats["withdrawals"], stats["deposits"], stats["net_flows"]) == (
            D("3000000.00"), D("500000.00"), D("-2500000.00"))
        assert stats["final_closed_equity"] == book and stats["trades"] == 1 and stats["net_pnl"] == D("120000.00")
        # the time-weighted return from the book's own points: 5,120,000 before the withdrawal (from 5,000,000),
        # 2,120,000 before the deposit (from 2,120,000: the review moved nothing after that flow but gave back
        # gold's P&L first), then flat to 2,620,000
        curve = [(r["closed_equity"], r["signed_amount"] or D(0)) for r in db_rows(pg2, """
            SELECT h.closed_equity, f.signed_amount FROM pm.portfolio_history h
              LEFT JOIN pm.capital_flows f ON f.history_id = h.history_id ORDER BY h.recorded_at, h.history_id""")]
        assert sum(1 for _, f in curve if f) == 2
        assert stats["time_weighted_return"] == time_weighted_return(curve)
        assert D("0") < stats["time_weighted_return"] < D("3")  # about +2.4 %: not the 20 % of counting twice

        stored = [Trade.from_row(r) for r in store.history.trades()]
        flows = [(f["recorded_at"], f["signed_amount"]) for f in ledger]
        for period in ("day", "week", "month"):
            sql = store.history.pnl_by_period(period)
            assert as_json(sql) == as_json(pnl_by_period(stored, period, D("5000000"), flows))
            assert sql[-1]["closing_equity"] == book  # the book's closed equity, not initial capital + P&L
            assert sum(r["net_flows"] for r in sql) == D("-2500000.00")
        report = cli(db_config, "report")
        assert report.returncode == 0, report.stderr
        assert f"closing equity {book:>14}" in report.stdout and "flows    -2500000.00" in report.stdout
    finally:
        store.close()


def db_rows(conn: Any, query: str) -> list[dict[str, Any]]:
    with conn.cursor() as cur:
        cur.execute(query)
        names = [c.name for c in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
