"""Retries and fallback that cannot pay twice: an attempt whose outcome is unknown is looked
up, never resent blindly; a final error fails the payout with the rail's reason; only an error
proving nothing was executed sends the payout to the creator's fallback rail."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from services.payouts.domain.accounts import HoldCode
from services.payouts.providers import (
    ProviderError,
    Settlement,
    TransferAccepted,
    TransferRequest,
)
from services.payouts.providers.rails import Rails
from shared.contract.errors import EventRejected
from tests.unit.payouts.builders import account, confirmed, deal_signed, uid
from tests.unit.payouts.harness import Harness

PAYPAL_RECEIVER = "creator@example.com"


class _Rail:
    """A rail that pays unless told to fail: `timeout_after_paying` pays then loses the answer;
    `refuse` answers errors without paying."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.paid: dict[str, TransferRequest] = {}
        self.sends: list[str] = []
        self.lookups: list[str] = []
        self.timeout_after_paying = 0
        self.refuse: list[ProviderError] = []
        self.lookup_errors: list[ProviderError] = []

    async def send(self, request: TransferRequest) -> TransferAccepted:
        self.sends.append(request.idempotency_key)
        if self.refuse:
            raise self.refuse.pop(0)
        replayed = request.idempotency_key in self.paid
        self.paid.setdefault(request.idempotency_key, request)
        if self.timeout_after_paying:
            self.timeout_after_paying -= 1
            raise ProviderError(f"{self.name}: network error ReadTimeout", retryable=True)
        return TransferAccepted(f"{self.name}_{request.idempotency_key}", replayed=replayed)

    async def lookup(self, request: TransferRequest) -> TransferAccepted | None:
        self.lookups.append(request.idempotency_key)
        if self.lookup_errors:
            raise self.lookup_errors.pop(0)
        if request.idempotency_key not in self.paid:
            return None
        return TransferAccepted(f"{self.name}_{request.idempotency_key}", replayed=True)

    async def settlement(self, provider_ref: str) -> Settlement:
        return Settlement("settled")

    async def aclose(self) -> None:
        return None


def _harness(*rails: _Rail, max_attempts: int = 3) -> Harness:
    h = Harness(max_attempts=max_attempts)
    h.use(Rails({r.name: r for r in rails}))
    return h


async def _owed(h: Harness, *, fallback: tuple[str, str] | None = None) -> str:
    deal, creator = uid("deal"), uid("cr")
    await h.consume(
        account(creator, currency="USD", method="stripe", fallback=fallback),
        deal_signed(deal, creator),
    )
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.dispatch_all()
    return deal


async def _in_doubt(stripe: _Rail, paypal: _Rail) -> tuple[Harness, str]:
    """Stripe pays but its answer is lost: a payout (PayPal its fallback) in doubt."""
    stripe.timeout_after_paying = 1
    h = _harness(stripe, paypal)
    return h, await _owed(h, fallback=("paypal", PAYPAL_RECEIVER))


async def _later(h: Harness, seconds: float = 10) -> None:
    h.now += timedelta(seconds=seconds)
    await h.dispatch_all()


async def test_a_rail_that_times_out_after_paying_is_looked_up_and_paid_once() -> None:
    stripe, paypal = _Rail("stripe"), _Rail("paypal")
    h, deal = await _in_doubt(stripe, paypal)
    [waiting] = h.payouts(deal)
    assert waiting.status == "scheduled" and waiting.in_doubt  # the answer was lost
    await _later(h)
    [sent] = h.payouts(deal)
    assert sent.status == "sent" and sent.rail == "stripe" and not sent.in_doubt
    assert stripe.sends == [sent.payout_id]  # sent once, then looked up
    assert stripe.lookups == [sent.payout_id]
    assert list(stripe.paid) == [sent.payout_id] and paypal.sends == []  # never the fallback
    await h.settlement.run_once()
    assert h.payouts(deal)[0].status == "settled" and h.problems() == []


