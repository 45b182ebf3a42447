"""Periodic work: deciding commissions when attribution windows close, settlement, the end of
destination cool-offs, and the ledger check behind the ledger alert."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

from services.payouts.dispatcher import Clock, utc_now
from services.payouts.handlers import (
    PayoutPolicy,
    PendingChanges,
    decide_commissions,
    payout_transaction,
    release_cooled_off,
)
from services.payouts.providers import PayoutProvider, ProviderError, Settlement
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
    """Every `interval_seconds`, asks each sent payout's rail about it and records settlement
    (or a reported failure, which returns the money to the creator's payable balance)."""

    def __init__(
        self,
        db: PayoutsStore,
        provider: Rails | PayoutProvider,
        policy: PayoutPolicy,
        *,
        interval_seconds: float,
        batch: int = 200,
        clock: Clock = utc_now,
    ) -> None:
        super().__init__(db, policy, interval_seconds=interval_seconds, batch=batch, clock=clock)
        self._rails = provider if isinstance(provider, Rails) else Rails.single(provider)

    async def run_once(self) -> int:
        async with self._db.transaction() as repo:
            sent = await repo.sent_for_update(self._batch)
        answers: dict[str, Settlement] = {}
        rail_of: dict[str, str] = {}
        for payout in sent:
            assert payout.provider_ref is not None
            provider = self._rails.get(payout.rail)
            if provider is None:
                log.warning("settlement unknown: rail not configured", payout_id=payout.payout_id)
                continue
            rail_of[payout.payout_id] = provider.name
            try:
                answers[payout.payout_id] = await provider.settlement(payout.provider_ref)
            except ProviderError as error:
                log.warning("settlement unknown", payout_id=payout.payout_id, reason=error.reason)
        reports: list[RailReport] = []
        for payout in sent:
            answer = answers.get(payout.payout_id)
            if answer is None or answer.state == "pending" or payout.provider_ref is None:
                continue
            reason = answer.reason or f"{rail_of[payout.payout_id]}: transfer failed"
            reports.append(RailReport(payout.payout_id, payout.provider_ref, answer.state, reason))
        if not reports:
            return 0
        async with payout_transaction(self._db, self._policy, self._clock()) as changes:
            changed = await apply_reports(changes, reports)
        return changed


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
