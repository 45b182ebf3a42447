"""The dispatcher: hands scheduled payouts to the payment provider, outside any consumer
transaction, exactly once per payout.

One round: (1) in a short transaction, take due payouts with `FOR UPDATE SKIP LOCKED` (other
instances skip them), count the attempt and lease them on their rail, up to that rail's share
of a round (or hold them if the account stopped being payable, or its method's rail is not
configured); (2) with no
transaction open, call the rail with the payout id as the idempotency key; (3) in a second
transaction, record `sent` or the failure (retry later with backoff, move to the creator's
fallback rail, or `failed`).

Nothing is resent blindly: a payout whose last attempt's outcome is unknown (`in_doubt`: a
timeout, a 5xx) or that was leased before (a crash after (2)) is first looked up on its rail by
its idempotency key; found, it is recorded as sent without another call.

A lease is the attempt's alone: (2) ends before the lease does (a call still unanswered then is
in doubt), a claim that finds an earlier lease unanswered makes the payout in doubt, and (3)
records an answer only for the attempt that holds the lease. An attempt taken over after its
lease ran out records nothing of its own, except a transfer the rail accepted, which is never
forgotten (docs/architecture.md §6, "Leases").
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog

from services.payouts.destinations import DestinationCipher, UnreadableDestination
from services.payouts.domain import lifecycle
from services.payouts.domain.accounts import (
    HoldCode,
    PayoutAccount,
    SealedDestination,
    hold_for,
)
from services.payouts.domain.lifecycle import Payout, PayoutStatus, Transition
from services.payouts.handlers import (
    PayoutPolicy,
    payout_transaction,
    release_held,
)
from services.payouts.providers import (
    PayoutProvider,
    ProviderError,
    TransferAccepted,
    TransferRequest,
)
from services.payouts.providers.rails import LEGACY_RAIL, Rails
from services.payouts.store.port import PayoutsStore
from shared.runtime.observability import PAYOUT_CONFIRMATION_TO_SENT, PAYOUT_POST_TO_SENT
from shared.runtime.rounds import run_in_rounds

log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class _Claimed:
    payout: Payout  # as claimed: its attempt, rail and chapter name this lease
    account: PayoutAccount

    def holds_lease(self, current: Payout) -> bool:
        """Whether `current` (the stored payout) is still this claim's attempt."""
        return (
            current.status == "scheduled"
            and current.leased
            and (current.attempts, current.rail, current.chapter)
            == (self.payout.attempts, self.payout.rail, self.payout.chapter)
        )


@dataclass(frozen=True)
class _Failed:
    error: ProviderError
    # The error proves the chapter's rail executed nothing: no earlier attempt is in doubt,
    # or a lookup just found nothing under the key.
    not_executed: bool
    # An earlier attempt is in doubt and the rail could not be reached to look it up: this
    # attempt sent nothing and learned nothing.
    unreachable: bool = False


