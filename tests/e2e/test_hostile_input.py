"""Hostile input on every input topic: each bad value is dead-lettered, with its reason, by
every service that consumes the topic; valid neighbours are processed; the services stay up.

The three services run as separate processes on fresh embedded servers and everything is sent
with a plain aiokafka producer. Bad values carry a `hostile` header naming their case (the DLQ
keeps the original headers), valid ones a `neighbour` header, fuzzed ones a `fuzz` header.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final, TypeAlias, TypeVar

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import MessageSizeTooLargeError
from aiokafka.structs import ConsumerRecord
from prometheus_client.parser import text_string_to_metric_families

from services.matching.app import INPUT_TOPICS as MATCHING_INPUTS
from services.payouts.app import INPUT_TOPICS as PAYOUTS_INPUTS
from services.tracking.app import INPUT_TOPICS as TRACKING_INPUTS
from shared.contract.events import (
    TOPICS,
    EventDecodeError,
    EventType,
    Topic,
    decode,
    dlq_topic,
    mask_secrets,
)
from shared.runtime.config import KafkaKind, Settings
from shared.tools.infra import InfraUrls
from shared.tools.infra.service_processes import SERVICES, ServiceProcesses
from tests.conftest import embedded_servers
from tests.e2e.hostile_events import (
    TYPE_OF_TOPIC,
    Bad,
    Document,
    bad_values,
    example,
    key_of,
    mutated,
    new_id,
    odd_but_valid,
    to_bytes,
)
from tests.support.kafka_io import TopicReader

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WAIT_SECONDS: Final = 45.0
APACHE_KAFKA: Final = Settings().kafka is KafkaKind.APACHE
OVERSIZED: Final = "oversized message"
# Bounded both ways: the services must get through what was sent within WAIT_SECONDS.
FUZZ_SECONDS: Final = 20.0
FUZZ_EVENTS: Final = 15_000
FUZZ_SEED: Final = 20250401
DLQ_VALUE_LIMIT: Final = 512 * 1024
CONSUMERS: Final[dict[str, tuple[str, ...]]] = {
    "matching": tuple(MATCHING_INPUTS),
    "tracking": tuple(TRACKING_INPUTS),
    "payouts": tuple(PAYOUTS_INPUTS),
}
# FX rates go first, so the valid deal's payout never waits for a rate: a payout held for one
# is released only when payouts itself stores a new snapshot.
INPUTS: Final = tuple(
    sorted(
        (t for t in TOPICS if any(t in topics for topics in CONSUMERS.values())),
        key=lambda t: t != Topic.FX_RATES,
    )
)

T = TypeVar("T")
Record: TypeAlias = ConsumerRecord[bytes, bytes]


def consumers_of(topic: str) -> list[str]:
    return [service for service, topics in CONSUMERS.items() if topic in topics]


def headers_of(record: Record) -> dict[str, str]:
    return {name: value.decode("utf-8", "replace") for name, value in record.headers}


# Fixtures ---------------------------------------------------------------------------------


@dataclass
class Running:
    processes: ServiceProcesses
    lines: list[str]

    def port(self, service: str) -> int:
        return self.processes.running[service].http_port

    def tail(self, count: int = 40) -> str:
        return "\n".join(self.lines[-count:])


@pytest.fixture(scope="module")
def servers() -> Iterator[InfraUrls]:
    yield from embedded_servers()


@pytest.fixture(scope="module")
async def running(servers: InfraUrls) -> AsyncIterator[Running]:
    lines: list[str] = []
    async with ServiceProcesses(
        SERVICES, servers.as_env(), lambda name, line: lines.append(f"{name} | {line}")
    ) as processes:
        yield Running(processes, lines)


class Topics(TopicReader):
    """Every record of every topic and DLQ, read from the beginning without a group."""

    def __init__(self, bootstrap: str, running: Running) -> None:
        self.records: list[Record] = []
        self.running = running
        self.bootstrap = bootstrap
        self._consumer = self._new_consumer()
        self._task: asyncio.Task[None] | None = None

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            max_partition_fetch_bytes=8 * 1_048_576,
            fetch_max_bytes=64 * 1_048_576,
        )

    async def reread(self) -> None:
        """Read everything again from the beginning with a new consumer.

        The embedded broker can leave a record out of a fetch that races with appends from
        several producers (seen on the DLQs, which three services write at once); a record
        skipped that way is there when read again, so checks of completeness reread first.
        """
        await self.stop()
        self._consumer = self._new_consumer()
        await self.start()
        quiet = 0
        while quiet < 3:
            await asyncio.sleep(0.1)
            before = len(self.records)
            await asyncio.sleep(0.1)
            quiet = quiet + 1 if len(self.records) == before else 0

    async def start(self) -> None:
        self.records = []
        await self.read_from_beginning([*TOPICS, *(dlq_topic(t) for t in TOPICS)])

    def of(self, topic: str) -> list[Record]:
        return [r for r in self.records if r.topic == topic]

    def events(self, topic: str) -> list[Document]:
        """The JSON documents of `topic`, leaving out the bad and fuzzed values sent to it."""
        return [
            json.loads(r.value or b"")
            for r in self.of(topic)
            if not {"hostile", "fuzz"} & {name for name, _ in r.headers}
        ]

    def dead_letters(self, topic: str, service: str | None = None) -> list[Record]:
        return [
            r
            for r in self.of(dlq_topic(topic))
            if service is None or headers_of(r).get("dlq.service") == service
        ]

    async def wait_for(
        self,
        find: Callable[[], T | None],
        what: str,
        detail: Callable[[], str] = str,
        *,
        reread: bool = False,
    ) -> T:
        """The first truthy `find()`, or a failure naming `what` after WAIT_SECONDS; with
        `reread`, everything is read again before each try (for checks of completeness)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_SECONDS
        while True:
            if reread:
                await self.reread()
            found = find()
            if found:
                return found
            if loop.time() > deadline:
                seen = Counter(r.topic for r in self.records)
                pytest.fail(
                    f"{what}: not within {WAIT_SECONDS:.0f}s; {detail()}\n"
                    f"records per topic: {dict(seen)}\n"
                    f"exited services: {self.running.processes.exited()}\n"
                    f"last service output:\n{self.running.tail()}"
                )
            await asyncio.sleep(0.2)


