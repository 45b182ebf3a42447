"""A dispatcher's lease belongs to its attempt: a call is given up before its lease ends, a
payout taken over after a lease ran out unanswered is in doubt, and only the attempt holding
the lease records its answer. Two dispatchers share one store here, as two replicas do."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

import pytest
from pydantic import ValidationError

from services.payouts.dispatcher import Dispatcher
from services.payouts.domain.lifecycle import Payout
from services.payouts.providers import ProviderError, TransferAccepted, TransferRequest
from services.payouts.providers.rails import Rails
from services.payouts.settings import PayoutsSettings
from tests.support.waiting import eventually
from tests.unit.payouts.builders import DESTINATIONS, account, confirmed, deal_signed, uid
from tests.unit.payouts.harness import Harness
from tests.unit.payouts.test_fallback import PAYPAL_RECEIVER, _Rail

LEASE = timedelta(seconds=30)
REFUSED = ProviderError("stripe: network error ConnectError", retryable=True, not_executed=True)


class _StallingRail(_Rail):
    """`_Rail`, whose sends wait for `answer` before doing what `_Rail` does: the request has
    left, its answer has not come back."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.answer = asyncio.Event()
        self.waiting = 0

    async def send(self, request: TransferRequest) -> TransferAccepted:
        self.waiting += 1
        await self.answer.wait()
        return await super().send(request)


async def _owed(h: Harness) -> Payout:
    deal, creator = uid("deal"), uid("cr")
    await h.consume(
        account(creator, currency="USD", method="stripe", fallback=("paypal", PAYPAL_RECEIVER)),
        deal_signed(deal, creator),
    )
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    [payout] = h.payouts(deal)
    return payout


def _replica(h: Harness) -> Dispatcher:
    """A second payouts replica's dispatcher: same store, rails and clock."""
    other = Dispatcher(h.db, h.provider, h.policy, destinations=DESTINATIONS, clock=h.clock)
    other._rails = h.dispatcher._rails
    return other


async def _until_sending(rail: _StallingRail, calls: int) -> None:
    await eventually(lambda: rail.waiting >= calls, what=f"{calls} sends waiting for an answer")


def _stored(h: Harness, payout: Payout) -> Payout:
    return h.db.state.payouts[payout.payout_id]


async def test_a_call_unanswered_near_the_end_of_its_lease_is_given_up_in_doubt() -> None:
    stripe, paypal = _StallingRail("stripe"), _Rail("paypal")
    h = Harness(max_attempts=2)
    h.use(Rails({"stripe": stripe, "paypal": paypal}))
    # A lease of 1.2 s leaves the call 0.2 s before it must have its answer.
    h.dispatcher = Dispatcher(
        h.db,
        h.provider,
        replace(h.policy, lease=timedelta(seconds=1.2)),
        destinations=DESTINATIONS,
        clock=h.clock,
    )
    h.use(Rails({"stripe": stripe, "paypal": paypal}))
    payout = await _owed(h)
    await h.dispatcher.dispatch_once()
    given_up = _stored(h, payout)
    assert given_up.status == "scheduled" and given_up.in_doubt and not given_up.leased
    assert given_up.failure_reason == "stripe: no answer within the payout's lease"
    assert stripe.paid == {}  # (the stalled request may still land: hence the doubt)
    stripe.answer.set()
    h.now += timedelta(seconds=10)
    await h.dispatch_all()
    sent = _stored(h, payout)
    assert sent.status == "sent" and sent.rail == "stripe" and paypal.sends == []


async def test_a_payout_taken_over_after_its_lease_ran_out_is_in_doubt_and_never_falls_back() -> (
    None
):
    stripe, paypal = _StallingRail("stripe"), _Rail("paypal")
    h = Harness(max_attempts=2)
    h.use(Rails({"stripe": stripe, "paypal": paypal}))
    payout = await _owed(h)
    first = asyncio.create_task(h.dispatcher.dispatch_once())
    await _until_sending(stripe, 1)  # the request left; its answer is slow
    h.now += LEASE + timedelta(seconds=1)
    stripe.lookup_errors = [REFUSED]  # and then the rail cannot be reached
    await _replica(h).dispatch_once()
    taken_over = _stored(h, payout)
    # Its last attempt of two, refused: without the doubt it would have moved to PayPal and
    # been paid there. In doubt, it waits for Stripe to answer a lookup.
    assert taken_over.attempts == 2 and taken_over.in_doubt and taken_over.rail == "stripe"
    assert taken_over.status == "scheduled" and paypal.sends == []
    stripe.answer.set()  # the first request is paid after all, and its answer comes back
    await first
    sent = _stored(h, payout)
    assert sent.status == "sent" and sent.provider_ref == f"stripe_{payout.payout_id}"
    h.now += timedelta(minutes=10)
    await h.dispatch_all()
    assert list(stripe.paid) == [payout.payout_id] and stripe.sends == [payout.payout_id]
    assert paypal.sends == [] and h.problems() == []


async def test_a_late_failure_of_a_taken_over_attempt_changes_nothing() -> None:
    stripe, paypal = _StallingRail("stripe"), _Rail("paypal")
    h = Harness(max_attempts=2)
    h.use(Rails({"stripe": stripe, "paypal": paypal}))
    payout = await _owed(h)
    first = asyncio.create_task(h.dispatcher.dispatch_once())
    await _until_sending(stripe, 1)
    h.now += LEASE + timedelta(seconds=1)
    second = asyncio.create_task(_replica(h).dispatch_once())
    await _until_sending(stripe, 2)  # the second attempt holds the lease, also waiting
    # The first request is refused (nothing paid) after its lease was taken over. Recorded,
    # it would use up the payout's last attempt and move it to PayPal while the second
    # attempt's request to Stripe is still out.
    stripe.refuse = [REFUSED]
    stripe.answer.set()
    await first
    await h.dispatch_all()  # nothing is due: the second attempt's lease holds
    await second
    sent = _stored(h, payout)
    assert sent.status == "sent" and sent.rail == "stripe" and not sent.leased
    assert paypal.sends == [] and list(stripe.paid) == [payout.payout_id]
    assert h.problems() == []


def test_a_lease_too_short_for_a_lookup_and_a_send_is_refused() -> None:
    with pytest.raises(ValidationError, match="must exceed twice PAYOUTS_PROVIDER_TIMEOUT"):
        PayoutsSettings(provider_timeout_seconds=10, dispatch_lease_seconds=21)
    assert PayoutsSettings(provider_timeout_seconds=10, dispatch_lease_seconds=22)
