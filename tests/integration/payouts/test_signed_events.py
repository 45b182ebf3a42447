"""Only the party entitled to an event moves money with it (production profile, real servers).

A brand's deal and confirmations, and the onboarding party's payout account, signed and
registered, pay the creator. Interleaved with them: a stranger changing the creator's
destination (an unregistered key, then unsigned), another brand signing the first brand's
deal or confirming its deliverable, a tampered deal, a deal signed with a revoked key. Each
of those is dead-lettered with its reason and has no effect; the valid neighbours are
applied. Another brand's confirmations sent before a deal neither pay nor block it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from services.payouts.app import make_setup
from services.payouts.schema import SCHEMA
from services.payouts.settings import PayoutsSettings
from shared.contract.events import SigningKeyRevoked, Topic, dlq_topic, encode, event_key
from shared.contract.events import make_event as make
from shared.contract.events.codec import sign_event
from shared.contract.money import Money
from shared.contract.signing import Party, key_id, private_key_text
from shared.runtime.config import Profile, Settings
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from shared.tools.infra.smoke import read_dead_letters
from shared.tools.signing import PartyKeys
from tests.integration.payouts.kafka_io import StatusWatcher
from tests.support.kafka_io import produce, produce_events
from tests.support.waiting import eventually
from tests.unit.payouts.builders import account, confirmed, deal_signed, funded, fx, uid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# What payouts publishes is signed with a service key (never checked here).
SERVICE_KEY = SecretStr(private_key_text(Ed25519PrivateKey.generate()))
PRODUCTION = Settings().model_copy(
    update={"profile": Profile.PRODUCTION, "signing_key": SERVICE_KEY}
)
SETTINGS = PayoutsSettings(settle_check_seconds=0.2, dispatch_idle_seconds=0.5)


async def test_only_the_entitled_party_moves_money(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    bootstrap = infra.kafka_bootstrap_servers
    keys, stranger = PartyKeys(), PartyKeys()
    creator, deal = uid("cr"), uid("deal")
    good = [
        keys.sign(account(creator, currency="USD", form="W-9")),
        keys.sign(deal_signed(deal, creator, brand_id="br-1")),
        # What both of br-1's deals here draw (450.00 USD each).
        keys.sign(funded("br-1", Money.of("900.00", "USD"))),
        *(keys.sign(confirmed(deal, d), owner="br-1") for d in ("dl-1", "dl-2")),
    ]
    retired = keys.key(Party.BRAND, "br-1-old")
    # A second key of br-1's, revoked while the service runs: until then its deals count.
    laptop = PartyKeys()
    lost = laptop.key(Party.BRAND, "br-1")
    rival = keys.key(Party.BRAND, "br-2")
    registered = keys.registrations() + laptop.registrations()
    revoked = make(
        SigningKeyRevoked(key_id=key_id(retired.public_key()), reason="retired"),
        source="test/operator",
    )
    stolen, tampered, by_retired = uid("stolen"), uid("tampered"), uid("retired")
    by_lost = uid("lost")
    stolen_funding = uid("stolen-funding")
    forged_account = stranger.sign(account(creator, currency="USD", destination="acct_thief"))
    unsigned_account = account(creator, currency="USD", destination="acct_thief_2")
    bad = {
        forged_account.id: "unknown_key",
        unsigned_account.id: "unsigned",
        stolen: "not_the_owner",
        stolen_funding: "not_the_owner",
        tampered: "bad_signature",
        by_retired: "revoked_key",
        by_lost: "revoked_key",
    }

    def deal_with_id(event_id: str) -> Any:
        return deal_signed(uid("deal"), creator, brand_id="br-1").model_copy(
            update={"id": event_id}
        )

    rival_deal = sign_event(deal_with_id(stolen), rival)
    # Another brand cannot fund br-1's escrow in its name (nor spend from it).
    rival_funding = sign_event(
        funded("br-1", Money.of("1.00", "USD")).model_copy(update={"id": stolen_funding}), rival
    )
    tampered_deal = keys.sign(deal_with_id(tampered))
    # One byte changed: the commission rate, 0.10 -> 0.90.
    tampered_raw = encode(tampered_deal).replace(b'"0.10"', b'"0.90"', 1)
    assert tampered_raw != encode(tampered_deal)
    retired_deal = sign_event(deal_with_id(by_retired), retired)
    rival_confirmation = sign_event(confirmed(deal, "dl-1", event_id=uid("rival")), rival)
    late = uid("deal")
    early_rival = [sign_event(confirmed(late, d), rival) for d in ("dl-1", "dl-2")]
    setup = make_setup(SETTINGS, group_id=f"payouts-signed-{uuid.uuid4().hex[:8]}")
    await produce_events(bootstrap, [*registered, revoked, fx({"EUR": "0.92"})])
    async with ServiceRuntime("payouts", setup, schema=SCHEMA, settings=PRODUCTION, urls=infra):
        await produce_events(bootstrap, [good[0], forged_account, unsigned_account])
        await produce_events(bootstrap, [*good[1:3], rival_deal, retired_deal, rival_funding])
        await produce(bootstrap, [(Topic.CAMPAIGN_DEALS, event_key(tampered_deal), tampered_raw)])

        async def deal_stored() -> bool:
            query = "SELECT count(*) FROM payouts_deals WHERE deal_id = $1"
            return bool(await db_pool.fetchval(query, deal))

        # The deal first (another topic): a confirmation before it would be kept apart.
        await eventually(deal_stored, what="the deal stored")
        # Revoked now, after every unknown key was looked up: only following the registry
        # can tell the running service.
        lost_revoked = SigningKeyRevoked(key_id=key_id(lost.public_key()), reason="stolen")
        await produce_events(bootstrap, [make(lost_revoked, source="test/operator")])
        await produce_events(bootstrap, [rival_confirmation, *good[3:]])
        await watcher.wait_for(
            lambda: "payout.sent" in [e.type for e in watcher.of({deal})],
            what="the creator paid",
        )
        # The running service follows the registry: the revocation counts from its next
        # fetch (within the fetch wait, 500 ms). A deal signed with the lost key after that
        # is refused.
        await asyncio.sleep(2.0)
        await produce_events(bootstrap, [sign_event(deal_with_id(by_lost), lost)])
        # Another brand confirms a deal's deliverables before the deal arrives: nothing due.
        await produce_events(bootstrap, [*early_rival, keys.sign(deal_signed(late, creator))])
        await asyncio.sleep(2.0)
        assert watcher.of({late}) == [], "another brand's confirmations paid the deal"
        await produce_events(
            bootstrap, [keys.sign(confirmed(late, d), owner="br-1") for d in ("dl-1", "dl-2")]
        )
        await watcher.wait_for(
            lambda: "payout.sent" in [e.type for e in watcher.of({late})],
            what="the late deal paid on its own brand's confirmations",
        )
        await asyncio.sleep(1.0)  # time for anything refused to show up as applied

    letters = await read_dead_letters(
        bootstrap,
        [
            dlq_topic(Topic.CREATOR_PAYOUT_ACCOUNTS),
            dlq_topic(Topic.CAMPAIGN_DEALS),
            dlq_topic(Topic.BRAND_FUNDING),
        ],
        service="payouts",
    )
    found = {
        json.loads(letter.value)["id"]: (letter.error_class, letter.reason.split(":")[0])
        for letter in letters
        if json.loads(letter.value)["id"] in bad
    }
    assert found == {event_id: ("Untrusted", reason) for event_id, reason in bad.items()}
    [refused] = [
        letter
        for letter in await read_dead_letters(
            bootstrap, [dlq_topic(Topic.DELIVERABLES_CONFIRMED)], service="payouts"
        )
        if json.loads(letter.value)["id"] == rival_confirmation.id
    ]
    assert refused.reason.startswith(f"not_the_deal_owner: deal {deal} is brand br-1's")
    applied = await db_pool.fetch(
        "SELECT event_id FROM processed_events WHERE event_id = ANY($1::text[])", list(bad)
    )
    assert applied == [], "a refused event was applied"
    for paid_deal in (deal, late):
        assert len([e for e in watcher.of({paid_deal}) if e.type == "payout.sent"]) == 1
