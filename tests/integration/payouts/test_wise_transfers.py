"""The Wise adapter against a local server that follows Wise's documented transfer API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from decimal import Decimal
from functools import partial

import pytest

from services.payouts.providers import ProviderError
from services.payouts.providers.wise import WiseTransfers, customer_transaction_id
from shared.contract.money import Money
from tests.integration.payouts.rails_setup import in_doubt_then_found, sent_twice, transfer_request
from tests.integration.payouts.wise_server import FakeWise
from tests.unit.payouts.builders import uid

pytestmark = pytest.mark.integration


@pytest.fixture
async def adapter(wise: FakeWise) -> AsyncIterator[WiseTransfers]:
    client = WiseTransfers(wise.api_token, wise.profile_id, base_url=wise.base_url)
    async with aclosing(client):
        yield client


request = partial(transfer_request, "wise")


async def test_quote_transfer_fund_once_per_key(wise: FakeWise, adapter: WiseTransfers) -> None:
    key = uid("po")
    first = await sent_twice(adapter, request(key, Money.of("12.34", "EUR")))
    assert wise.funded == [int(first.provider_ref)]  # funded once
    [transfer] = wise.transfers.values()
    assert transfer["customerTransactionId"] == customer_transaction_id(key)
    assert (transfer["targetAccount"], transfer["targetCurrency"]) == (148149706, "EUR")
    steps = [r.path for r in wise.requests]
    assert steps[:3] == [
        f"/v3/profiles/{wise.profile_id}/quotes",
        "/v1/transfers",
        f"/v3/profiles/{wise.profile_id}/transfers/{first.provider_ref}/payments",
    ]
    assert (await adapter.settlement(first.provider_ref)).state == "pending"  # processing
    assert (await adapter.settlement(first.provider_ref)).state == "settled"


async def test_lookup_tells_funded_from_never_funded(
    wise: FakeWise, adapter: WiseTransfers
) -> None:
    key = uid("po")
    assert await adapter.lookup(request(key, Money.of("5.00", "GBP"))) is None
    assert wise.funded == []  # created, not funded: nothing moved
    sent = await adapter.send(request(key, Money.of("5.00", "GBP")))
    assert len(wise.transfers) == 1  # the same transfer, funded now
    found = await adapter.lookup(request(key, Money.of("5.00", "GBP")))
    assert found is not None and found.provider_ref == sent.provider_ref
    assert wise.funded == [int(sent.provider_ref)]


async def test_funding_twice_is_refused_by_wise_and_read_as_funded(
    wise: FakeWise, adapter: WiseTransfers
) -> None:
    key = uid("po")
    sent = await adapter.send(request(key, Money.of("7.00", "USD")))
    # A second funding call for the same transfer (the first one's answer lost, say).
    fund_path = f"/v3/profiles/{wise.profile_id}/transfers/{sent.provider_ref}/payments"
    again = await adapter._call(
        "POST", fund_path, step="fund", json={"type": "BALANCE"}, invalid_state_ok=True
    )
    assert again.status_code == 422 and again.json()["errors"][0]["code"] == (
        "transfer.invalid-state"
    )
    assert wise.funded == [int(sent.provider_ref)]


async def test_insufficient_balance_is_retryable_and_nothing_moved(
    wise: FakeWise, adapter: WiseTransfers
) -> None:
    wise.balance["EUR"] = Decimal("1.00")
    key = uid("po")
    with pytest.raises(ProviderError) as rejected:
        await adapter.send(request(key, Money.of("9.00", "EUR")))
    assert rejected.value.retryable and rejected.value.not_executed
    assert rejected.value.reason == "wise: funding REJECTED transfer.insufficient_funds"
    wise.balance["EUR"] = Decimal("100.00")  # topped up: the same transfer is funded
    sent = await adapter.send(request(key, Money.of("9.00", "EUR")))
    assert len(wise.transfers) == 1 and wise.funded == [int(sent.provider_ref)]


@pytest.mark.parametrize(
    ("step", "status", "code", "retryable", "not_executed"),
    [
        ("quote", 422, "error.route.not.supported", False, True),
        ("quote", 500, "error.internal", True, True),
        ("transfer", 422, "NOT_VALID", False, True),
        ("transfer", 503, "error.unavailable", True, True),
        ("transfer", 429, "rate.limited", True, True),
        ("fund", 403, "transfer.not-accessible-for-user", True, True),
        ("fund", 404, "transfer.not-found", False, True),
        ("fund", 500, "error.internal", True, False),
    ],
)
async def test_errors_are_classified(
    wise: FakeWise,
    adapter: WiseTransfers,
    step: str,
    status: int,
    code: str,
    retryable: bool,
    not_executed: bool,
) -> None:
    wise.fail_next(step, status, code)
    with pytest.raises(ProviderError) as failed:
        await adapter.send(request(uid("po"), Money.of("1.00", "USD")))
    assert (failed.value.retryable, failed.value.not_executed) == (retryable, not_executed)
    assert failed.value.reason == f"wise: {status} {code} ({step})"
    assert wise.funded == []


async def test_a_bad_destination_or_token_proves_nothing_was_sent(wise: FakeWise) -> None:
    client = WiseTransfers(wise.api_token, wise.profile_id, base_url=wise.base_url)
    with pytest.raises(ProviderError) as bad:
        await client.send(request(uid("po"), Money.of("1.00", "USD"), "tok_wise_8f2c1a"))
    await client.aclose()
    assert not bad.value.retryable and bad.value.not_executed
    assert "tok_wise" not in str(bad.value)
    wrong = WiseTransfers("not-the-token", wise.profile_id, base_url=wise.base_url)
    with pytest.raises(ProviderError) as unauthorised:
        await wrong.send(request(uid("po"), Money.of("1.00", "USD")))
    await wrong.aclose()
    assert unauthorised.value.retryable and unauthorised.value.not_executed
    assert unauthorised.value.reason == "wise: 401 invalid_token (quote)"


async def test_a_bounce_is_a_failed_settlement(wise: FakeWise, adapter: WiseTransfers) -> None:
    wise.bouncing.add(148149706)
    sent = await adapter.send(request(uid("po"), Money.of("3.00", "EUR")))
    await adapter.settlement(sent.provider_ref)
    bounced = await adapter.settlement(sent.provider_ref)
    assert bounced.state == "failed" and bounced.reason == "wise: transfer bounced_back"


async def test_a_funding_timeout_is_in_doubt_and_the_lookup_finds_it(wise: FakeWise) -> None:
    client = WiseTransfers(
        wise.api_token, wise.profile_id, base_url=wise.base_url, timeout_seconds=0.2
    )
    key = uid("po")
    await client.lookup(request(key, Money.of("2.00", "EUR")))  # quote and transfer exist
    wise.requests.clear()
    wise.stall_next(0)  # the quote
    wise.stall_next(0)  # the transfer
    wise.stall_next(1.0)  # the funding: executed, its answer lost
    await in_doubt_then_found(client, request(key, Money.of("2.00", "EUR")))
    assert len(wise.funded) == 1


async def test_the_amount_is_sent_as_an_exact_number(
    wise: FakeWise, adapter: WiseTransfers
) -> None:
    amount = Money(Decimal("123456789012.345"), "KWD")
    await adapter.send(request(uid("po"), amount))
    [quote] = [r for r in wise.requests if r.path.endswith("/quotes")]
    assert b'"targetAmount": 123456789012.345,' in quote.body
    assert quote.json()["targetAmount"] == float("123456789012.345")