async def test_a_timeout_never_moves_the_payout_to_the_fallback_rail() -> None:
    stripe, paypal = _Rail("stripe"), _Rail("paypal")
    stripe.refuse = [ProviderError("stripe: 503 api_error", retryable=True)] * 3
    h = _harness(stripe, paypal)
    deal = await _owed(h, fallback=("paypal", PAYPAL_RECEIVER))
    await _later(h)
    await _later(h)
    [failed] = h.payouts(deal)
    assert failed.status == "failed" and failed.in_doubt and failed.rail == "stripe"
    assert failed.failure_reason == "stripe: 503 api_error (gave up after 3 attempts)"
    assert paypal.sends == [] and len(stripe.lookups) == 2  # looked up before each resend


async def test_a_final_error_fails_the_payout_with_the_rails_reason() -> None:
    stripe = _Rail("stripe")
    reason = "stripe: 400 invalid_request_error resource_missing (param destination)"
    stripe.refuse = [ProviderError(reason, retryable=False, not_executed=True)]
    h = _harness(stripe)
    deal = await _owed(h)  # no fallback
    [failed] = h.payouts(deal)
    assert failed.status == "failed" and failed.failure_reason == reason
    assert not failed.in_doubt and stripe.paid == {}
    [event] = [e for e in h.events_of(failed.payout_id) if e.type == "payout.failed"]
    assert event.data.reason == reason
    assert h.problems() == []


async def test_a_not_executed_error_sends_the_payout_once_through_the_fallback_rail() -> None:
    stripe, paypal = _Rail("stripe"), _Rail("paypal")
    reason = "stripe: 400 invalid_request_error resource_missing (param destination)"
    stripe.refuse = [ProviderError(reason, retryable=False, not_executed=True)]
    h = _harness(stripe, paypal)
    deal = await _owed(h, fallback=("paypal", PAYPAL_RECEIVER))
    await h.dispatch_all()
    [sent] = h.payouts(deal)
    assert sent.status == "sent" and sent.rail == "paypal"
    assert sent.provider_ref == f"paypal_{sent.payout_id}"
    assert stripe.paid == {} and list(paypal.paid) == [sent.payout_id]
    assert paypal.paid[sent.payout_id].destination.get_secret_value() == PAYPAL_RECEIVER
    assert h.statuses(deal) == ["payout.scheduled", "payout.sent"]
    await h.settlement.run_once()  # settled by the rail that paid
    assert h.payouts(deal)[0].status == "settled" and h.problems() == []


async def test_a_rail_down_falls_back_once_its_retries_are_used_up() -> None:
    stripe, paypal = _Rail("stripe"), _Rail("paypal")
    down = ProviderError("stripe: network error ConnectError", retryable=True, not_executed=True)
    stripe.refuse = [down] * 3
    h = _harness(stripe, paypal)
    deal = await _owed(h, fallback=("paypal", PAYPAL_RECEIVER))
    await _later(h)
    assert h.payouts(deal)[0].rail == "stripe"  # retried on its own rail first
    await _later(h)
    [sent] = h.payouts(deal)
    assert sent.status == "sent" and sent.rail == "paypal" and len(stripe.sends) == 3
    assert list(paypal.paid) == [sent.payout_id] and stripe.paid == {}


async def test_no_fallback_after_an_attempt_in_doubt_unless_the_lookup_found_nothing() -> None:
    stripe, paypal = _Rail("stripe"), _Rail("paypal")
    refused = ProviderError("stripe: 400 invalid_request_error", retryable=False, not_executed=True)
    # A 503 (may have paid), then a refusal: the lookup in between found nothing under the
    # key, so the refusal proves nothing was paid and the fallback rail may be used.
    stripe.refuse = [ProviderError("stripe: 503 api_error", retryable=True), refused]
    h = _harness(stripe, paypal)
    deal = await _owed(h, fallback=("paypal", PAYPAL_RECEIVER))
    await _later(h)
    await h.dispatch_all()
    [sent] = h.payouts(deal)
    assert stripe.lookups == [sent.payout_id] and sent.rail == "paypal"
    assert list(paypal.paid) == [sent.payout_id] and stripe.paid == {}