@pytest.fixture
async def topics(servers: InfraUrls, running: Running) -> AsyncIterator[Topics]:
    reader = Topics(servers.kafka_bootstrap_servers, running)
    await reader.start()
    yield reader
    await reader.stop()


class Sender:
    def __init__(self, client: AIOKafkaProducer) -> None:
        self.client = client
        self.sent: Counter[str] = Counter()

    async def send(self, topic: str, key: bytes, value: bytes, header: tuple[str, str]) -> None:
        await self.client.send_and_wait(
            topic, value, key=key, headers=[(header[0], header[1].encode())]
        )
        self.sent[topic] += 1


@pytest.fixture
async def sender(servers: InfraUrls, running: Running) -> AsyncIterator[Sender]:
    # The oversized values are over aiokafka's default 1 MiB request limit.
    client = AIOKafkaProducer(
        bootstrap_servers=servers.kafka_bootstrap_servers,
        linger_ms=5,
        max_request_size=8 * 1_048_576,
    )
    await client.start()
    yield Sender(client)
    await client.stop()


# What the services report -----------------------------------------------------------------


async def consumed_counts(running: Running) -> dict[tuple[str, str], int]:
    """(service, topic) -> creatorflow_events_consumed_total, from each service's /metrics."""
    counts: dict[tuple[str, str], int] = {}
    async with httpx.AsyncClient(timeout=5.0) as http:
        for service in CONSUMERS:
            response = await http.get(f"http://127.0.0.1:{running.port(service)}/metrics")
            assert response.status_code == 200, f"{service} /metrics: {response.status_code}"
            for family in text_string_to_metric_families(response.text):
                for sample in family.samples:
                    if sample.name == "creatorflow_events_consumed_total":
                        counts[(service, sample.labels["topic"])] = int(sample.value)
    return counts


async def assert_all_ready(running: Running) -> None:
    assert not running.processes.exited(), (
        f"services exited: {running.processes.exited()}\n{running.tail()}"
    )
    async with httpx.AsyncClient(timeout=5.0) as http:
        for service in CONSUMERS:
            response = await http.get(f"http://127.0.0.1:{running.port(service)}/readyz")
            assert response.status_code == 200, (
                f"{service} /readyz answered {response.status_code}: {response.text}\n"
                f"{running.tail()}"
            )


