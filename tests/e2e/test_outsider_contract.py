"""The event contract is usable by outsiders: the whole platform driven with a plain Kafka client.

The three services run as separate processes against fresh embedded servers. Everything the
test sends is a CloudEvents JSON document written by hand as docs/architecture.md §3
describes it, and everything it checks is the raw JSON the services publish: no model, codec
or money helper of CreatorFlow is used between the fixtures and the assertions. Expected
figures are computed here by hand with `decimal`.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from confluent_kafka import Consumer, KafkaError, Message, Producer

from shared.runtime.config import KafkaKind, Settings
from shared.tools.infra import InfraUrls
from shared.tools.infra.service_processes import SERVICES, ServiceProcesses
from tests.conftest import embedded_servers
from tests.e2e.contract_events import (
    BAKING,
    NOW,
    USD_TO_EUR,
    brand_funding,
    cloud_event,
    deliverable,
    fx_snapshot,
    half_even,
    match_request,
    money,
    population,
    profile,
    rfc3339,
)
from tests.support.kafka_io import TopicReader

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WAIT_SECONDS = 60.0
# `score` and every explanation value are JSON floats; the explanation is the ranker's terms
# and the score their exact sum (math.fsum), so after the JSON round trip they agree to the
# last bit. The tolerance only absorbs a different summation order on a consumer's side.
EXPLANATION_TOLERANCE = 1e-9

OUTPUT_TOPICS = (
    "match.suggestions",
    "tracking.attribution",
    "deliverables.confirmed",
    "payouts.status",
    "brand.match-requests.dlq",
)

T = TypeVar("T")


# Fixtures: servers and services (the only place project code is used) ----------------------


@pytest.fixture(scope="module")
def servers() -> Iterator[InfraUrls]:
    yield from embedded_servers()


@pytest.fixture(scope="module")
async def service_output(servers: InfraUrls) -> AsyncIterator[list[str]]:
    """The three services as processes; yields their interleaved output lines."""
    lines: list[str] = []
    # The fee payout expected below is the whole fee: no platform cut.
    env = {**servers.as_env(), "PAYOUTS_PLATFORM_FEE_BPS": "0"}
    async with ServiceProcesses(SERVICES, env, lambda name, line: lines.append(f"{name} | {line}")):
        yield lines


# Plain Kafka client helpers --------------------------------------------------------------


class Outputs(TopicReader):
    """Every record of the output topics, read from the beginning without a consumer group."""

    def __init__(self, bootstrap: str, service_lines: list[str]) -> None:
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._lines = service_lines
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.read_from_beginning(OUTPUT_TOPICS)

    def events(self, topic: str) -> list[dict[str, Any]]:
        """The JSON documents read so far from `topic`, in arrival order."""
        return [json.loads(r.value or b"") for r in self.records if r.topic == topic]

    async def wait_for(self, find: Callable[[], T | None], what: str) -> T:
        """The first truthy `find()`; fails with what was seen if none within WAIT_SECONDS."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while True:
            found = find()
            if found:
                return found
            if loop.time() > deadline:
                seen: dict[str, int] = {}
                for record in self.records:
                    seen[record.topic] = seen.get(record.topic, 0) + 1
                tail = "\n".join(self._lines[-40:])
                pytest.fail(
                    f"no {what} within {WAIT_SECONDS:.0f}s; records read per topic: {seen}\n"
                    f"last service output:\n{tail}"
                )
            await asyncio.sleep(0.1)


class Publisher:
    def __init__(self, client: AIOKafkaProducer) -> None:
        self.client = client

    async def send(self, topic: str, key: str, document: dict[str, Any] | bytes) -> None:
        value = document if isinstance(document, bytes) else json.dumps(document).encode()
        await self.client.send_and_wait(topic, value, key=key.encode())


@pytest.fixture
async def outputs(servers: InfraUrls, service_output: list[str]) -> AsyncIterator[Outputs]:
    reader = Outputs(servers.kafka_bootstrap_servers, service_output)
    await reader.start()
    yield reader
    await reader.stop()


@pytest.fixture
async def producer(servers: InfraUrls, service_output: list[str]) -> AsyncIterator[Publisher]:
    client = AIOKafkaProducer(bootstrap_servers=servers.kafka_bootstrap_servers, linger_ms=5)
    await client.start()
    yield Publisher(client)
    await client.stop()