async def test_a_rail_unreachable_after_an_attempt_in_doubt_never_falls_back_nor_gives_up() -> None:
    stripe, paypal = _Rail("stripe"), _Rail("paypal")
    down = ProviderError("stripe: network error ConnectError", retryable=True, not_executed=True)
    stripe.lookup_errors = [down] * 5  # then the rail cannot be reached to look it up
    h, deal = await _in_doubt(stripe, paypal)  # paid, answer lost
    for _ in range(5):  # more attempts than the 3 allowed: none of them could ask the rail
        await _later(h, 60)
        [waiting] = h.payouts(deal)
        assert waiting.status == "scheduled" and waiting.in_doubt and waiting.rail == "stripe"
    await _later(h, 300)  # the rail is back: the lookup finds the first transfer
    [sent] = h.payouts(deal)
    assert sent.status == "sent" and sent.provider_ref == f"stripe_{sent.payout_id}"
    assert paypal.sends == [] and stripe.sends == [sent.payout_id] and h.problems() == []


async def test_an_unconfigured_fallback_is_not_used() -> None:
    stripe = _Rail("stripe")
    reason = "stripe: 400 invalid_request_error"
    stripe.refuse = [ProviderError(reason, retryable=False, not_executed=True)]
    h = _harness(stripe)  # PayPal not configured
    deal = await _owed(h, fallback=("paypal", PAYPAL_RECEIVER))
    [failed] = h.payouts(deal)
    assert failed.status == "failed" and failed.failure_reason == reason


async def test_a_new_fallback_with_payouts_in_flight_cools_off() -> None:
    h = _harness(_Rail("stripe"), _Rail("paypal"))
    h.reconfigure(destination_cool_off=timedelta(hours=1))
    deal, creator = uid("deal"), uid("cr")
    await h.consume(account(creator, currency="USD", time=h.now), deal_signed(deal, creator))
    await h.consume(account(creator, currency="USD", status="pending", time=h.now))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))  # held: tax form
    h.now += timedelta(minutes=1)
    await h.consume(
        account(creator, currency="USD", time=h.now, fallback=("paypal", "thief@example.com"))
    )
    [held] = h.payouts(deal)
    assert held.hold is not None and held.hold.code is HoldCode.DESTINATION_COOLOFF


async def test_a_raw_account_number_as_fallback_is_refused() -> None:
    h = Harness()
    with pytest.raises(EventRejected, match="raw account number"):
        await h.consume(account(uid("cr"), fallback=("wise", "DE89370400440532013000")))


async def test_a_payout_in_doubt_from_before_rails_stays_on_stripe() -> None:
    stripe, paypal = _Rail("stripe"), _Rail("paypal")
    h, deal = await _in_doubt(stripe, paypal)
    [in_doubt] = h.payouts(deal)
    # As stored by the release before rails (every payout went through Stripe): no rail
    # recorded, in doubt after a timeout; the creator has since switched to PayPal.
    h.db.state.payouts[in_doubt.payout_id] = replace(in_doubt, rail=None)
    stored = h.db.state.accounts[in_doubt.creator_id]
    assert stored.fallback_destination is not None
    h.db.state.accounts[in_doubt.creator_id] = replace(
        stored, method="paypal", destination=stored.fallback_destination
    )
    await _later(h)
    [failed] = h.payouts(deal)
    # Never paid through PayPal while the Stripe transfer may exist: an operator looks first.
    assert failed.status == "failed" and failed.rail == "stripe" and failed.in_doubt
    assert "no longer names the stripe rail" in (failed.failure_reason or "")
    assert paypal.sends == [] and paypal.lookups == [] and stripe.sends == [failed.payout_id]
