"""The book's durable side: positions, the portfolio row, pyramiding state, and the signal's one commit.

``BookStore`` implements core.state_store.StateStore. Reads go through a version-aware L1 cache
whose entries never go backwards (a slow read cannot replace a newer committed version). A
signal's effects become durable in ``commit``, which owns the retry after a stale decision:
one atomic pm.apply_signal when nobody else is committing; after a stale decision, the decision
redone under the portfolio's row lock (it cannot go stale twice); and, for ``CONTENTION_WINDOW_S``
after one, guarded transactions that redecide under the lock they already hold (never more
than two round trips, whatever happens).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Optional

from pm_engine.core.errors import StaleVersionError
from pm_engine.core.models import Blocked, Duplicate, Position, Signal, SignalResult
from pm_engine.core.state_store import Decide, Decided
from pm_engine.store.codec import copied, dumps, next_versions, position_from_row, position_to_doc
from pm_engine.store.effects import control_document, effects, signal_document
from pm_engine.store.executor import Executor, Step

if TYPE_CHECKING:  # pragma: no cover
    from decimal import Decimal

    from pm_engine.core.portfolio import Book

CONTENTION_WINDOW_S = 10.0  # after a stale decision, commit in guarded transactions for this long


class BookStore:
    """Pooled access to the book (positions, portfolio, pyramiding) with a version-aware cache."""

    def __init__(self, executor: Executor) -> None:
        self.executor = executor
        self._lock = threading.RLock()
        self._positions: dict[str, Position] = {}
        self._portfolio: Optional[dict[str, Any]] = None
        self._max_seen: dict[str, int] = {}  # highest committed version seen per position id
        self._contention_until = 0.0  # monotonic time until which other instances are known to commit

    # -- cache ---------------------------------------------------------------------------------
    def _remember(self, position: Position) -> None:
        """Cache a committed position unless this process has already seen a newer version of it."""
        with self._lock:
            if position.version >= self._max_seen.get(position.position_id, 0):
                self._max_seen[position.position_id] = position.version
                self._positions[position.position_id] = position

    def invalidate(self) -> None:
        with self._lock:
            self._positions.clear()
            self._portfolio = None

    def forget_portfolio(self) -> None:
        """The cached portfolio row is stale (a capital flow or a commit moved it)."""
        with self._lock:
            self._portfolio = None

    # -- positions -----------------------------------------------------------------------------
    def save_position(self, position: Position) -> bool:
        """Insert (version 0) or version-checked update; sets ``position.version``. StaleVersionError if stale."""
        expected = position.version or None
        version = self.executor.scalar("save_position", dumps(position_to_doc(position)), expected)
        position.version = int(version)
        self._remember(copied(position))
        return True

    def get_position(self, position_id: str) -> Optional[Position]:
        """Cache first, then the database (and cache it)."""
        with self._lock:
            cached = self._positions.get(position_id)
        if cached is not None:
            return copied(cached)
        rows = self.executor.run("get_position", position_id)
        if not rows:
            return None
        position = position_from_row(rows[0])
        self._remember(position)
        return copied(position)

    def get_all_open_positions(self) -> dict[str, Position]:
        """Every open position from the database (all cached)."""
        positions = {row["position_id"]: position_from_row(row) for row in self.executor.run("get_open_positions")}
        for position in positions.values():
            self._remember(copied(position))
        return positions

    # -- portfolio and pyramiding --------------------------------------------------------------
    def get_portfolio_state(self) -> Optional[dict[str, Any]]:
        """Cache first; the row as a dict."""
        with self._lock:
            if self._portfolio is not None:
                return dict(self._portfolio)
        rows = self.executor.run("get_portfolio_state")
        if not rows:
            return None
        with self._lock:
            if self._portfolio is None or int(rows[0]["version"]) >= int(self._portfolio["version"]):
                self._portfolio = dict(rows[0])
        return dict(rows[0])

    def save_portfolio_state(self, state: dict[str, Any], expected_version: Optional[int] = None) -> int:
        """Version-checked update (the cached version when none is given); returns the new version."""
        if expected_version is None:
            current = self.get_portfolio_state()
            expected_version = int(current["version"]) if current else 1
        version = int(self.executor.scalar("save_portfolio_state", dumps(state), expected_version))
        self.forget_portfolio()
        return version

    def save_pyramiding_state(self, instrument: str, last_pyramid_price: Optional["Decimal"],
                              base_position_id: Optional[str]) -> None:
        self.executor.run("save_pyramiding_state", instrument, last_pyramid_price, base_position_id)

    def get_pyramiding_state(self) -> dict[str, dict[str, Any]]:
        return {row["instrument"]: dict(row) for row in self.executor.run("get_pyramiding_state")}

    # -- the whole book ------------------------------------------------------------------------
    def load_state(self) -> dict[str, Any]:
        """Portfolio row, open positions and pyramiding state in one round trip (start-up recovery)."""
        return self._recovered(self.executor.scalar("load_state"))

    def state_if_moved(self, known_version: int) -> Optional[dict[str, Any]]:
        """The committed state if the portfolio moved past ``known_version``, else None (one round trip)."""
        answer = self.executor.scalar("state_if_moved", known_version)
        return self._recovered(answer["state"]) if "state" in answer else None

    def _recovered(self, state: dict[str, Any]) -> dict[str, Any]:
        """A pm.load_state() document with its positions as records (and cached)."""
        state["positions"] = {row["position_id"]: position_from_row(row) for row in state["positions"]}
        for position in state["positions"].values():
            self._remember(copied(position))
        return dict(state)

    def save_positions(self, work: "Book") -> None:
        """Write a working copy's changed positions and metrics (stop updates), version-checked."""
        positions, pyramiding, portfolio = effects(work)
        version = self.executor.scalar("apply_state", dumps(positions), dumps(pyramiding), dumps(portfolio),
                                       work.version)
        self._absorb(work, {"portfolio_version": version, "versions": next_versions(positions)})

    def _absorb(self, work: "Book", answer: dict[str, Any]) -> None:
        """Adopt the versions the database assigned and refresh the cache with them."""
        work.version = int(answer["portfolio_version"])
        for position_id, version in answer["versions"].items():
            position = work.dirty_positions.get(position_id)
            if position is not None:
                position.version = int(version)
                self._remember(copied(position))
        self.forget_portfolio()

    # -- the signal's commit -------------------------------------------------------------------
    def commit(self, signal: Signal, result: SignalResult, work: "Book", decide: Decide,
               instance_id: str) -> Decided | Duplicate | Blocked:
        """Claim the fingerprint and make the decision ``(result, work)`` durable, redeciding if it went stale.

        Answers the decision as committed (``decide``'s when it was redone on the fresh state),
        ``Duplicate`` when the fingerprint was claimed before, or ``Blocked`` when the trading
        controls refuse the signal at commit (logged, nothing else written); either carries the
        fresh state when the commit learnt one. ``decide(state)`` decides again on the state the
        database sent (None: unchanged since the state last passed to the caller).
        """
        if time.monotonic() < self._contention_until:
            # other instances are committing: apply inside a transaction, so a stale decision is redone
            # under the row lock it already holds (2 round trips, whatever happens)
            return self._commit_guarded(signal, result, work, self._contended(decide), instance_id)
        try:
            refused = self._commit_once(signal, result, work, instance_id)
        except StaleVersionError as exc:
            # another instance moved the portfolio: decide again on its state under the portfolio's lock,
            # so the second decision cannot go stale (2 more round trips, no loop)
            self._contention_until = time.monotonic() + CONTENTION_WINDOW_S
            fresh = exc.state
            assert fresh is not None  # _commit_once always attaches the state it was refused with
            row = fresh.get("portfolio")
            known = int(row["version"]) if row is not None else work.version
            done = self._commit_locked(signal, known, lambda state: decide(fresh if state is None else state),
                                       instance_id)
            if isinstance(done, Blocked):
                return Blocked(done.reason, fresh)
            if isinstance(done, Duplicate) and done.state is None:
                return Duplicate(fresh)
            return done
        return (result, work) if refused is None else refused

    def _contended(self, decide: Decide) -> Decide:
        def again(state: Optional[dict[str, Any]]) -> Decided:
            self._contention_until = time.monotonic() + CONTENTION_WINDOW_S
            return decide(state)
        return again

    def _commit_once(self, signal: Signal, result: SignalResult, work: "Book",
                     instance_id: str) -> Optional[Duplicate | Blocked]:
        """One atomic pm.apply_signal; None when applied, StaleVersionError (carrying the state) when stale."""
        positions, pyramiding, portfolio = effects(work)
        answer = self.executor.scalar("apply_signal", dumps(signal_document(signal, result, work, instance_id)),
                                      dumps(positions), dumps(pyramiding), dumps(portfolio), work.version)
        if not answer["new"]:
            return self._duplicate(answer)
        if answer.get("blocked"):
            return Blocked(answer["reason"])
        if answer.get("stale"):
            error = StaleVersionError(f"portfolio moved to version {answer['portfolio_version']} since version "
                                      f"{work.version}; decide again", "PM001")
            error.state = self._recovered(answer["state"])
            raise error
        self._absorb(work, answer)
        return None

    def _duplicate(self, answer: dict[str, Any]) -> Duplicate:
        return Duplicate(self._recovered(answer["state"]) if "state" in answer else None)

    def _commit_locked(self, signal: Signal, known_version: int, decide: Decide,
                       instance_id: str) -> Decided | Duplicate | Blocked:
        """Decide under the portfolio's row lock and commit: the retry after a stale decision.

        Two round trips on one connection: ``BEGIN; pm.lock_for_decision`` (the lock, and the fresh
        state if the portfolio moved), then ``pm.apply_signal; COMMIT``. Holding the lock, nobody
        else can commit in between, so this attempt cannot go stale. ``decide(state)`` gets the
        fresh state (None when unchanged) and returns the result and its working copy.
        """
        def handle(step: Step, answer: dict[str, Any]) -> Decided | Duplicate | Blocked:
            if answer["duplicate"]:
                step.rollback()
                return self._duplicate(answer)
            if answer.get("blocked"):  # the controls refuse it under this lock: log it blocked, nothing else
                step.send("apply_signal_and_commit",
                          dumps(control_document(signal) | {"processing_status": "blocked",
                                                            "reason": answer["blocked"], "payload": signal.payload,
                                                            "instance": instance_id}),
                          "[]", "[]", "{}", int(answer["portfolio_version"]))
                return Blocked(answer["blocked"])
            result, work = decide(self._recovered(answer["state"]) if "state" in answer else None)
            return self._apply_and_commit(step, signal, result, work, instance_id)
        return self.executor.in_transaction("lock_for_decision", (signal.fingerprint, known_version,
                                                                  dumps(control_document(signal))), handle)

    def _commit_guarded(self, signal: Signal, result: SignalResult, work: "Book", decide: Decide,
                        instance_id: str) -> Decided | Duplicate | Blocked:
        """The decision applied inside an open transaction: never more than two round trips.

        ``BEGIN; pm.apply_signal`` applies it if the portfolio has not moved (then ``COMMIT``);
        if it has, pm.apply_signal has written nothing but holds the portfolio's row lock and sent
        the fresh state, so the engine decides again and ``pm.apply_signal; COMMIT`` cannot go stale.
        """
        def handle(step: Step, answer: dict[str, Any]) -> Decided | Duplicate | Blocked:
            if not answer["new"]:
                step.rollback()
                return self._duplicate(answer)
            if answer.get("blocked"):
                step.send("commit")
                return Blocked(answer["reason"])
            if answer.get("stale"):
                again, redone = decide(self._recovered(answer["state"]))
                return self._apply_and_commit(step, signal, again, redone, instance_id)
            step.send("commit")
            self._absorb(work, answer)
            return result, work
        positions, pyramiding, portfolio = effects(work)
        params = (dumps(signal_document(signal, result, work, instance_id)), dumps(positions),
                  dumps(pyramiding), dumps(portfolio), work.version)
        return self.executor.in_transaction("begin_apply_signal", params, handle)

    def _apply_and_commit(self, step: Step, signal: Signal, result: SignalResult, work: "Book",
                          instance_id: str) -> Decided:
        """Second step under the row lock: apply and commit in one round trip (nothing can be stale)."""
        positions, pyramiding, portfolio = effects(work)
        step.send("apply_signal_and_commit", dumps(signal_document(signal, result, work, instance_id)),
                  dumps(positions), dumps(pyramiding), dumps(portfolio), work.version)
        self._absorb(work, {"portfolio_version": work.version + 1, "versions": next_versions(positions)})
        return result, work