# The campaign, as outsiders write it (tests/e2e/contract_events.py) ----------------------

FEE = "550.00"  # x 0.9215 = 506.8250 exactly: half-even gives 506.82, half-up would give 506.83
COMMISSION_RATE = "0.10"


# The tests --------------------------------------------------------------------------------


async def test_a_campaign_through_raw_json_events(producer: Publisher, outputs: Outputs) -> None:
    # 1. FX rates and the creator population; then the brand asks for micro bakers.
    await producer.send("fx.rates", "USD", fx_snapshot())
    creators = population()
    for document in creators:
        await producer.send("creator.profiles", document["data"]["creator_id"], document)

    # Topics are not ordered with each other, so a request consumed before every profile
    # ranks part of the population. Each creator is either suggested or counted once under
    # `filtered`, so the brand can tell, and asks again until the answer covers all of them.
    everyone = len(creators)
    asked: list[str] = []

    def answer_covering_everyone() -> dict[str, Any] | None:
        for event in outputs.events("match.suggestions"):
            data = event["data"]
            covered = len(data["suggestions"]) + sum(data["filtered"].values())
            if data["request_id"] in asked and covered == everyone:
                return event
        return None

    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    answer = None
    while answer is None:
        if loop.time() > deadline:
            answers = [e["data"]["filtered"] for e in outputs.events("match.suggestions")]
            pytest.fail(
                f"no match.suggested covering all {everyone} creators within {WAIT_SECONDS:.0f}s"
                f" of asking {len(asked)} times; filtered counts of the answers: {answers}"
            )
        asked.append(f"req-{uuid.uuid4().hex[:8]}")
        await producer.send("brand.match-requests", "cmp-outsider", match_request(asked[-1]))
        retry_at = loop.time() + 5
        while answer is None and loop.time() < retry_at:
            answer = answer_covering_everyone()
            await asyncio.sleep(0.1)

    # 2. The raw suggestions: CloudEvents envelope, explained scores, money as strings.
    assert answer["specversion"] == "1.0" and answer["type"] == "match.suggested"
    assert answer["subject"] == "cmp-outsider"
    uuid.UUID(answer["id"])
    data = answer["data"]
    assert data["campaign_id"] == "cmp-outsider" and data["brand_id"] == "brand-bakeco"
    suggestions = data["suggestions"]
    assert [s["rank"] for s in suggestions] == list(range(1, len(suggestions) + 1))
    for suggestion in suggestions:
        explained = math.fsum(suggestion["explanation"].values())
        assert abs(explained - suggestion["score"]) <= EXPLANATION_TOLERANCE, suggestion
        assert "niche" in suggestion["explanation"]
        cost = suggestion["estimated_cost"]
        assert set(cost) == {"amount", "currency"} and cost["currency"] == "USD"
        assert isinstance(cost["amount"], str) and Decimal(cost["amount"]) <= Decimal("900.00")
        assert suggestion["tier"] == "micro"
    suggested = {s["creator_id"] for s in suggestions}
    assert suggested <= set(BAKING), "off-niche creators suggested"
    assert len(suggested) >= 3, data["filtered"]
    # 6 nano and 6 macro creators; the 6 micro ones with a mostly British audience.
    assert data["filtered"]["outside_tier"] == 12, data["filtered"]
    assert data["filtered"]["audience_mismatch"] == 6, data["filtered"]
    top = suggestions[0]
    # The rate card's post price, converted to the budget's currency (the same here).
    prices = {p["data"]["creator_id"]: p["data"]["rate_card"]["post"] for p in creators}
    assert Decimal(top["estimated_cost"]["amount"]) == Decimal(prices[top["creator_id"]]["amount"])

    # 3. The brand hires the best baker: one post and one story, #ad required.
    creator_id = top["creator_id"]
    deal_id = f"deal-{uuid.uuid4().hex[:8]}"
    promo = f"BAKE{uuid.uuid4().hex[:6].upper()}"
    deal = {
        "deal_id": deal_id,
        "campaign_id": "cmp-outsider",
        "brand_id": "brand-bakeco",
        "creator_id": creator_id,
        "fee": money(FEE, "USD"),
        "commission_rate": COMMISSION_RATE,
        "promo_codes": [promo],
        "deliverables": [
            deliverable("dl-post", "post", NOW + timedelta(days=10)),
            deliverable("dl-story", "story", NOW + timedelta(days=10)),
        ],
        "required_tags": ["#ad"],
        "starts_at": rfc3339(NOW - timedelta(days=1)),
        "ends_at": rfc3339(NOW + timedelta(days=13)),
        "attribution_window_days": 14,
    }
    # The brand funds the fee first: payouts draw it from the brand's escrow.
    await producer.send("brand.funding", "brand-bakeco", brand_funding("brand-bakeco", FEE, "USD"))
    await producer.send(
        "campaign.deals", deal_id, cloud_event("deal.signed", "test/brand", deal_id, deal)
    )
    token = f"tok_wise_{uuid.uuid4().hex[:10]}"
    account = {
        "creator_id": creator_id,
        "method": "wise",
        "destination": token,
        "currency": "EUR",
        "tax_form": {
            "type": "W-9",
            "status": "verified",
            "verified_at": rfc3339(NOW - timedelta(days=30)),
        },
    }
    await producer.send(
        "creator.payout-accounts",
        creator_id,
        cloud_event("creator.payout-account.upserted", "test/onboarding", creator_id, account),
    )

    # 4. Metric snapshots (the post's latest one arrives first), orders, a duplicate, a refund.
    def snapshot(
        post_id: str, kind: str, hours_after: int, likes: int, reach: int
    ) -> dict[str, Any]:
        posted_at = NOW - timedelta(hours=20)
        metrics = {
            "post_id": post_id,
            "creator_id": creator_id,
            "platform": "instagram",
            "kind": kind,
            "deal_id": deal_id,
            "caption": "Spring sourdough with @bakeco #ad",
            "tags": ["#ad", "#bakeco"],
            "posted_at": rfc3339(posted_at),
            "observed_at": rfc3339(posted_at + timedelta(hours=hours_after)),
            "likes": likes,
            "comments": likes // 20,
            "shares": likes // 50,
            "saves": likes // 10,
            "views": reach * 2,
            "impressions": reach * 3 // 2,
            "reach": reach,
            "followers": 40_000,
        }
        return cloud_event("post.metrics.observed", "test/collector", post_id, metrics)

    post_id, story_id = f"ig-{deal_id}-post", f"ig-{deal_id}-story"
    for document in (
        snapshot(post_id, "post", 18, likes=2_310, reach=18_700),  # latest: this one counts
        snapshot(post_id, "post", 4, likes=900, reach=7_000),  # older, arrives late
        snapshot(story_id, "story", 6, likes=410, reach=5_200),
    ):
        await producer.send("tracking.post-metrics", document["data"]["post_id"], document)
    expected_likes = 2_310 + 410

    def order(event_type: str, order_id: str, amount: str, hours_ago: int) -> dict[str, Any]:
        data = {
            "order_id": order_id,
            "promo_code": promo,
            "amount": money(amount, "USD"),
            "occurred_at": rfc3339(NOW - timedelta(hours=hours_ago)),
        }
        return cloud_event(event_type, "test/shop", promo, data)

    first = order("order.redeemed", f"ord-{deal_id}-1", "64.90", hours_ago=10)
    second = order("order.redeemed", f"ord-{deal_id}-2", "120.00", hours_ago=8)
    first_retried = order("order.redeemed", f"ord-{deal_id}-1", "64.90", hours_ago=10)
    refund = order("order.refunded", f"ord-{deal_id}-2", "20.00", hours_ago=2)
    for document in (first, second, first_retried, second, refund):  # `second` re-sent as is
        await producer.send("tracking.orders", promo, document)
    revenue = Decimal("64.90") + Decimal("120.00") - Decimal("20.00")
    spend = Decimal(FEE) + half_even(revenue * Decimal(COMMISSION_RATE))

    # 5. Attribution as the brand reads it.
    def attribution_done() -> dict[str, Any] | None:
        for event in reversed(outputs.events("tracking.attribution")):
            a: dict[str, Any] = event["data"]
            if (
                a["deal_id"] == deal_id
                and a["posts"] == 2
                and a["likes"] == expected_likes
                and a["orders"] == 2
                and a["revenue"]["currency"] == "USD"
                and Decimal(a["revenue"]["amount"]) == revenue
            ):
                return a
        return None

    attribution = await outputs.wait_for(
        attribution_done, f"attribution.updated for {deal_id}: 2 posts, 2 orders, USD {revenue}"
    )
    assert attribution["campaign_id"] == "cmp-outsider" and attribution["creator_id"] == creator_id
    assert attribution["revenue"] == {"amount": "164.90", "currency": "USD"}
    assert attribution["reach"] == 18_700 + 5_200
    assert attribution["spend"] == {"amount": str(spend), "currency": "USD"}
    assert Decimal(attribution["roas"]) == half_even(revenue / spend, "0.0001")
    assert attribution["cpa"] is not None and isinstance(attribution["cpa"], str)

    # 6. Both deliverables confirmed automatically, each by its own post.
    def both_confirmed() -> list[dict[str, Any]] | None:
        mine = [e["data"] for e in outputs.events("deliverables.confirmed")]
        mine = [c for c in mine if c["deal_id"] == deal_id]
        return mine if {c["deliverable_id"] for c in mine} == {"dl-post", "dl-story"} else None

    confirmations = await outputs.wait_for(
        both_confirmed, f"deliverable.confirmed x2 for {deal_id}"
    )
    assert len(confirmations) == 2, confirmations
    assert {c["confirmed_by"] for c in confirmations} == {"auto"}
    assert {(c["deliverable_id"], c["post_id"]) for c in confirmations} == {
        ("dl-post", post_id),
        ("dl-story", story_id),
    }

    # 7. The fee paid in EUR: 550.00 USD x 0.9215, rounded half-even to the cent.
    expected_net = half_even(Decimal(FEE) * Decimal(USD_TO_EUR))
    assert expected_net == Decimal("506.82")

    def fee_sent() -> dict[str, Any] | None:
        for event in outputs.events("payouts.status"):
            if event["type"] == "payout.sent" and event["data"]["deal_id"] == deal_id:
                return event
        return None

    sent = await outputs.wait_for(fee_sent, f"payout.sent for {deal_id}")
    payout = sent["data"]
    assert sent["subject"] == deal_id and payout["status"] == "sent"
    assert payout["creator_id"] == creator_id
    assert payout["gross"] == {"amount": FEE, "currency": "USD"}
    assert payout["net"] == {"amount": str(expected_net), "currency": "EUR"}
    assert Decimal(payout["fx_rate"]) == Decimal(USD_TO_EUR)
    assert payout.get("kind") in (None, "fee")
    assert token not in json.dumps(sent), "the payout event leaks the account destination"
    sent_for_deal = [
        e
        for e in outputs.events("payouts.status")
        if e["type"] == "payout.sent" and e["data"]["payout_id"] == payout["payout_id"]
    ]
    assert len(sent_for_deal) == 1, "the fee was sent more than once"


