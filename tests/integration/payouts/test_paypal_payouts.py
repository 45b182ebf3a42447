"""The PayPal Payouts adapter against a local server that follows PayPal's documented API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from decimal import Decimal
from functools import partial

import pytest

from services.payouts.providers import ProviderError
from services.payouts.providers.paypal import PayPalPayouts
from shared.contract.money import Money
from tests.integration.payouts.paypal_server import FakePayPal
from tests.integration.payouts.rails_setup import in_doubt_then_found, sent_twice, transfer_request
from tests.unit.payouts.builders import uid

pytestmark = pytest.mark.integration


@pytest.fixture
async def adapter(paypal: FakePayPal) -> AsyncIterator[PayPalPayouts]:
    client = PayPalPayouts(
        paypal.client_id, paypal.client_secret, base_url=paypal.base_url, timeout_seconds=5
    )
    async with aclosing(client):
        yield client


request = partial(transfer_request, "paypal")


async def test_one_batch_per_key_and_a_repeat_is_answered_with_the_original(
    paypal: FakePayPal, adapter: PayPalPayouts
) -> None:
    key = uid("po")
    await sent_twice(adapter, request(key, Money.of("12.34", "USD")))
    assert paypal.paid == [(key, "12.34", "USD")]  # paid once
    [batch] = paypal.batches.values()
    assert batch["batch_header"]["sender_batch_header"]["sender_batch_id"] == key
    [item] = batch["items"]
    assert item["payout_item"]["sender_item_id"] == key
    assert item["payout_item"]["recipient_type"] == "EMAIL"
    posts = [r for r in paypal.requests if r.path == "/v1/payments/payouts"]
    assert [r.headers["paypal-request-id"] for r in posts] == [key, key]
    # JPY has no minor unit: sent as a whole number.
    await adapter.send(request(uid("po"), Money(Decimal(5000), "JPY")))
    assert paypal.paid[-1][1:] == ("5000", "JPY")
    # One token for all of it.
    assert sum(r.path == "/v1/oauth2/token" for r in paypal.requests) == 1


async def test_lookup_finds_the_batch_and_never_pays_twice(
    paypal: FakePayPal, adapter: PayPalPayouts
) -> None:
    key = uid("po")
    sent = await adapter.send(request(key, Money.of("3.00", "EUR")))
    found = await adapter.lookup(request(key, Money.of("3.00", "EUR")))
    assert found is not None and found.provider_ref == sent.provider_ref and found.replayed
    assert len(paypal.paid) == 1
    with pytest.raises(ProviderError) as other_money:
        await adapter.lookup(request(key, Money.of("4.00", "EUR")))
    assert not other_money.value.retryable and len(paypal.paid) == 1


async def test_item_statuses_give_the_settlement(
    paypal: FakePayPal, adapter: PayPalPayouts
) -> None:
    paid = await adapter.send(request(uid("po"), Money.of("1.00", "USD")))
    assert (await adapter.settlement(paid.provider_ref)).state == "settled"
    paypal.blocked.add("locked@example.com")
    refused = await adapter.send(request(uid("po"), Money.of("1.00", "USD"), "locked@example.com"))
    failed = await adapter.settlement(refused.provider_ref)
    assert (
        failed.state == "failed" and failed.reason == "paypal: item FAILED RECEIVER_ACCOUNT_LOCKED"
    )
    unclaimed = await adapter.send(request(uid("po"), Money.of("1.00", "USD"), "new@example.com"))
    assert (await adapter.settlement(unclaimed.provider_ref)).state == "pending"
    paypal.set_item_status(unclaimed.provider_ref, "RETURNED")  # unclaimed for 30 days
    returned = await adapter.settlement(unclaimed.provider_ref)
    assert returned.state == "failed" and returned.reason == "paypal: item RETURNED"


@pytest.mark.parametrize(
    ("status", "name", "retryable", "not_executed"),
    [
        (400, "VALIDATION_ERROR", False, True),
        (403, "NOT_AUTHORIZED", True, True),
        (422, "INSUFFICIENT_FUNDS", True, True),
        (422, "USER_BUSINESS_ERROR", False, True),
        (429, "RATE_LIMIT_REACHED", True, True),
        (500, "INTERNAL_SERVER_ERROR", True, False),
        (503, "SERVICE_UNAVAILABLE", True, False),
    ],
)
async def test_errors_are_classified(
    paypal: FakePayPal,
    adapter: PayPalPayouts,
    status: int,
    name: str,
    retryable: bool,
    not_executed: bool,
) -> None:
    await adapter._bearer()  # the failure is for the payout call, not the token
    paypal.fail_next(status, name)
    with pytest.raises(ProviderError) as failed:
        await adapter.send(request(uid("po"), Money.of("1.00", "USD")))
    assert (failed.value.retryable, failed.value.not_executed) == (retryable, not_executed)
    assert failed.value.reason == f"paypal: {status} {name}"
    assert paypal.paid == []


async def test_insufficient_funds_is_refused_without_naming_the_receiver(
    paypal: FakePayPal, adapter: PayPalPayouts
) -> None:
    paypal.balance["USD"] = Decimal("5.00")
    secret = "someone.private@example.com"
    with pytest.raises(ProviderError) as refused:
        await adapter.send(request(uid("po"), Money.of("9.00", "USD"), secret))
    assert refused.value.retryable and refused.value.not_executed
    assert secret not in str(refused.value) and paypal.paid == []


async def test_wrong_credentials_and_a_refused_connection_prove_nothing_was_sent(
    paypal: FakePayPal,
) -> None:
    wrong = PayPalPayouts("paypal-client", "not-the-secret", base_url=paypal.base_url)
    with pytest.raises(ProviderError) as unauthorised:
        await wrong.send(request(uid("po"), Money.of("1.00", "USD")))
    await wrong.aclose()
    assert unauthorised.value.retryable and unauthorised.value.not_executed
    assert unauthorised.value.reason == "paypal: 401 invalid_client (token)"
    closed = PayPalPayouts("id", "secret", base_url="http://127.0.0.1:9")
    with pytest.raises(ProviderError) as unreachable:
        await closed.send(request(uid("po"), Money.of("1.00", "USD")))
    await closed.aclose()
    assert unreachable.value.retryable and unreachable.value.not_executed
    assert paypal.paid == []


async def test_a_timeout_after_paying_is_in_doubt(paypal: FakePayPal) -> None:
    client = PayPalPayouts(
        paypal.client_id, paypal.client_secret, base_url=paypal.base_url, timeout_seconds=0.2
    )
    await client._bearer()
    key = uid("po")
    paypal.stall_next(1.0)
    await in_doubt_then_found(client, request(key, Money.of("2.00", "USD")))
    assert len(paypal.paid) == 1
