"""The dispatcher: hands scheduled payouts to the payment provider, outside any consumer
transaction, exactly once per payout.

One round: (1) in a short transaction, take due payouts with `FOR UPDATE SKIP LOCKED` (other
instances skip them), count the attempt and lease them (or hold them if the account stopped
being payable); (2) with no transaction open, call the provider with the payout id as the
idempotency key; (3) in a second transaction, record `sent` or the failure (retry later with
backoff, or `failed`). A crash after (2) leaves the payout scheduled; when its lease expires it
is sent again with the same key, and the provider answers with the first transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from services.payouts.destinations import DestinationCipher, UnreadableDestination
from services.payouts.domain import lifecycle
from services.payouts.domain.accounts import PayoutAccount, hold_for
from services.payouts.domain.lifecycle import Payout, Transition
from services.payouts.handlers import PayoutPolicy, Work
from services.payouts.providers import (
    PayoutProvider,
    ProviderError,
    TransferAccepted,
    TransferRequest,
)
from services.payouts.store import PayoutDatabase
from shared.contract.events import PayoutStatus
from shared.runtime.observability import PAYOUT_CONFIRMATION_TO_SENT, PAYOUT_POST_TO_SENT

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Claimed:
    payout: Payout
    account: PayoutAccount


class Dispatcher:
    """Runs rounds as long as payouts are due; sleeps until `wake()` or `idle_seconds`."""

    def __init__(
        self,
        db: PayoutDatabase,
        provider: PayoutProvider,
        policy: PayoutPolicy,
        *,
        destinations: DestinationCipher,
        batch: int = 100,
        idle_seconds: float = 1.0,
        clock: Clock = utc_now,
    ) -> None:
        self._db = db
        self._provider = provider
        self._policy = policy
        self._destinations = destinations
        self._batch = batch
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._wake = asyncio.Event()
        self.sent = 0

    def wake(self) -> None:
        """Start a round now (new payouts were scheduled)."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            if await self.dispatch_once():
                continue  # more may have become due while the provider was called
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._idle_seconds)

    async def dispatch_once(self) -> int:
        """One round; returns how many due payouts it took."""
        claimed, taken = await self._claim()
        if not claimed:
            return taken
        outcomes = await asyncio.gather(*(self._send(c) for c in claimed))
        await self._record(list(zip(claimed, outcomes, strict=True)))
        return taken

    async def _claim(self) -> tuple[list[_Claimed], int]:
        now = self._clock()
        async with self._db.transaction() as repo:
            due = await repo.due_for_update(now, self._batch)
            if not due:
                return [], 0
            accounts = await repo.accounts(p.creator_id for p in due)
            unpayable = {p.creator_id for p in due if hold_for(accounts.get(p.creator_id), now)}
            if unpayable:
                # Holding races with an account update releasing holds: take the creators'
                # locks (as the consumer does) and look again.
                await repo.lock(fx="shared", creator_ids=unpayable)
                accounts = await repo.accounts(p.creator_id for p in due)
            work = Work(repo, self._policy, now)
            changes: list[tuple[Transition, PayoutStatus]] = []
            claimed = []
            for payout in due:
                account = accounts.get(payout.creator_id)
                transition = lifecycle.claim(payout, account, now, self._policy.lease)
                changes.append((transition, payout.status))
                if transition.payout.status == "scheduled" and account is not None:
                    claimed.append(_Claimed(transition.payout, account))
            await work.changed(changes)
            work.scheduled = 0  # claimed payouts are leased, not newly due
            await work.flush()
        return claimed, len(due)

    async def _send(self, claimed: _Claimed) -> TransferAccepted | ProviderError:
        payout = claimed.payout
        assert payout.net is not None
        try:
            # The one place a destination is decrypted: for the provider, in memory only.
            destination = self._destinations.open(payout.creator_id, claimed.account.destination)
        except UnreadableDestination as error:
            log.error("payout destination unreadable", payout_id=payout.payout_id, error=str(error))
            return ProviderError(f"destination unreadable: {error}", retryable=True)
        request = TransferRequest(
            idempotency_key=payout.idempotency_key,
            amount=payout.net,
            destination=destination,
            method=claimed.account.method,
            description=f"CreatorFlow {payout.kind} for deal {payout.deal_id}",
        )
        try:
            return await self._provider.send(request)
        except ProviderError as error:
            return error
        except Exception as error:  # a provider bug must not lose the round's other results
            log.exception("provider call failed unexpectedly", payout_id=payout.payout_id)
            return ProviderError(f"{self._provider.name}: {type(error).__name__}", retryable=True)

    async def _record(
        self, results: Sequence[tuple[_Claimed, TransferAccepted | ProviderError]]
    ) -> None:
        now = self._clock()
        async with self._db.transaction() as repo:
            current = {
                p.payout_id: p
                for p in await repo.payouts_for_update([c.payout.payout_id for c, _ in results])
            }
            work = Work(repo, self._policy, now)
            changes: list[tuple[Transition, PayoutStatus]] = []
            for claimed, outcome in results:
                payout = current.get(claimed.payout.payout_id)
                if payout is None or payout.status != "scheduled":
                    continue  # recorded by another instance after our lease ran out
                if isinstance(outcome, TransferAccepted):
                    transition = lifecycle.mark_sent(payout, outcome.provider_ref)
                else:
                    log.warning(
                        "provider refused payout",
                        payout_id=payout.payout_id,
                        reason=outcome.reason,
                        retryable=outcome.retryable,
                    )
                    transition = lifecycle.attempt_failed(
                        payout,
                        outcome.reason,
                        retryable=outcome.retryable,
                        retry=self._policy.retry,
                        now=now,
                    )
                changes.append((transition, payout.status))
            await work.changed(changes)
            sent = [t.payout for t, _ in changes if t.payout.status == "sent"]
            arrivals = await repo.post_arrivals(p.deal_id for p in sent if p.kind == "fee")
            work.scheduled = 0
            await work.flush()
        self.sent += len(sent)
        observe_latencies(sent, arrivals, now)


def observe_latencies(
    sent: Sequence[Payout], arrivals: Mapping[tuple[str, datetime], datetime], now: datetime
) -> None:
    """Count committed fee payouts in the confirmation -> sent and post -> sent histograms.
    A fee's `fx_at` is the confirmation that made it owed; `arrivals` says when the post that
    completed that confirmation reached us, if known. Clocks of other hosts may run ahead of
    ours a little: a negative time counts as zero."""
    for payout in sent:
        if payout.kind != "fee" or payout.fx_at is None:
            continue
        PAYOUT_CONFIRMATION_TO_SENT.observe(max((now - payout.fx_at).total_seconds(), 0.0))
        arrived = arrivals.get((payout.deal_id, payout.fx_at))
        if arrived is not None:
            PAYOUT_POST_TO_SENT.observe(max((now - arrived).total_seconds(), 0.0))