async def test_a_broken_document_lands_in_the_dlq_with_its_reason(
    producer: Publisher, outputs: Outputs
) -> None:
    broken = b'{"specversion": "1.0", "type": "match.requested", "data": {"request_id": '
    key = f"cmp-broken-{uuid.uuid4().hex[:8]}"
    await producer.send("brand.match-requests", key, broken)

    def dead_letter() -> ConsumerRecord[bytes, bytes] | None:
        for record in outputs.records:
            if record.topic == "brand.match-requests.dlq" and record.key == key.encode():
                return record
        return None

    record = await outputs.wait_for(dead_letter, "the broken document in brand.match-requests.dlq")
    assert record.value == broken, "the DLQ keeps the original bytes"
    headers = {name: value.decode() for name, value in record.headers}
    assert headers.get("dlq.error.class") == "InvalidJSON", headers
    assert headers.get("dlq.source.topic") == "brand.match-requests"
    assert headers.get("dlq.error.message"), headers


# A brand on librdkafka ---------------------------------------------------------------------

# The embedded broker answers a JoinGroup only after half the member's session timeout, so
# librdkafka's default of 45 s leaves a new group consumer silent for about 23 s. A brand on
# the embedded broker sets it lower, as the README says; on Apache Kafka the defaults are used.
EMBEDDED_BROKER = Settings().kafka is KafkaKind.EMBEDDED and not Settings().kafka_bootstrap_servers
BRAND_GROUP_SETTINGS: dict[str, str | int] = {"session.timeout.ms": 6000} if EMBEDDED_BROKER else {}
BREAD_FEE = "300.00"  # x 0.9215 = 276.45 EUR exactly


