"""Periodic work: deciding commissions when attribution windows close, settlement, the end of
destination cool-offs, and the ledger check behind the ledger alert."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog

from services.payouts.dispatcher import Clock, utc_now
from services.payouts.domain.lifecycle import Payout
from services.payouts.domain.settlement_checks import next_settlement_check
from services.payouts.handlers import (
    PayoutPolicy,
    PendingChanges,
    decide_commissions,
    payout_transaction,
    release_cooled_off,
)
from services.payouts.providers import PayoutProvider, ProviderError
from services.payouts.providers.rails import Rails
from services.payouts.reports import LedgerReport, check_ledger
from services.payouts.settlements import RailReport, apply_reports
from services.payouts.store.port import PayoutsStore
from shared.runtime.observability import LEDGER_CHECK_PROBLEMS, LEDGER_CHECKS
from shared.runtime.rounds import run_in_rounds

log = structlog.get_logger(__name__)


Round = Callable[[PendingChanges, int], Awaitable[int]]
"""One round of periodic work in one transaction: (changes, batch) -> rows looked at."""


class _Periodic:
    """Rounds of at most `batch` rows in a transaction each, again at once while a round finds
    a full batch, else after `interval_seconds`: what the schedules below have in common."""

    def __init__(
        self,
        db: PayoutsStore,
        policy: PayoutPolicy,
        *,
        interval_seconds: float,
        batch: int,
        clock: Clock,
    ) -> None:
        self._db = db
        self._policy = policy
        self._interval = interval_seconds
        self._batch = batch
        self._clock = clock

    async def run(self) -> None:
        await run_in_rounds(self.run_once, full=self._batch, idle_seconds=self._interval)

    async def run_once(self) -> int:
        """One round; how many rows it looked at."""
        raise NotImplementedError


class _Rounds(_Periodic):
    """Every `interval_seconds`, runs `_round` in a transaction until a round finds less than
    a batch; wakes the dispatcher when it scheduled payouts."""

    _round: Round

    def __init__(
        self,
        db: PayoutsStore,
        policy: PayoutPolicy,
        *,
        interval_seconds: float,
        on_scheduled: Callable[[], None] = lambda: None,
        batch: int = 100,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(db, policy, interval_seconds=interval_seconds, batch=batch, clock=clock)
        self._on_scheduled = on_scheduled

    async def run_once(self) -> int:
        async with payout_transaction(self._db, self._policy, self._clock()) as changes:
            looked_at = await type(self)._round(changes, self._batch)
        if changes.scheduled:
            self._on_scheduled()
        return looked_at


class CommissionSchedule(_Rounds):
    """Decides the commissions that became due (and their adjustments)."""

    _round = staticmethod(decide_commissions)


class SettlementPoller(_Periodic):
    """Every `interval_seconds`, asks the rail of each sent payout that is due about it and
    records settlement (or a reported failure, which returns the money to the creator's
    payable balance). A payout still pending is asked again after `interval_seconds`, then
    twice as long each time, at most `longest_seconds` apart (domain/settlement_checks.py)."""

    def __init__(
        self,
        db: PayoutsStore,
        provider: Rails | PayoutProvider,
        policy: PayoutPolicy,
        *,
        interval_seconds: float,
        longest_seconds: float = 3600.0,
        batch: int = 200,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(db, policy, interval_seconds=interval_seconds, batch=batch, clock=clock)
        self._rails = provider if isinstance(provider, Rails) else Rails.single(provider)
        self._first = timedelta(seconds=interval_seconds)
        self._longest = timedelta(seconds=max(longest_seconds, interval_seconds))

    async def run_once(self) -> int:
        """One round; how many payouts were due (each asked, or rescheduled without a rail)."""
        now = self._clock()
        async with self._db.transaction() as repo:
            due = await repo.sent_due_for_update(now, self._batch)
            if not due:
                return 0
            # Claimed as if the rail will say "pending": another replica's round, or this one's
            # next, does not ask about them again while the rail is being asked (the row locks
            # end with this transaction). A final answer below ends the checks anyway.
            await repo.settlement_checks_ahead(
                {
                    payout.payout_id: next_settlement_check(now, checks, self._first, self._longest)
                    for payout, checks in due
                }
            )
        reports = [report for payout, _ in due if (report := await self._ask(payout)) is not None]
        if reports:
            async with payout_transaction(self._db, self._policy, self._clock()) as changes:
                await apply_reports(changes, reports)
        return len(due)

    async def _ask(self, payout: Payout) -> RailReport | None:
        """The rail's final word on `payout`, or None (pending, or no answer)."""
        assert payout.provider_ref is not None
        provider = self._rails.get(payout.rail)
        if provider is None:
            log.warning("settlement unknown: rail not configured", payout_id=payout.payout_id)
            return None
        try:
            answer = await provider.settlement(payout.provider_ref)
        except ProviderError as error:
            log.warning("settlement unknown", payout_id=payout.payout_id, reason=error.reason)
            return None
        if answer.state == "pending":
            return None
        reason = answer.reason or f"{provider.name}: transfer failed"
        return RailReport(payout.payout_id, payout.provider_ref, answer.state, reason)


class CoolOffReleases(_Rounds):
    """Releases payouts whose destination cool-off has ended."""

    _round = staticmethod(release_cooled_off)


class LedgerCheck:
    """Every `interval_seconds` (the first at start), checks the ledger's invariants as
    `creatorflow payouts ledger-check` does and exports the result for alerting
    (`creatorflow_ledger_check_problems`, `creatorflow_ledger_checks_total{result}`). It reads
    the whole ledger in one snapshot: raise the interval for a large one."""

    def __init__(self, db: PayoutsStore, *, interval_seconds: float) -> None:
        self._db = db
        self._interval = interval_seconds

    async def run(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self._interval)

    async def run_once(self) -> LedgerReport | None:
        try:
            report = await check_ledger(self._db)
        except Exception:  # a check that cannot run is counted, never takes the service down
            log.exception("ledger check could not run")
            LEDGER_CHECKS.labels(result="error").inc()
            return None
        LEDGER_CHECK_PROBLEMS.set(len(report.problems))
        if report.problems:
            log.error("ledger check failed", problems=report.problems[:20])
        LEDGER_CHECKS.labels(result="failed" if report.problems else "ok").inc()
        return report
