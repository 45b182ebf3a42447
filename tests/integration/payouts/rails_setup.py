"""What the tests of the rails share on the real servers: adapters pointed at the rails' local
fake servers, transfer requests to the destinations those pay and the checks every rail's
adapter must pass, and a creator owed a payout through the rail of their account's method."""

from __future__ import annotations

import asyncpg
import pytest
from pydantic import SecretStr

from services.payouts.providers import (
    PayoutProvider,
    ProviderError,
    TransferAccepted,
    TransferRequest,
)
from services.payouts.providers.paypal import PayPalPayouts
from services.payouts.providers.rails import Rails
from services.payouts.providers.stripe import StripeTransfers
from services.payouts.providers.wise import WiseTransfers
from shared.contract.money import Money
from shared.tools.infra import InfraUrls
from tests.integration.payouts.kafka_io import StatusWatcher
from tests.integration.payouts.paypal_server import FakePayPal
from tests.integration.payouts.stripe_server import FakeStripe
from tests.integration.payouts.wise_server import FakeWise
from tests.support.kafka_io import produce_events
from tests.support.waiting import eventually
from tests.unit.payouts.builders import account, confirmed, funded_deal, uid

# A destination each rail's fake pays.
DESTINATIONS = {
    "stripe": "acct_1LocalCreator",
    "paypal": "creator@example.com",
    "wise": "recipient:148149706",
}


def transfer_request(
    rail: str, key: str, amount: Money, destination: str | None = None
) -> TransferRequest:
    """A transfer of `amount` under idempotency key `key` through `rail`, to the destination its
    fake pays unless another is given."""
    to = DESTINATIONS[rail] if destination is None else destination
    return TransferRequest(key, amount, SecretStr(to), rail, "CreatorFlow fee")


async def sent_twice(client: PayoutProvider, request: TransferRequest) -> TransferAccepted:
    """Sends `request` through `client` twice: the rail must answer the second time from its
    idempotency record, with the first transfer's reference. Returns the first answer."""
    first = await client.send(request)
    again = await client.send(request)
    assert first.provider_ref == again.provider_ref and not first.replayed and again.replayed
    return first


async def in_doubt_then_found(client: PayoutProvider, request: TransferRequest) -> TransferAccepted:
    """Sends `request` through `client`, whose answer must be lost after the rail executed it:
    a retryable error that does not prove nothing moved. Then the lookup must find that
    transfer, as a replay; `client` is closed and what the lookup found returned."""
    with pytest.raises(ProviderError) as timed_out:
        await client.send(request)
    assert timed_out.value.retryable and not timed_out.value.not_executed
    found = await client.lookup(request)
    await client.aclose()
    assert found is not None and found.replayed
    return found


def rails_of(
    *,
    stripe: FakeStripe | None = None,
    paypal: FakePayPal | None = None,
    wise: FakeWise | None = None,
) -> Rails:
    """The rails of the fake servers given, each through its real adapter."""
    rails: dict[str, PayoutProvider] = {}
    if stripe is not None:
        rails["stripe"] = StripeTransfers(stripe.api_key, base_url=stripe.base_url)
    if paypal is not None:
        rails["paypal"] = PayPalPayouts(
            paypal.client_id, paypal.client_secret, base_url=paypal.base_url
        )
    if wise is not None:
        rails["wise"] = WiseTransfers(wise.api_token, wise.profile_id, base_url=wise.base_url)
    return Rails(rails)


def statuses(watcher: StatusWatcher, deal: str) -> list[str]:
    return [e.type for e in watcher.of({deal})]


async def owed(
    infra: InfraUrls,
    db_pool: asyncpg.Pool,
    method: str,
    destination: str,
    fallback: tuple[str, str] | None = None,
) -> tuple[str, str]:
    """A creator with a USD account of `method`, then a deal whose two deliverables are
    confirmed: a 450.00 USD fee payout owed through that rail. Returns (deal, creator)."""
    deal, creator = uid("deal"), uid("cr")
    first = account(
        creator, currency="USD", destination=destination, method=method, fallback=fallback
    )
    funding, signed = funded_deal(deal, creator)
    await produce_events(infra.kafka_bootstrap_servers, [first, funding])

    async def stored() -> bool:
        return bool(
            await db_pool.fetchval(
                "SELECT count(*) FROM processed_events WHERE event_id = ANY($1::text[])",
                [first.id, funding.id],
            )
            == 2
        )

    # The account and the brand's funds first, so the payout goes straight to the rail
    # (never held for either).
    await eventually(stored, what="the account and the funding stored")
    await produce_events(
        infra.kafka_bootstrap_servers,
        [signed, confirmed(deal, "dl-1"), confirmed(deal, "dl-2")],
    )
    return deal, creator