class BrandGroupReader:
    """A `confluent_kafka.Consumer` in the brand's consumer group, polled off the event loop."""

    def __init__(self, bootstrap: str, group_id: str, topics: list[str]) -> None:
        self.events: list[dict[str, Any]] = []
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group_id,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                **BRAND_GROUP_SETTINGS,
            }
        )
        self._consumer.subscribe(topics)
        self._closed = False

    async def wait_for(self, find: Callable[[], T | None], what: str, lines: list[str]) -> T:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while not (found := find()):
            if loop.time() > deadline:
                tail = "\n".join(lines[-30:])
                pytest.fail(
                    f"the librdkafka group consumer saw no {what} within {WAIT_SECONDS:.0f}s "
                    f"({len(self.events)} events read, assignment "
                    f"{self._consumer.assignment()}); last service output:\n{tail}"
                )
            await self.poll()
        return found

    async def poll(self) -> None:
        message = await asyncio.to_thread(self._consumer.poll, 0.5)
        if message is None:
            return
        assert message.error() is None, message.error()
        self.events.append(json.loads(message.value() or b""))

    def commit(self) -> None:
        self._consumer.commit(asynchronous=False)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._consumer.close()


@pytest.fixture
def brand_group(servers: InfraUrls) -> Iterator[Callable[[str], BrandGroupReader]]:
    """Opens readers in a brand's consumer group; closes the ones still open at the end."""
    readers: list[BrandGroupReader] = []

    def open_reader(group_id: str) -> BrandGroupReader:
        topics = ["match.suggestions", "payouts.status"]
        readers.append(BrandGroupReader(servers.kafka_bootstrap_servers, group_id, topics))
        return readers[-1]

    yield open_reader
    for reader in readers:
        reader.close()


