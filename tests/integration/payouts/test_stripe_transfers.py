"""The Stripe adapter against a local server that follows Stripe's documented HTTP behaviour."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import timedelta
from decimal import Decimal
from functools import partial

import pytest

from services.payouts.providers import ProviderError
from services.payouts.providers.stripe import StripeTransfers
from shared.contract.money import Money
from tests.integration.payouts.rails_setup import DESTINATIONS, sent_twice, transfer_request
from tests.integration.payouts.stripe_server import FakeStripe
from tests.unit.payouts.builders import account, confirmed, funded_deal, uid
from tests.unit.payouts.harness import Harness

pytestmark = pytest.mark.integration


@pytest.fixture
async def adapter(stripe: FakeStripe) -> AsyncIterator[StripeTransfers]:
    client = StripeTransfers(stripe.api_key, base_url=stripe.base_url, timeout_seconds=5)
    async with aclosing(client):
        yield client


request = partial(transfer_request, "stripe")


async def test_transfer_is_created_once_per_idempotency_key(
    stripe: FakeStripe, adapter: StripeTransfers
) -> None:
    first = await sent_twice(adapter, request("po_1", Money.of("12.34", "EUR")))
    [transfer] = stripe.transfers.values()
    assert (transfer["amount"], transfer["currency"]) == (1234, "eur")
    assert transfer["metadata"] == {"payout_id": "po_1"}
    assert stripe.requests[0].headers["idempotency-key"] == "po_1"
    # JPY has no minor unit: 5000 JPY is sent as 5000
    await adapter.send(request("po_2", Money(5000, "JPY")))
    assert [t["amount"] for t in stripe.transfers.values()] == [1234, 5000]
    assert (await adapter.settlement(first.provider_ref)).state == "settled"


async def test_reusing_a_key_for_other_money_is_refused(adapter: StripeTransfers) -> None:
    await adapter.send(request("po_3", Money.of("1.00", "USD")))
    with pytest.raises(ProviderError) as refused:
        await adapter.send(request("po_3", Money.of("2.00", "USD")))
    assert not refused.value.retryable and "idempotency_error" in refused.value.reason


@pytest.mark.parametrize(
    ("status", "kind", "headers", "retryable"),
    [
        (429, "rate_limit_error", {}, True),
        (500, "api_error", {}, True),
        (503, "api_error", {}, True),
        (409, "idempotency_error", {}, True),
        (402, "card_error", {}, False),
        (400, "invalid_request_error", {"Stripe-Should-Retry": "true"}, True),
        (503, "api_error", {"Stripe-Should-Retry": "false"}, False),
    ],
)
async def test_errors_are_classified(
    stripe: FakeStripe,
    adapter: StripeTransfers,
    status: int,
    kind: str,
    headers: dict[str, str],
    retryable: bool,
) -> None:
    stripe.fail_next(status, kind, **headers)
    with pytest.raises(ProviderError) as failed:
        await adapter.send(request(uid("po"), Money.of("1.00", "USD")))
    assert failed.value.retryable is retryable
    assert failed.value.reason.startswith(f"stripe: {status} {kind}")


async def test_unknown_destination_is_refused_without_naming_it(adapter: StripeTransfers) -> None:
    secret = "acct_1SomeoneElsesAccount"
    with pytest.raises(ProviderError) as refused:
        await adapter.send(request(uid("po"), Money.of("1.00", "USD"), destination=secret))
    assert not refused.value.retryable
    assert "resource_missing" in refused.value.reason and "destination" in refused.value.reason
    assert secret not in str(refused.value) and secret not in repr(refused.value)


async def test_wrong_key_is_retryable_and_network_errors_too(stripe: FakeStripe) -> None:
    wrong = StripeTransfers("sk_test_wrong", base_url=stripe.base_url)
    with pytest.raises(ProviderError) as unauthorised:
        await wrong.send(request(uid("po"), Money.of("1.00", "USD")))
    await wrong.aclose()
    assert unauthorised.value.retryable and "401" in unauthorised.value.reason
    closed = StripeTransfers(stripe.api_key, base_url="http://127.0.0.1:9")
    with pytest.raises(ProviderError) as unreachable:
        await closed.send(request(uid("po"), Money.of("1.00", "USD")))
    await closed.aclose()
    assert unreachable.value.retryable and "network error" in unreachable.value.reason


async def test_dispatcher_pays_through_stripe_once_despite_an_outage(
    stripe: FakeStripe, adapter: StripeTransfers
) -> None:
    h = Harness(max_attempts=5)
    h.use(adapter)
    deal, creator = uid("deal"), uid("cr")
    await h.consume(
        account(creator, currency="KWD", destination=DESTINATIONS["stripe"]),
        *funded_deal(deal, creator, fee=Money(Decimal("12.340"), "KWD")),
    )
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    stripe.fail_next(503, "api_error")
    await h.dispatch_all()
    [payout] = h.payouts(deal)
    assert payout.status == "scheduled" and payout.attempts == 1
    h.now += timedelta(seconds=1)
    await h.dispatch_all()
    await h.settlement.run_once()
    [payout] = h.payouts(deal)
    assert payout.status == "settled"
    [transfer] = stripe.transfers.values()
    assert (transfer["amount"], transfer["currency"], transfer["id"]) == (
        12340,
        "kwd",
        payout.provider_ref,
    )
    assert h.problems() == []


async def test_lookup_finds_a_transfer_by_its_payout_id(
    stripe: FakeStripe, adapter: StripeTransfers
) -> None:
    assert await adapter.lookup(request("po_unsent", Money.of("1.00", "USD"))) is None
    for n in range(3):  # other payouts to the same destination
        await adapter.send(request(f"po_other_{n}", Money.of("1.00", "USD")))
    sent = await adapter.send(request("po_looked_up", Money.of("8.00", "USD")))
    for n in range(3, 6):
        await adapter.send(request(f"po_other_{n}", Money.of("1.00", "USD")))
    small_pages = StripeTransfers(stripe.api_key, base_url=stripe.base_url)
    small_pages._lookup_limit = 2  # pages of two: the lookup reads on
    found = await small_pages.lookup(request("po_looked_up", Money.of("8.00", "USD")))
    assert found is not None and found.provider_ref == sent.provider_ref and found.replayed
    with pytest.raises(ProviderError) as other_money:
        await small_pages.lookup(request("po_looked_up", Money.of("9.00", "USD")))
    await small_pages.aclose()
    assert not other_money.value.retryable
    assert len(stripe.transfers) == 7  # looking up sent nothing


@pytest.mark.parametrize(
    ("status", "kind", "not_executed"),
    [
        (400, "invalid_request_error", True),
        (400, "idempotency_error", False),
        (429, "rate_limit_error", True),
        (409, "idempotency_error", False),
        (500, "api_error", False),
    ],
)
async def test_errors_say_whether_nothing_was_executed(
    stripe: FakeStripe, adapter: StripeTransfers, status: int, kind: str, not_executed: bool
) -> None:
    stripe.fail_next(status, kind)
    with pytest.raises(ProviderError) as failed:
        await adapter.send(request(uid("po"), Money.of("1.00", "USD")))
    assert failed.value.not_executed is not_executed


async def test_the_fake_serves_from_a_process_of_its_own_and_brings_back_its_state() -> None:
    """The rails benchmark's way of running it: a rail on another host."""
    fake = FakeStripe(latency=0.01)
    async with fake.in_own_process() as served:
        assert served is fake and fake.port
        client = StripeTransfers(fake.api_key, base_url=fake.base_url, timeout_seconds=5)
        async with aclosing(client):
            sent = await client.send(request("po_far", Money.of("3.00", "USD")))
            assert not fake.transfers  # meanwhile it lives in the other process
    assert list(fake.transfers) == [sent.provider_ref]
    assert [r.headers["idempotency-key"] for r in fake.requests] == ["po_far"]
    assert fake.most_under_way == 1