def missing_dead_letters(topics: Topics) -> list[str]:
    """Records each service should have dead-lettered (decode refuses them) but did not."""
    missing = []
    for service, inputs in CONSUMERS.items():
        for topic in inputs:
            dead = {
                int(headers_of(r)["dlq.source.offset"]) * 1000
                + int(headers_of(r)["dlq.source.partition"])
                for r in topics.dead_letters(topic, service)
            }
            for record in topics.of(topic):
                if record.offset * 1000 + record.partition in dead:
                    continue
                try:
                    decode(topic, record.value or b"")
                except EventDecodeError:
                    where = f"{topic}[{record.partition}]@{record.offset}"
                    logged = [line for line in topics.running.lines if where in line]
                    missing.append(
                        f"{service} {where} {headers_of(record)} {record.value[:100]!r}; "
                        f"service output naming it: {logged}"
                    )
    return missing


def dlq_offsets(topics: Topics) -> dict[str, str]:
    """Per DLQ (one partition each): records read and the next offset, to tell a record the
    broker never stored from one the reader missed."""
    summary = {}
    for topic in INPUTS:
        offsets = [r.offset for r in topics.of(dlq_topic(topic))]
        if offsets:
            summary[dlq_topic(topic)] = f"{len(set(offsets))} / {max(offsets) + 1}"
    return summary


async def reread_gaps(topics: Topics) -> dict[str, str]:
    """Offsets of the DLQs the reader never returned, fetched again by a fresh consumer."""
    found = {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=topics.bootstrap,
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 1_048_576,
    )
    await consumer.start()
    try:
        for topic in INPUTS:
            offsets = {r.offset for r in topics.of(dlq_topic(topic))}
            if not offsets:
                continue
            for gap in sorted(set(range(max(offsets))) - offsets)[:5]:
                partition = TopicPartition(dlq_topic(topic), 0)
                consumer.assign([partition])
                consumer.seek(partition, gap)
                batch = await consumer.getmany(partition, timeout_ms=2000, max_records=1)
                records = batch.get(partition, [])
                found[f"{partition.topic}@{gap}"] = (
                    f"{records[0].offset} {headers_of(records[0])}" if records else "nothing"
                )
    finally:
        await consumer.stop()
    return found


