"""Hostile signed money events on every topic that carries them, under the production profile.

The three services run on fresh embedded servers, checking signatures in the consumer as in
production. On each signed money topic (`deal.signed`, `brand.funded`,
`deliverable.confirmed`, `match.feedback`, `match.requested`,
`creator.payout-account.upserted`, `order.redeemed`, `order.refunded`, and our services' own
`attribution.updated`, which moves commission) a forged, a tampered
(one byte), a wrong-owner (another brand, or a party of another kind), an unknown-key, a
revoked-key and an unsigned event are sent between valid neighbours of the same type. Every
service consuming the topic dead-letters each hostile event with its reason, applies none of
them (its inbox never records them, its tables hold only what the valid ones say) and applies
every neighbour.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Any, Final

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from services.matching.app import INPUT_TOPICS as MATCHING_INPUTS
from services.matching.app import make_setup as make_matching_setup
from services.matching.schema import SCHEMA as MATCHING_SCHEMA
from services.matching.settings import MatchingSettings
from services.payouts.app import INPUT_TOPICS as PAYOUTS_INPUTS
from services.payouts.app import make_setup as make_payouts_setup
from services.payouts.schema import SCHEMA as PAYOUTS_SCHEMA
from services.payouts.settings import PayoutsSettings
from services.tracking.app import INPUT_TOPICS as TRACKING_INPUTS
from services.tracking.app import make_setup
from services.tracking.schema import SCHEMA as TRACKING_SCHEMA
from shared.contract.events import (
    CloudEvent,
    MatchFeedback,
    SigningKeyRegistered,
    dlq_topic,
    make_event,
    spec_for_type,
)
from shared.contract.events.codec import sign_event
from shared.contract.money import Money
from shared.contract.signing import Party, RejectReason, key_id, private_key_text, public_key_text
from shared.runtime.config import Profile, Settings
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from shared.tools.infra.smoke import DeadLetter, read_dead_letters
from shared.tools.synthetic.population import niche_request
from tests.integration.isolated import infra, topics
from tests.support.hostile_signing import CASES, Parties, Sent, hostile_twins, wire
from tests.support.kafka_io import produce, produce_events
from tests.support.waiting import eventually
from tests.unit.payouts.builders import (
    T0,
    account,
    attribution,
    confirmed,
    deal_signed,
    funded,
    fx,
    uid,
)
from tests.unit.tracking.builders import order_event, refund_event

pytestmark = [pytest.mark.integration, pytest.mark.slow]

__all__ = ["infra", "topics"]

# The services sign what they publish with this key, registered with the parties' keys.
SERVICE_KEY: Final = Ed25519PrivateKey.generate()
PRODUCTION: Final = Settings().model_copy(
    update={
        "profile": Profile.PRODUCTION,
        "signing_key": SecretStr(private_key_text(SERVICE_KEY)),
    }
)
BRAND: Final = (Party.BRAND, "br-1")
RIVAL: Final = (Party.BRAND, "br-2")
SHOP: Final = (Party.SHOP, "shop")
ONBOARDING: Final = (Party.ONBOARDING, "onboarding")
OURS: Final = (Party.SERVICE, "creatorflow")
CONSUMERS: Final = {
    "matching": set(MATCHING_INPUTS),
    "tracking": set(TRACKING_INPUTS),
    "payouts": set(PAYOUTS_INPUTS),
}
NEIGHBOURS: Final = len(CASES) + 1
TEN: Final = Money.of("10.00", "USD")


@pytest.fixture(scope="module")
async def services(infra: InfraUrls, topics: None) -> AsyncIterator[None]:
    matching = make_matching_setup(settings=MatchingSettings())

    payouts = make_payouts_setup(
        PayoutsSettings(settle_check_seconds=0.2, dispatch_idle_seconds=0.5)
    )
    runtimes = (
        ServiceRuntime("matching", matching, schema=MATCHING_SCHEMA, settings=PRODUCTION,
                       urls=infra),
        ServiceRuntime("tracking", make_setup(), schema=TRACKING_SCHEMA, settings=PRODUCTION,
                       urls=infra),
        ServiceRuntime("payouts", payouts, schema=PAYOUTS_SCHEMA, settings=PRODUCTION,
                       urls=infra),
    )  # fmt: skip
    async with AsyncExitStack() as stack:
        for runtime in runtimes:
            await stack.enter_async_context(runtime)
        yield


@pytest.fixture(scope="module")
async def database(infra: InfraUrls) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(infra.database_url, min_size=1, max_size=2) as pool:
        yield pool


async def test_every_hostile_money_event_is_refused_and_its_neighbours_applied(
    infra: InfraUrls, services: None, database: asyncpg.Pool
) -> None:
    bootstrap = infra.kafka_bootstrap_servers
    parties = Parties()
    for party in (BRAND, RIVAL, SHOP, ONBOARDING, OURS):
        parties.key(*party)
    for party in (BRAND, SHOP, ONBOARDING, OURS):
        parties.revoked(*party)

    def signed(event: CloudEvent[Any]) -> CloudEvent[Any]:
        """Signed by its party: the brand br-1, the shop or the onboarding party."""
        by_brand = spec_for_type(event.type).signed_by is Party.BRAND
        return parties.keys.sign(event, owner=BRAND[1] if by_brand else None)

    # What the hostile confirmations and feedback refer to, known to every service first.
    deal_id, campaign = uid("deal"), uid("cmp")
    base_deal = signed(deal_signed(deal_id, uid("cr"), deliverables=(("dl-1", 1), ("dl-2", 1))))
    base_request = signed(make_event(_request(campaign), source="tests/brand"))
    service_key = public_key_text(SERVICE_KEY.public_key())
    ours = SigningKeyRegistered(
        key_id=key_id(service_key), party=Party.SERVICE, owner_id="creatorflow",
        public_key=service_key,
    )  # fmt: skip
    registry = [*parties.registry(), make_event(ours, source="tests/operator")]
    await produce_events(bootstrap, [*registry, fx({"EUR": "0.92"})])
    await produce_events(bootstrap, [base_deal, base_request])

    checks = (
        ("SELECT count(*) FROM tracking.tracking_deals WHERE deal_id = $1", deal_id),
        ("SELECT count(*) FROM payouts.payouts_deals WHERE deal_id = $1", deal_id),
        ("SELECT count(*) FROM matching.matching_requests WHERE campaign_id = $1", campaign),
    )

    async def known() -> bool:
        return all([await database.fetchval(sql, key) for sql, key in checks])

    await eventually(known, what="the deal and the campaign known to every service")

    def feedback() -> CloudEvent[Any]:
        data = MatchFeedback(campaign_id=campaign, creator_id=uid("cr"), decision="hired",
                             reason="")  # fmt: skip
        return make_event(data, source="tests/brand")

    # Per event type: a fresh valid event, the hostile one's, who signs it, and who may not.
    kinds: list[tuple[Callable[[], CloudEvent[Any]], Callable[[], CloudEvent[Any]],
                      tuple[Party, str], tuple[Party, str], RejectReason]] = [
        (lambda: deal_signed(uid("deal"), uid("cr")), lambda: deal_signed(uid("deal"), uid("cr")),
         BRAND, RIVAL, RejectReason.NOT_THE_OWNER),
        (lambda: funded(BRAND[1], TEN), lambda: funded(BRAND[1], TEN),
         BRAND, RIVAL, RejectReason.NOT_THE_OWNER),
        (lambda: confirmed(deal_id, "dl-1"), lambda: confirmed(deal_id, "dl-2"),
         BRAND, RIVAL, RejectReason.NOT_THE_DEAL_OWNER),
        (feedback, feedback, BRAND, RIVAL, RejectReason.NOT_THE_OWNER),
        (lambda: make_event(_request(uid("cmp")), source="tests/brand"),
         lambda: make_event(_request(uid("cmp")), source="tests/brand"),
         BRAND, RIVAL, RejectReason.NOT_THE_OWNER),
        (lambda: account(uid("cr")), lambda: account(uid("cr")),
         ONBOARDING, RIVAL, RejectReason.WRONG_PARTY),
        (lambda: order_event(uid("ord")), lambda: order_event(uid("ord")),
         SHOP, RIVAL, RejectReason.WRONG_PARTY),
        (lambda: refund_event(uid("ord")), lambda: refund_event(uid("ord")),
         SHOP, RIVAL, RejectReason.WRONG_PARTY),
        (_attribution, _attribution, OURS, BRAND, RejectReason.WRONG_PARTY),
    ]  # fmt: skip
    valid: list[Sent] = []
    hostile: list[Sent] = []
    messages: list[Sent] = []
    for fresh_valid, fresh_hostile, signer, wrong, wrong_reason in kinds:
        twins = hostile_twins(
            fresh_hostile, parties, signer=signer, wrong=wrong, wrong_reason=wrong_reason
        )
        neighbours = [wire(_signed_as(signer, signed, fresh_valid())) for _ in range(NEIGHBOURS)]
        valid += neighbours
        hostile += twins
        for neighbour, twin in zip(neighbours, [*twins, None], strict=True):
            messages.append(neighbour)
            if twin is not None:
                messages.append(twin)
    assert len(hostile) == len(kinds) * len(CASES)
    await produce(bootstrap, [(m.topic, m.key, m.value) for m in messages])

    expected = {
        (service, h.event_id): h
        for h in hostile
        for service, topics_read in CONSUMERS.items()
        if h.topic in topics_read
    }
    letters: dict[tuple[str, str], list[DeadLetter]] = {}

    async def every_letter_and_neighbour() -> bool:
        letters.clear()
        found = await read_dead_letters(bootstrap, sorted({dlq_topic(h.topic) for h in hostile}))
        for letter in found:
            service = letter.headers.get("dlq.service", "")
            letters.setdefault((service, json.loads(letter.value)["id"]), []).append(letter)
        if not set(expected) <= set(letters):
            return False
        return all(
            [
                await _applied(database, service, [v.event_id for v in valid if v.topic in read])
                for service, read in CONSUMERS.items()
            ]
        )

    try:
        await eventually(every_letter_and_neighbour, 90.0, what="every refusal and neighbour")
    except AssertionError:
        missing = sorted(f"{s} {expected[s, i].case} {expected[s, i].topic}"
                         for s, i in set(expected) - set(letters))  # fmt: skip
        unapplied = {
            service: await _missing(database, service, [v for v in valid if v.topic in read])
            for service, read in CONSUMERS.items()
        }
        pytest.fail(f"refusals missing: {missing}\nneighbours not applied: {unapplied}")

    wrong_reasons = []
    for (service, event_id), twin in expected.items():
        [letter] = letters[(service, event_id)]
        if letter.error_class != "Untrusted" or not letter.reason.startswith(f"{twin.reason}:"):
            wrong_reasons.append(f"{service} {twin.case} {twin.topic}: {letter.reason}")
    assert wrong_reasons == [], "\n".join(wrong_reasons)
    for service in CONSUMERS:
        applied = await database.fetchval(
            f"SELECT count(*) FROM {service}.processed_events WHERE event_id = ANY($1::text[])",
            [h.event_id for h in hostile],
        )
        assert applied == 0, f"{service} applied {applied} hostile events"
    print(
        f"hostile signatures: {len(hostile)} hostile events on {len(kinds)} types, "
        f"{len(expected)} "
        f"refusals with their reason, {len(valid)} neighbours applied"
    )

    # No effect: the services' tables hold the valid events' entities only.
    counts = {
        "SELECT count(*) FROM tracking.tracking_deals": 1 + NEIGHBOURS,
        "SELECT count(*) FROM payouts.payouts_deals": 1 + NEIGHBOURS,
        "SELECT count(*) FROM matching.matching_hires": 1 + NEIGHBOURS,
        "SELECT count(*) FROM matching.matching_requests": 1 + NEIGHBOURS,
        "SELECT count(*) FROM matching.matching_feedback": NEIGHBOURS,
        "SELECT count(*) FROM payouts.payouts_accounts": NEIGHBOURS,
        "SELECT count(*) FROM tracking.tracking_orders": NEIGHBOURS,
        "SELECT count(*) FROM tracking.tracking_refunds": NEIGHBOURS,
    }
    found = {sql: await database.fetchval(sql) for sql in counts}
    assert found == counts
    for table in ("tracking.tracking_confirmations", "payouts.payouts_confirmations"):
        rows = await database.fetch(
            f"SELECT DISTINCT deliverable_id FROM {table} WHERE deal_id = $1", deal_id
        )
        assert [r["deliverable_id"] for r in rows] == ["dl-1"], table


def _attribution() -> CloudEvent[Any]:
    return attribution(uid("deal"), uid("cr"), TEN, T0)


def _signed_as(
    signer: tuple[Party, str],
    signed: Callable[[CloudEvent[Any]], CloudEvent[Any]],
    event: CloudEvent[Any],
) -> CloudEvent[Any]:
    """A valid neighbour: signed by its party, ours with the services' key."""
    return sign_event(event, SERVICE_KEY) if signer == OURS else signed(event)


def _request(campaign: str) -> Any:
    return niche_request(
        "baking", request_id=uid("req"), campaign_id=campaign, seed=1, brand_id=BRAND[1]
    )


async def _applied(database: asyncpg.Pool, service: str, event_ids: list[str]) -> bool:
    count = await database.fetchval(
        f"SELECT count(DISTINCT event_id) FROM {service}.processed_events "
        "WHERE event_id = ANY($1::text[])",
        event_ids,
    )
    return bool(count == len(set(event_ids)))


async def _missing(database: asyncpg.Pool, service: str, sent: list[Sent]) -> list[str]:
    rows = await database.fetch(
        f"SELECT event_id FROM {service}.processed_events WHERE event_id = ANY($1::text[])",
        [v.event_id for v in sent],
    )
    applied = {r["event_id"] for r in rows}
    return [v.topic for v in sent if v.event_id not in applied]