def librdkafka_send(bootstrap: str, documents: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Produce (topic, key, document) with librdkafka's defaults (acks=all); fail on any error."""
    producer = Producer({"bootstrap.servers": bootstrap})
    errors: list[str] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            errors.append(str(error))

    for topic, key, document in documents:
        producer.produce(topic, json.dumps(document).encode(), key.encode(), on_delivery=delivered)
    assert producer.flush(30) == 0, "records still undelivered after 30 s"
    assert not errors, errors


async def test_a_brand_on_librdkafka_hires_and_sees_the_payout_through_its_consumer_group(
    servers: InfraUrls,
    service_output: list[str],
    brand_group: Callable[[str], BrandGroupReader],
) -> None:
    bootstrap = servers.kafka_bootstrap_servers
    run = uuid.uuid4().hex[:8]
    campaign_id, brand_id, creator_id = f"cmp-rdk-{run}", f"brand-rdk-{run}", f"cr-rdk-{run}"
    # A baker of the same niche as the population's; the brand excludes the population's
    # bakers, so the answer is about this creator only.
    creator = profile(
        creator_id,
        followers=32_000,
        bio="Sourdough bread baking at home, starters and crusty loaves",
        topics=["baking", "sourdough", "bread"],
        country="US",
        post_price="300.00",
        engagement=0.042,
    )
    account = {
        "creator_id": creator_id,
        "method": "wise",
        "destination": f"tok_wise_{run}",
        "currency": "EUR",
        "tax_form": {"type": "W-9", "status": "verified", "verified_at": rfc3339(NOW)},
    }
    librdkafka_send(
        bootstrap,
        [
            ("fx.rates", "USD", fx_snapshot()),
            ("creator.profiles", creator_id, creator),
            (
                "creator.payout-accounts",
                creator_id,
                cloud_event("creator.payout-account.upserted", "test/onb", creator_id, account),
            ),
        ],
    )

    def bread_request(request_id: str) -> dict[str, Any]:
        data = {
            "request_id": request_id,
            "brand_id": brand_id,
            "campaign_id": campaign_id,
            "niche": {"description": "Sourdough bread baking", "keywords": ["sourdough"]},
            "target_audience": {"countries": ["US"], "age": [], "gender": "any"},
            "platforms": [],
            "tiers": ["micro"],
            "budget_per_creator": money("500.00", "USD"),
            "limit": 5,
            "exclude_creator_ids": BAKING,
        }
        return cloud_event("match.requested", f"test/{brand_id}", campaign_id, data)

    # 1. Ask until the answer has the creator (the profile may be consumed after a request).
    reader = brand_group(brand_id)
    asked: list[str] = []

    def answer_with_creator() -> dict[str, Any] | None:
        for event in reader.events:
            data = event["data"]
            if (
                event["type"] == "match.suggested"
                and data["request_id"] in asked
                and creator_id in {s["creator_id"] for s in data["suggestions"]}
            ):
                return event
        return None

    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not answer_with_creator():
        if loop.time() > deadline:
            answers = [
                (e["data"]["request_id"], e["data"]["suggestions"], e["data"]["filtered"])
                for e in reader.events
                if e["type"] == "match.suggested" and e["data"]["request_id"] in asked
            ]
            pytest.fail(
                f"no answer suggesting {creator_id} within {WAIT_SECONDS:.0f}s of asking "
                f"{len(asked)} times; {len(reader.events)} events read; answers: {answers}"
            )
        asked.append(f"req-{uuid.uuid4().hex[:8]}")
        request = bread_request(asked[-1])
        await asyncio.to_thread(
            librdkafka_send, bootstrap, [("brand.match-requests", campaign_id, request)]
        )
        retry_at = loop.time() + 5
        while not answer_with_creator() and loop.time() < retry_at:
            await reader.poll()
    answer = answer_with_creator()
    assert answer is not None and answer["subject"] == campaign_id
    assert answer["data"]["brand_id"] == brand_id

    # 2. Hire the creator for one post and confirm it by hand: the fee is paid in EUR.
    deal_id = f"deal-rdk-{run}"
    deal = {
        "deal_id": deal_id,
        "campaign_id": campaign_id,
        "brand_id": brand_id,
        "creator_id": creator_id,
        "fee": money(BREAD_FEE, "USD"),
        "commission_rate": "0",
        "promo_codes": [],
        "deliverables": [deliverable("dl-post", "post", NOW + timedelta(days=7))],
        "required_tags": ["#ad"],
        "starts_at": rfc3339(NOW - timedelta(days=1)),
        "ends_at": rfc3339(NOW + timedelta(days=7)),
        "attribution_window_days": 7,
    }
    confirmation = {
        "deal_id": deal_id,
        "deliverable_id": "dl-post",
        "post_id": None,
        "confirmed_by": brand_id,
        "confirmed_at": rfc3339(NOW),
    }
    await asyncio.to_thread(
        librdkafka_send,
        bootstrap,
        [
            ("brand.funding", brand_id, brand_funding(brand_id, BREAD_FEE, "USD")),
            ("campaign.deals", deal_id, cloud_event("deal.signed", "test/brand", deal_id, deal)),
            (
                "deliverables.confirmed",
                deal_id,
                cloud_event("deliverable.confirmed", "test/brand", deal_id, confirmation),
            ),
        ],
    )

    def fee_sent() -> dict[str, Any] | None:
        for event in reader.events:
            if event["type"] == "payout.sent" and event["data"]["deal_id"] == deal_id:
                return event["data"]
        return None

    payout = await reader.wait_for(fee_sent, f"payout.sent for {deal_id}", service_output)
    expected_net = half_even(Decimal(BREAD_FEE) * Decimal(USD_TO_EUR))
    assert payout["net"] == {"amount": str(expected_net), "currency": "EUR"}
    seen_before = {e["id"] for e in reader.events}
    reader.commit()
    reader.close()

    # 3. The group's committed offsets hold: the brand's next consumer resumes after them.
    later = f"req-{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(
        librdkafka_send, bootstrap, [("brand.match-requests", campaign_id, bread_request(later))]
    )
    resumed = brand_group(brand_id)

    def later_answer() -> dict[str, Any] | None:
        for event in resumed.events:
            if event["type"] == "match.suggested" and event["data"]["request_id"] == later:
                return event
        return None

    await resumed.wait_for(later_answer, f"match.suggested for {later}", service_output)
    again = seen_before & {e["id"] for e in resumed.events}
    assert not again, f"{len(again)} events read again after the group committed them"