async def wait_accounted(topics: Topics, running: Running) -> None:
    """Wait until, for every service and input topic it consumes, every record of the topic is
    either counted as consumed or in the topic's DLQ from that service, exactly once.

    Fails when the services stop making progress for WAIT_SECONDS, not when a backlog takes
    long: a loaded machine works through thousands of fuzzed records slowly, not wrongly."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    accounted = -1
    while True:
        consumed = await consumed_counts(running)
        await topics.reread()
        gaps = {}
        progress = 0
        for service, inputs in CONSUMERS.items():
            for topic in inputs:
                total = len(topics.of(topic))
                dead = len(topics.dead_letters(topic, service))
                done = consumed.get((service, topic), 0)
                progress += done + dead
                if done + dead != total:
                    gaps[f"{service} {topic}"] = f"{done} consumed + {dead} dead of {total}"
        if not gaps:
            return
        if progress > accounted:
            accounted, deadline = progress, loop.time() + WAIT_SECONDS
        elif loop.time() > deadline:
            pytest.fail(
                f"records neither consumed nor dead-lettered, no progress for "
                f"{WAIT_SECONDS:.0f}s: {gaps}\n"
                f"invalid records missing from the DLQ: {missing_dead_letters(topics)}\n"
                f"DLQ records read / next offset: {dlq_offsets(topics)}\n"
                f"offsets the reader skipped, read again: {await reread_gaps(topics)}\n"
                f"exited services: {running.processes.exited()}\n{running.tail()}"
            )
        await asyncio.sleep(0.5)


# The valid neighbours ---------------------------------------------------------------------


@dataclass
class Scenario:
    """Valid events with fresh ids whose effects can be observed, per input topic."""

    creator_id: str
    deal_id: str
    promo: str
    campaign_id: str
    answered: tuple[str, str]
    shadowed_request: str
    order_amounts: tuple[str, str]
    shadowed_order: str
    by_topic: dict[str, list[tuple[str, Document]]]


def scenario() -> Scenario:
    creator_id, deal_id = new_id("cr-hostile"), new_id("deal-hostile")
    promo, campaign_id = new_id("HOSTILE").upper(), new_id("cmp-hostile")
    by_topic: dict[str, list[tuple[str, Document]]] = {topic: [] for topic in INPUTS}

    def add(name: str, document: Document) -> Document:
        # The subject names the entity, as the key does (else the event is a KeyMismatch).
        document["subject"] = key_of(document).decode()
        by_topic[TYPE_OF_TOPIC_OF[document["type"]]].append((name, document))
        return document

    add("fx rates", example(EventType.FX_RATES_PUBLISHED))
    # The same rates published again an hour ago: fresh for the fee, whose rate is locked when
    # its last deliverable is confirmed (tracking confirms one of them now). Payouts holds a
    # fee whose rates are more than a day older than that (stale_fx).
    today = example(EventType.FX_RATES_PUBLISHED)
    today["data"]["as_of"] = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    add("fx rates today", today)
    profile = example(EventType.CREATOR_PROFILE_UPSERTED)
    profile["data"]["creator_id"] = creator_id
    add("profile", profile)
    account = example(EventType.CREATOR_PAYOUT_ACCOUNT_UPSERTED)
    account["data"]["creator_id"] = creator_id
    add("payout account", account)
    deal = example(EventType.DEAL_SIGNED)
    deal["data"].update(
        deal_id=deal_id, creator_id=creator_id, campaign_id=campaign_id, promo_codes=[promo]
    )
    add("deal", deal)
    funding = example(EventType.BRAND_FUNDED)  # the brand funds the deal's fee (and more)
    funding["data"].update(brand_id=deal["data"]["brand_id"], funding_id=new_id("fund"))
    add("funding", funding)
    for deliverable in ("dl-1", "dl-2"):
        confirmation = example(EventType.DELIVERABLE_CONFIRMED)
        confirmation["data"].update(
            deal_id=deal_id,
            deliverable_id=deliverable,
            post_id=None,
            confirmed_by="brand-user-hostile",
        )
        add(f"confirmation {deliverable}", confirmation)
    metrics = example(EventType.POST_METRICS_OBSERVED)
    metrics["data"].update(
        post_id=new_id("ig-hostile"), creator_id=creator_id, deal_id=deal_id, kind="reel"
    )
    add("post metrics", metrics)

    # The same event id twice with different content: the second is refused (REUSED_IDS) and
    # must have no effect at all; a later event with a fresh id still counts.
    first_order = example(EventType.ORDER_REDEEMED)
    first_order["data"].update(order_id=new_id("ord"), promo_code=promo)
    first_order["data"]["amount"]["amount"] = "64.90"
    add("order", first_order)
    shadowed_order = example(EventType.ORDER_REDEEMED)
    shadowed_order["id"] = first_order["id"]
    shadowed_order["data"].update(order_id=new_id("ord-shadowed"), promo_code=promo)
    shadowed_order["data"]["amount"]["amount"] = "999.00"
    add("order with a reused event id", shadowed_order)
    second_order = example(EventType.ORDER_REDEEMED)
    second_order["data"].update(order_id=new_id("ord"), promo_code=promo)
    second_order["data"]["amount"]["amount"] = "10.00"
    add("second order", second_order)

    requests = []
    for name in ("request", "request with a reused event id", "later request"):
        request = example(EventType.MATCH_REQUESTED)
        request["data"].update(
            request_id=new_id("req"), campaign_id=campaign_id, exclude_creator_ids=[]
        )
        requests.append(add(name, request))
    requests[1]["id"] = requests[0]["id"]

    feedback = example(EventType.MATCH_FEEDBACK)
    feedback["data"].update(campaign_id=campaign_id, creator_id=creator_id, decision="accepted")
    add("feedback", feedback)
    add("attribution of another deal", example(EventType.ATTRIBUTION_UPDATED))
    for topic in INPUTS:
        for name, document in odd_but_valid(topic):
            add(name, document)
    return Scenario(
        creator_id=creator_id,
        deal_id=deal_id,
        promo=promo,
        campaign_id=campaign_id,
        answered=(requests[0]["data"]["request_id"], requests[2]["data"]["request_id"]),
        shadowed_request=requests[1]["data"]["request_id"],
        order_amounts=("64.90", "10.00"),
        shadowed_order=shadowed_order["data"]["order_id"],
        by_topic=by_topic,
    )


TYPE_OF_TOPIC_OF: Final = {event_type: topic for topic, event_type in TYPE_OF_TOPIC.items()}
# Valid events sent under the id of an earlier one of their topic with other content: each
# consumer of the topic refuses them (shared/runtime/inbox.py).
REUSED_IDS: Final = frozenset({"order with a reused event id", "request with a reused event id"})
TYPE_OF_TOPIC_OF[EventType.ORDER_REFUNDED] = Topic.TRACKING_ORDERS


async def send_interleaved(sender: Sender, plan: Scenario) -> dict[str, list[Bad]]:
    """Each topic's bad values between its valid events, all on the valid events' key (so in
    the same partition, in this order); returns the bad values sent per topic."""
    sent: dict[str, list[Bad]] = {}
    refused: list[str] = []
    for topic in INPUTS:
        valid = list(plan.by_topic[topic])
        key = key_of(valid[0][1])
        bad = [replace(value, key=key) for value in bad_values(topic)]
        sent[topic] = []

        stride = max(1, len(bad) // len(valid))
        for index, value in enumerate(bad):
            if index % stride == 0 and valid:
                name, document = valid.pop(0)
                await _send_valid(sender, topic, name, document, sent[topic])
            try:
                await sender.send(topic, key, value.value, ("hostile", value.case))
            except MessageSizeTooLargeError:
                # Apache Kafka refuses a record over its message.max.bytes (about 1 MiB) when it
                # is produced; the embedded broker stores it and consumers dead-letter it.
                refused.append(f"{topic} {value.case}")
                continue
            sent[topic].append(value)
        for name, document in valid:
            await _send_valid(sender, topic, name, document, sent[topic])
    oversized = [f"{t} {v.case}" for t in INPUTS for v in bad_values(t) if v.case == OVERSIZED]
    assert refused == (oversized if APACHE_KAFKA else []), refused
    return sent


async def _send_valid(
    sender: Sender, topic: str, name: str, document: Document, sent: list[Bad]
) -> None:
    """A valid event, marked as a neighbour; one of REUSED_IDS is refused: marked hostile and
    added to the bad values `sent`."""
    value = to_bytes(document)
    if name not in REUSED_IDS:
        await sender.send(topic, key_of(document), value, ("neighbour", name))
        return
    await sender.send(topic, key_of(document), value, ("hostile", name))
    sent.append(Bad(name, topic, key_of(document), value, "EventIdReused", "already used"))


# The tests --------------------------------------------------------------------------------


async def test_every_bad_value_is_dead_lettered_and_valid_neighbours_are_processed(
    running: Running, topics: Topics, sender: Sender
) -> None:
    plan = scenario()
    sent = await send_interleaved(sender, plan)

    # 1. The valid neighbours had their effects.
    def answered() -> set[str] | None:
        ids = {e["data"]["request_id"] for e in topics.events(Topic.MATCH_SUGGESTIONS)}
        return ids if set(plan.answered) <= ids else None

    answers = await topics.wait_for(answered, f"match.suggested for {plan.answered}")
    assert plan.shadowed_request not in answers, (
        "a match.requested reusing an event id was answered; the consumer must dedupe on the id"
    )
    expected_revenue = sum(Decimal(a) for a in plan.order_amounts)

    def attributed() -> Document | None:
        for event in reversed(topics.events(Topic.TRACKING_ATTRIBUTION)):
            data: Document = event["data"]
            if data["deal_id"] == plan.deal_id and data["orders"] == 2 and data["posts"] == 1:
                return data
        return None

    attribution = await topics.wait_for(
        attributed, f"attribution.updated for {plan.deal_id} with 1 post and 2 orders"
    )
    assert Decimal(attribution["revenue"]["amount"]) == expected_revenue, (
        f"revenue {attribution['revenue']} is not {expected_revenue}: the order that reused an "
        "event id with other content must have been ignored"
    )
    revenues = {
        Decimal(e["data"]["revenue"]["amount"])
        for e in topics.events(Topic.TRACKING_ATTRIBUTION)
        if e["data"]["deal_id"] == plan.deal_id
    }
    assert max(revenues) == expected_revenue, f"the shadowed order was counted once: {revenues}"

    def paid() -> Document | None:
        for event in topics.events(Topic.PAYOUTS_STATUS):
            if event["type"] == "payout.sent" and event["data"]["deal_id"] == plan.deal_id:
                return event
        return None

    await topics.wait_for(
        paid,
        f"payout.sent for the confirmed deal {plan.deal_id}",
        detail=lambda: f"payouts.status events: {topics.events(Topic.PAYOUTS_STATUS)}",
    )

    # 2. Every bad value is in its topic's DLQ once per consuming service, with its reason.
    expected = {
        (topic, service, bad.case): bad
        for topic, bads in sent.items()
        for bad in bads
        for service in consumers_of(topic)
    }

    def all_dead_lettered() -> bool:
        found = {
            (topic, headers_of(r).get("dlq.service"), headers_of(r).get("hostile"))
            for topic in INPUTS
            for r in topics.dead_letters(topic)
        }
        return set(expected) <= found

    await topics.wait_for(
        all_dead_lettered, f"all {len(expected)} bad values dead-lettered", reread=True
    )
    problems: list[str] = []
    seen: Counter[tuple[str, str, str]] = Counter()
    for topic in INPUTS:
        for record in topics.dead_letters(topic):
            headers = headers_of(record)
            service, case = headers.get("dlq.service", "?"), headers.get("hostile")
            if case is None:
                problems.append(
                    f"{topic}: a record without a hostile header was dead-lettered by {service}: "
                    f"{headers.get('neighbour') or headers.get('fuzz') or record.value[:200]!r} "
                    f"({headers.get('dlq.error.class')}: {headers.get('dlq.error.message')})"
                )
                continue
            seen[(topic, service, case)] += 1
            bad = expected.get((topic, service, case))
            if bad is None:
                problems.append(f"{topic}: {case!r} dead-lettered by {service}, not a consumer")
                continue
            where = f"{topic} / {service} / {case!r}"
            if headers.get("dlq.error.class") != bad.error_class:
                problems.append(f"{where}: class {headers.get('dlq.error.class')}")
            if bad.reason not in headers.get("dlq.error.message", ""):
                problems.append(f"{where}: message {headers.get('dlq.error.message')!r}")
            if headers.get("dlq.source.topic") != topic or record.key != bad.key:
                problems.append(f"{where}: source {headers.get('dlq.source.topic')} {record.key!r}")
            # The original bytes, except for secret fields (payout destinations), masked.
            kept, masked = mask_secrets(topic, bad.value)
            if headers.get("dlq.masked.fields") != (",".join(masked) or None):
                problems.append(f"{where}: masked {headers.get('dlq.masked.fields')!r}")
            if len(kept) > DLQ_VALUE_LIMIT:
                if record.value != kept[:DLQ_VALUE_LIMIT] or headers.get(
                    "dlq.original.bytes"
                ) != str(len(kept)):
                    problems.append(f"{where}: not the head of the original with its size")
            elif record.value != kept:
                problems.append(f"{where}: the value is not the original bytes")
    problems += [f"{k} dead-lettered {n} times" for k, n in seen.items() if n > 1]
    assert not problems, "\n".join(problems)
    neighbours = sum(len(valid) for valid in plan.by_topic.values())
    print(
        f"hostile: {sum(len(b) for b in sent.values())} bad values and {neighbours} valid "
        f"neighbours on {len(INPUTS)} topics; {len(expected)} dead letters checked"
    )

    # 3. Every record is accounted for: consumed, or dead-lettered, by each of its consumers.
    await wait_accounted(topics, running)
    await assert_all_ready(running)


async def test_fuzzed_events_are_consumed_or_dead_lettered(
    running: Running, topics: Topics, sender: Sender
) -> None:
    rng = random.Random(FUZZ_SEED)
    began = time.monotonic()
    fuzzed = 0
    while time.monotonic() - began < FUZZ_SECONDS and fuzzed < FUZZ_EVENTS:
        batch = []
        for _ in range(50):
            topic = rng.choice(INPUTS)
            batch.append(
                sender.client.send(
                    topic,
                    mutated(rng, topic),
                    key=rng.choice([b"deal-42", b"cr-1001", b"USD", b"cmp-3", None]),
                    headers=[("fuzz", str(fuzzed).encode())],
                )
            )
            fuzzed += 1
        for delivery in await asyncio.gather(*batch):
            await delivery
    print(f"fuzz: {fuzzed} mutated events in {time.monotonic() - began:.1f}s (seed {FUZZ_SEED})")

    # A valid request after the fuzz is still answered, once the backlog before it is worked
    # through (each record consumed or dead-lettered).
    request = example(EventType.MATCH_REQUESTED)
    request_id = new_id("req-after-fuzz")
    request["data"]["request_id"] = request_id
    await sender.send(
        Topic.BRAND_MATCH_REQUESTS, key_of(request), to_bytes(request), ("neighbour", "final")
    )
    await wait_accounted(topics, running)
    await topics.wait_for(
        lambda: any(
            e["data"]["request_id"] == request_id for e in topics.events(Topic.MATCH_SUGGESTIONS)
        ),
        f"match.suggested for {request_id} sent after {fuzzed} fuzzed events",
    )
    await wait_accounted(topics, running)
    dead = sum(
        1 for t in INPUTS for r in topics.dead_letters(t) if headers_of(r).get("fuzz") is not None
    )
    print(f"fuzz: {dead} dead letters of fuzzed events (one per consuming service)")
    assert dead > 0, "no fuzzed event was dead-lettered: the mutations did not reach the services"
    await assert_all_ready(running)


async def test_a_time_beyond_year_9999_in_utc_is_dead_lettered(
    running: Running, topics: Topics, sender: Sender
) -> None:
    bad = example(EventType.FX_RATES_PUBLISHED)
    bad["time"] = "9999-12-31T23:00:00-05:00"
    after = example(EventType.FX_RATES_PUBLISHED)
    await sender.send(Topic.FX_RATES, b"USD", to_bytes(bad), ("hostile", "past year 9999"))
    before = await consumed_counts(running)
    await sender.send(Topic.FX_RATES, b"USD", to_bytes(after), ("neighbour", "after"))

    # The neighbour is behind the bad value in the same partition: once every consumer has
    # counted it, the bad value was dead-lettered already if it ever will be.
    async def neighbour_consumed() -> bool:
        now = await consumed_counts(running)
        return all(
            now.get((s, Topic.FX_RATES), 0) > before.get((s, Topic.FX_RATES), 0)
            for s in consumers_of(Topic.FX_RATES)
        )

    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not await neighbour_consumed():
        if loop.time() > deadline:
            pytest.fail(
                f"the valid fx.rates event after the bad one was not consumed\n{running.tail()}"
            )
        await asyncio.sleep(0.2)
    expected = set(consumers_of(Topic.FX_RATES))

    def dead_lettered_by() -> set[str | None]:
        return {
            headers_of(r).get("dlq.service")
            for r in topics.dead_letters(Topic.FX_RATES)
            if headers_of(r).get("hostile") == "past year 9999"
        }

    # Completeness is checked on a fresh read: the embedded broker's reader can skip records.
    await topics.wait_for(
        lambda: dead_lettered_by() == expected or None,
        "the time past year 9999 dead-lettered by every consumer of fx.rates",
        lambda: f"dead-lettered by {dead_lettered_by()}",
        reread=True,
    )
    await assert_all_ready(running)


# The DLQ read that skipped a record ---------------------------------------------------------

FOLLOW_ROUNDS: Final = 40


@pytest.mark.skipif(
    not APACHE_KAFKA,
    reason="the embedded broker's reader can skip DLQ records that a fresh read finds "
    "(docs/apache-kafka.md); this check is for Apache Kafka",
)
async def test_a_reader_following_the_dead_letter_topics_misses_none(
    servers: InfraUrls, running: Running, topics: Topics, sender: Sender
) -> None:
    """The check that found the embedded broker's reader skipping a record, on Apache Kafka:
    a reader that follows the DLQs while three services append to them at once, never reading
    again, must end with every record a fresh read finds."""
    follower = Topics(servers.kafka_bootstrap_servers, running)
    await follower.start()
    try:
        for round_ in range(FOLLOW_ROUNDS):
            for topic in INPUTS:
                await sender.send(topic, b"deal-42", b"{not json", ("hostile", f"follow {round_}"))
        await wait_accounted(topics, running)  # every copy dead-lettered, on a fresh read

        def dlq_records(reader: Topics) -> set[tuple[str, int]]:
            return {(r.topic, r.offset) for t in INPUTS for r in reader.dead_letters(t)}

        wanted = dlq_records(topics)
        await follower.wait_for(
            lambda: wanted <= dlq_records(follower),
            f"the following reader has the {len(wanted)} DLQ records a fresh read has",
            lambda: f"missing: {sorted(wanted - dlq_records(follower))[:10]}",
        )
    finally:
        await follower.stop()
    print(f"dlq follow: {len(wanted)} DLQ records, none missed by the following reader")