class Dispatcher:
    """Runs rounds as long as payouts are due; sleeps until `wake()` or `idle_seconds`."""

    def __init__(
        self,
        db: PayoutsStore,
        rails: Rails | PayoutProvider,
        policy: PayoutPolicy,
        *,
        destinations: DestinationCipher,
        batch: int = 100,
        rail_batches: Mapping[str, int] | None = None,
        idle_seconds: float = 1.0,
        rounds: int = 1,
        clock: Clock = utc_now,
        answer_margin_seconds: float = 1.0,
    ) -> None:
        self._db = db
        self._rails = rails if isinstance(rails, Rails) else Rails.single(rails)
        self._policy = policy
        self._destinations = destinations
        self._batch = batch
        # The most payouts of a rail one round leases (rails under a rate limit; app.py).
        self._rail_batches = dict(rail_batches or {})
        self._idle_seconds = idle_seconds
        self._rounds = rounds
        self._clock = clock
        # A call must be answered this long before its lease ends, so the answer is recorded
        # while the lease is still held.
        self._answer_margin = answer_margin_seconds
        self._wake = asyncio.Event()
        self.sent = 0

    def wake(self) -> None:
        """Start a round now (new payouts were scheduled)."""
        self._wake.set()

    async def release_rail_holds(self) -> int:
        """Release payouts held for a rail that is configured now (at start: the operator
        configured it and restarted); returns how many."""
        async with payout_transaction(self._db, self._policy, self._clock()) as changes:
            held = await changes.repo.held_for_update(codes=[HoldCode.RAIL_UNAVAILABLE])
            if not held:
                return 0
            creators = {p.creator_id for p in held}
            await changes.repo.lock(fx="shared", creator_ids=creators)
            accounts = await changes.repo.accounts(creators)
            ready = [
                p
                for p in held
                if (a := accounts.get(p.creator_id)) is None
                or self._rails.unavailable(a.method) is None
            ]
            await release_held(changes, ready, accounts)
        if ready:
            self.wake()
        return len(ready)

    async def run(self) -> None:
        """Run `rounds` rounds at a time: while one records what the rail answered, the next
        claims. They skip each other's payouts as other instances' (`due_for_update`)."""
        await self.release_rail_holds()
        async with asyncio.TaskGroup() as rounds:
            for _ in range(self._rounds):
                rounds.create_task(self._run_rounds())

    async def _run_rounds(self) -> None:
        # A round that leaves payouts due is followed at once. Payouts that become due while
        # it runs wake the dispatcher (`wake`, set by this instance's consumer and by every
        # instance's commits through `listen_due`); those due later by the clock (a retry's
        # backoff, a lease run out) are found within `idle_seconds`.
        await run_in_rounds(self._round, full=1, idle_seconds=self._idle_seconds, wake=self._wake)

    async def dispatch_once(self) -> int:
        """One round; returns how many due payouts it took."""
        return (await self._round_of())[0]

    async def _round(self) -> int:
        return (await self._round_of())[1]

    async def _round_of(self) -> tuple[int, int]:
        """One round: how many due payouts it took, and how many it knows are due still."""
        claimed, taken, left = await self._claim()
        if not claimed:
            return taken, left
        outcomes = await asyncio.gather(*(self._send_within_lease(c) for c in claimed))
        due_again = await self._record(list(zip(claimed, outcomes, strict=True)))
        return taken, left + due_again

    async def _claim(self) -> tuple[list[_Claimed], int, int]:
        """The payouts leased for this round, how many due payouts it took, and how many are
        left due (its rail's share of the round full, or perhaps more than a batch due)."""
        now = self._clock()
        async with payout_transaction(self._db, self._policy, now) as changes:
            due = await changes.repo.due_for_update(now, self._batch)
            if not due:
                return [], 0, 0
            accounts = await changes.repo.accounts(p.creator_id for p in due)
            unpayable = {p.creator_id for p in due if hold_for(accounts.get(p.creator_id), now)}
            if unpayable:
                # Holding races with an account update releasing holds: take the creators'
                # locks (as the consumer does) and look again.
                await changes.repo.lock(fx="shared", creator_ids=unpayable)
                accounts = await changes.repo.accounts(p.creator_id for p in due)
            transitions: list[tuple[Transition, PayoutStatus]] = []
            claimed: list[_Claimed] = []
            leased: Counter[str] = Counter()
            left = int(len(due) >= self._batch)
            for payout in due:
                account = accounts.get(payout.creator_id)
                rail, unavailable = (None, None) if account is None else self._rail(payout, account)
                transition = lifecycle.claim(
                    payout,
                    account,
                    now,
                    self._policy.lease,
                    rail=rail,
                    rail_unavailable=unavailable,
                )
                if transition.payout.status == "scheduled" and account is not None:
                    rail_name = transition.payout.rail or LEGACY_RAIL
                    if leased[rail_name] >= self._rail_batches.get(rail_name, self._batch):
                        left += 1  # its rail's share of this round is full: left due, unleased
                        continue
                    leased[rail_name] += 1
                    claimed.append(_Claimed(transition.payout, account))
                transitions.append((transition, payout.status))
            await changes.changed(transitions)
            changes.scheduled = 0  # claimed payouts are leased, not newly due
        return claimed, len(due), left

    async def _send_within_lease(self, claimed: _Claimed) -> TransferAccepted | _Failed:
        """`_send`, given up (in doubt) if unanswered shortly before the lease ends: past it,
        another dispatcher may claim the payout, and the answer would come too late to count."""
        assert claimed.payout.next_attempt_at is not None  # a claim sets the lease's end
        left = (claimed.payout.next_attempt_at - self._clock()).total_seconds()
        try:
            async with asyncio.timeout(max(left - self._answer_margin, 0.0)):
                return await self._send(claimed)
        except TimeoutError:
            reason = f"{claimed.payout.rail}: no answer within the payout's lease"
            log.warning("provider call outlived its lease", payout_id=claimed.payout.payout_id)
            return _Failed(ProviderError(reason, retryable=True), not_executed=False)

    async def _send(self, claimed: _Claimed) -> TransferAccepted | _Failed:
        payout = claimed.payout
        assert payout.net is not None
        provider = self._rails.get(payout.rail)
        if provider is None:  # claimed only with a configured rail
            return _Failed(
                ProviderError(f"rail {payout.rail} not configured", retryable=True), True
            )
        sealed = _destination_for(claimed.account, payout.rail, self._rails)
        if sealed is None:
            # The account stopped naming this attempt's rail while an attempt was under way:
            # nothing goes to a destination of another rail, and an operator looks first.
            reason = (
                f"the account no longer names the {payout.rail} rail this attempt began on; "
                "check that rail, then `creatorflow payouts retry`"
            )
            return _Failed(ProviderError(reason, retryable=False), False)
        try:
            # The one place a destination is decrypted: for the provider, in memory only.
            destination = self._destinations.open(payout.creator_id, sealed)
        except UnreadableDestination as error:
            log.error("payout destination unreadable", payout_id=payout.payout_id, error=str(error))
            return _Failed(ProviderError(f"destination unreadable: {error}", retryable=True), True)
        request = TransferRequest(
            idempotency_key=payout.idempotency_key,
            amount=payout.net,
            destination=destination,
            method=claimed.account.method,
            description=f"CreatorFlow {payout.kind} for deal {payout.deal_id}",
        )
        looked_up = False
        try:
            if payout.in_doubt or payout.attempts > 1:
                # An earlier attempt may have paid: ask the rail before sending anything.
                found = await provider.lookup(request)
                if found is not None:
                    log.info("transfer found by its idempotency key", payout_id=payout.payout_id)
                    return found
                looked_up = True
            return await provider.send(request)
        except ProviderError as error:
            return _Failed(
                error,
                error.not_executed and (looked_up or not payout.in_doubt),
                unreachable=payout.in_doubt and not looked_up and error.not_executed,
            )
        except Exception as error:  # a provider bug must not lose the round's other results
            log.exception("provider call failed unexpectedly", payout_id=payout.payout_id)
            return _Failed(
                ProviderError(f"{provider.name}: {type(error).__name__}", retryable=True), False
            )

    async def _record(self, results: Sequence[tuple[_Claimed, TransferAccepted | _Failed]]) -> int:
        """Record what the rail answered; returns how many payouts are due again at once (moved
        to their fallback rail)."""
        now = self._clock()
        async with payout_transaction(self._db, self._policy, now) as changes:
            current = {
                p.payout_id: p
                for p in await changes.repo.payouts_for_update(
                    [c.payout.payout_id for c, _ in results]
                )
            }
            transitions: list[tuple[Transition, PayoutStatus]] = []
            for claimed, outcome in results:
                payout = current.get(claimed.payout.payout_id)
                if payout is None:
                    continue
                if not claimed.holds_lease(payout):
                    transition = _taken_over(claimed, payout, outcome)
                    if transition is not None:
                        transitions.append((transition, payout.status))
                    continue
                if isinstance(outcome, TransferAccepted):
                    transition = lifecycle.mark_sent(payout, outcome.provider_ref)
                else:
                    transition = self._failed(payout, claimed.account, outcome, now)
                transitions.append((transition, payout.status))
            await changes.changed(transitions)
            sent = [t.payout for t, _ in transitions if t.payout.status == "sent"]
            arrivals = await changes.repo.post_arrivals(p.deal_id for p in sent if p.kind == "fee")
            changes.scheduled = 0
        self.sent += len(sent)
        observe_latencies(sent, arrivals, now)
        return sum(
            1
            for t, _ in transitions
            if t.payout.status == "scheduled"
            and t.payout.next_attempt_at is not None
            and t.payout.next_attempt_at <= now
        )

    def _failed(
        self, payout: Payout, account: PayoutAccount, outcome: _Failed, now: datetime
    ) -> Transition:
        error = outcome.error
        log.warning(
            "provider refused payout",
            payout_id=payout.payout_id,
            rail=payout.rail,
            reason=error.reason,
            retryable=error.retryable,
            not_executed=outcome.not_executed,
        )
        return lifecycle.attempt_failed(
            payout,
            error.reason,
            retryable=error.retryable,
            retry=self._policy.retry,
            now=now,
            not_executed=outcome.not_executed,
            fallback_rail=self._fallback_rail(account),
            unreachable=outcome.unreachable,
        )

    def _rail(self, payout: Payout, account: PayoutAccount) -> tuple[str | None, str | None]:
        """The rail of this attempt, and why it cannot be used now (None if it can).

        A chapter keeps the rail it was first sent through. A payout attempted before rails
        were chosen by method (no rail recorded, but attempted or in doubt) went to the one
        provider of those days, Stripe: it stays there, so a lookup asks the rail that may
        have paid."""
        legacy = payout.in_doubt or payout.attempts > 0
        if payout.rail is None and legacy and not self._rails.every_method:
            rail: str | None = LEGACY_RAIL
        elif payout.rail is None:
            return self._rails.rail_of(account.method), self._rails.unavailable(account.method)
        else:
            rail = payout.rail
        if self._rails.get(rail) is None:
            return rail, f"the {rail} rail of this payout's attempt is not configured"
        return rail, None

    def _fallback_rail(self, account: PayoutAccount) -> str | None:
        """The creator's fallback rail, if the account names one and it is configured."""
        method = account.fallback_method
        if method is None or account.fallback_destination is None:
            return None
        if self._rails.unavailable(method) is not None:
            return None
        return self._rails.rail_of(method)


