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
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TypeVar

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord

from shared.infra import InfraUrls
from shared.infra.service_processes import SERVICES, ServiceProcesses
from shared.kafka import partitions_of
from tests.conftest import embedded_servers

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


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cloud_event(event_type: str, source: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvents 1.0 structured-mode document, written out field by field."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "time": _rfc3339(datetime.now(UTC)),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }


def money(amount: str, currency: str) -> dict[str, str]:
    return {"amount": amount, "currency": currency}


class Outputs:
    """Every record of the output topics, read from the beginning without a consumer group."""

    def __init__(self, bootstrap: str, service_lines: list[str]) -> None:
        self.records: list[ConsumerRecord[bytes, bytes]] = []
        self._lines = service_lines
        self._consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._consumer.start()
        partitions = await partitions_of(self._consumer, OUTPUT_TOPICS)
        missing = set(OUTPUT_TOPICS) - {tp.topic for tp in partitions}
        assert not missing, f"topics the services should have created are missing: {missing}"
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=50)
            for records in batch.values():
                self.records.extend(records)

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


# The campaign, as outsiders write it -------------------------------------------------------

NOW = datetime.now(UTC)
USD_TO_EUR = "0.9215"
FEE = "550.00"  # x 0.9215 = 506.8250 exactly: half-even gives 506.82, half-up would give 506.83
COMMISSION_RATE = "0.10"
BAKING = [f"cr-bake-{n}" for n in range(6)]


def fx_snapshot() -> dict[str, Any]:
    data = {
        "base": "USD",
        "rates": {"EUR": USD_TO_EUR, "GBP": "0.7890", "JPY": "151.32", "CAD": "1.3650"},
        "as_of": _rfc3339(NOW - timedelta(hours=1)),
        "source": "test-fx-feed",
    }
    return cloud_event("fx.rates.published", "test/fx-feed", "USD", data)


def profile(
    creator_id: str,
    *,
    followers: int,
    bio: str,
    topics: list[str],
    country: str,
    post_price: str,
    engagement: float,
    platform: str = "instagram",
) -> dict[str, Any]:
    likes = round(followers * engagement * 0.94, 1)
    comments = round(likes * 0.04, 1)
    shares = round(likes * 0.02, 1)
    home_share = 0.7 if country == "US" else 0.1
    data = {
        "creator_id": creator_id,
        "handle": f"@{creator_id.replace('-', '.')}",
        "platform": platform,
        "followers": followers,
        "avg_likes": likes,
        "avg_comments": comments,
        "avg_shares": shares,
        "avg_views": round(followers * 0.35, 1),
        "posts_last_30d": 12,
        "bio": bio,
        "topics": topics,
        "country": country,
        "language": "en",
        "audience": {
            "countries": {"US": home_share, "GB": 0.1, "CA": 0.1},
            "age": {"18-24": 0.3, "25-34": 0.45, "35-44": 0.2},
            "gender": {"female": 0.6, "male": 0.38, "other": 0.02},
        },
        "rate_card": {"post": money(post_price, "USD"), "story": money("120.00", "USD")},
        "payout_currency": "USD",
    }
    return cloud_event("creator.profile.upserted", "test/onboarding", creator_id, data)


def population() -> list[dict[str, Any]]:
    """Six micro creators in the baking niche, and 24 others in other niches and tiers."""
    bakers = [
        profile(
            creator_id,
            followers=followers,
            bio=bio,
            topics=["baking", "sourdough", "bread", "pastry"],
            country="US",
            post_price=price,
            engagement=rate,
        )
        for creator_id, followers, bio, price, rate in zip(
            BAKING,
            (18_400, 27_900, 41_300, 55_800, 73_200, 88_600),
            (
                "Sourdough bread baking every weekend, starter tips and crusty loaves",
                "Home baking for beginners: cakes, cookies and easy sourdough",
                "Pastry chef sharing croissants, laminated dough and bread baking",
                "Baking bread at home, sourdough starters and whole grain loaves",
                "Cake decorating, cookies and weekend baking with kids",
                "Artisan bread and sourdough baking, flour reviews and bakes",
            ),
            ("240.00", "310.00", "420.00", "480.00", "560.00", "640.00"),
            (0.041, 0.038, 0.044, 0.036, 0.040, 0.039),
            strict=True,
        )
    ]
    others = [
        ("fitness", "Gym workouts, strength training and running plans", ["fitness", "gym"]),
        ("gaming", "Speedruns, strategy games and esports commentary", ["gaming", "esports"]),
        ("travel", "Backpacking across Asia, hostels and budget flights", ["travel", "hiking"]),
        ("tech", "Smartphone reviews, laptops and gadget unboxings", ["tech", "gadgets"]),
        ("fashion", "Streetwear outfits, sneakers and thrift hauls", ["fashion", "style"]),
        ("finance", "Personal finance, investing and budgeting tips", ["finance", "investing"]),
    ]
    creators = []
    tiers = (
        (4_200, 0.08, "90.00"),  # nano
        (36_000, 0.04, "380.00"),  # micro
        (64_000, 0.035, "520.00"),  # micro
        (240_000, 0.02, "1900.00"),  # macro
    )
    for niche, bio, topics in others:
        for n, (followers, rate, price) in enumerate(tiers):
            creators.append(
                profile(
                    f"cr-{niche}-{n}",
                    followers=followers + 1_100 * n,
                    bio=bio,
                    topics=topics,
                    country="US" if n % 2 else "GB",
                    post_price=price,
                    engagement=rate,
                    platform="tiktok" if n == 2 else "instagram",
                )
            )
    return bakers + creators


def match_request(request_id: str) -> dict[str, Any]:
    data = {
        "request_id": request_id,
        "brand_id": "brand-bakeco",
        "campaign_id": "cmp-outsider",
        "niche": {
            "description": "Home baking gear: sourdough bread, cakes and pastry for beginners",
            "keywords": ["baking", "sourdough", "bread", "pastry"],
        },
        "target_audience": {"countries": ["US"], "age": [], "gender": "any"},
        "platforms": [],
        "tiers": ["micro"],
        "budget_per_creator": money("900.00", "USD"),
        "limit": 10,
        "exclude_creator_ids": [],
    }
    return cloud_event("match.requested", "test/brand", "cmp-outsider", data)


def half_even(amount: Decimal, places: str = "0.01") -> Decimal:
    return amount.quantize(Decimal(places), rounding=ROUND_HALF_EVEN)


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
            {
                "deliverable_id": "dl-post",
                "kind": "post",
                "count": 1,
                "due_by": _rfc3339(NOW + timedelta(days=10)),
            },
            {
                "deliverable_id": "dl-story",
                "kind": "story",
                "count": 1,
                "due_by": _rfc3339(NOW + timedelta(days=10)),
            },
        ],
        "required_tags": ["#ad"],
        "starts_at": _rfc3339(NOW - timedelta(days=1)),
        "ends_at": _rfc3339(NOW + timedelta(days=13)),
        "attribution_window_days": 14,
    }
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
            "verified_at": _rfc3339(NOW - timedelta(days=30)),
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
            "posted_at": _rfc3339(posted_at),
            "observed_at": _rfc3339(posted_at + timedelta(hours=hours_after)),
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
            "occurred_at": _rfc3339(NOW - timedelta(hours=hours_ago)),
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