def _taken_over(
    claimed: _Claimed, current: Payout, outcome: TransferAccepted | _Failed
) -> Transition | None:
    """An answer that came after this attempt's lease was taken over (or the payout moved on).
    A failure changes nothing: the attempt holding the lease records its own. A transfer the
    rail accepted is money that left: recorded as the payout's, on the rail and chapter that
    sent it, if the payout is still due. Held or failed meanwhile, the payout is in doubt (its
    lease ran out unanswered), so its next attempt finds this transfer by lookup. Sent through
    another transfer meanwhile, it was paid twice: logged as an error for an operator."""
    if not isinstance(outcome, TransferAccepted):
        log.info("late answer of a taken-over attempt ignored", payout_id=current.payout_id)
        return None
    if current.status == "scheduled":
        attempt = replace(current, rail=claimed.payout.rail, chapter=claimed.payout.chapter)
        return lifecycle.mark_sent(attempt, outcome.provider_ref)
    if current.provider_ref == outcome.provider_ref:
        return None  # the attempt that took over was given the same transfer
    paid_twice = current.status in ("sent", "settled")
    (log.error if paid_twice else log.warning)(
        "a taken-over attempt's transfer was accepted late",
        payout_id=current.payout_id,
        status=current.status,
        recorded=current.provider_ref,
        late=outcome.provider_ref,
        rail=claimed.payout.rail,
    )
    return None


def _destination_for(
    account: PayoutAccount, rail: str | None, rails: Rails
) -> SealedDestination | None:
    """The account's destination on `rail`: its own, or its fallback's; None if it names
    neither (the account changed since the attempt began). No rail (payouts sent before rails
    were chosen by method) means the account's own destination."""
    if rail is None or rails.rail_of(account.method) == rail:
        return account.destination
    if account.fallback_method is not None and rails.rail_of(account.fallback_method) == rail:
        return account.fallback_destination
    return None


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
