"""Delivery rules on the real broker, database and cache (docs/architecture.md §2).

Events go in through a plain aiokafka producer as raw bytes, the way an outside producer
sends them, and come out through the project's FastStream consumers.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis

from shared.contract.errors import EventRejected
from shared.contract.events import EVENT_SPECS, CloudEvent, Topic, dlq_topic, encode, event_key
from shared.contract.events.examples import valid_example
from shared.runtime.config import Settings
from shared.runtime.kafka import (
    Delivery,
    make_broker,
    subscribe_event_batches,
    subscribe_events,
)
from shared.tools.infra import InfraUrls
from shared.tools.infra.smoke import (
    DeadLetter,
    counter_key,
    read_dead_letters,
    smoke_source,
    subscribe_smoke_consumer,
)
from tests.support.examples import fresh_example
from tests.support.fast_retry import FAST_RETRY, fast_consumer
from tests.support.kafka_io import produce
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def dead_letters_of(infra: InfraUrls, service: str, topics: list[str]) -> list[DeadLetter]:
    return await read_dead_letters(
        infra.kafka_bootstrap_servers, [dlq_topic(t) for t in topics], service=service
    )


async def test_every_v1_type_is_stored_and_counted_and_invalid_goes_to_dlq(
    infra: InfraUrls, topics: None, db_pool: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    run_id = uuid.uuid4().hex[:8]
    service = f"infra-smoke-{run_id}"
    valid = [
        valid_example(spec.type).model_copy(
            update={"id": f"{run_id}-{spec.type}", "source": smoke_source(run_id)}
        )
        for spec in EVENT_SPECS
    ]
    half = len(valid) // 2
    invalid = (
        Topic.CREATOR_PROFILES,
        f"creator-x-{run_id}".encode(),
        b'{"specversion": "1.0", "id": ',
    )
    messages: list[tuple[str, bytes | None, bytes]] = [
        (Topic(spec.topic), event_key(e), encode(e))
        for spec, e in zip(EVENT_SPECS, valid, strict=True)
    ]
    # The broken message sits between valid ones: the consumer must keep going past it.
    messages.insert(half, invalid)

    broker = make_broker(Settings(), infra.kafka_bootstrap_servers, logger=None)
    subscribe_smoke_consumer(broker, db_pool, redis_client, run_id=run_id, retry=FAST_RETRY)
    await broker.start()
    try:
        metadata = await produce(infra.kafka_bootstrap_servers, messages)

        async def all_counted() -> bool:
            counts = await redis_client.hgetall(counter_key(run_id))
            return sum(int(v) for v in counts.values()) == len(valid)

        await eventually(all_counted)
        # The consumer reads the topic from its start, so undecodable records other tests left
        # there are dead-lettered too: this test's is the one with its key.
        letters = [
            letter
            for letter in await dead_letters_of(infra, service, [Topic.CREATOR_PROFILES])
            if letter.key == invalid[1]
        ]
    finally:
        await broker.stop()

    counts = await redis_client.hgetall(counter_key(run_id))
    assert {k.decode(): int(v) for k, v in counts.items()} == {spec.type: 1 for spec in EVENT_SPECS}
    stored = await db_pool.fetch(
        "SELECT event_id, event_type, topic FROM processed_events WHERE consumer = $1", service
    )
    assert {(r["event_id"], r["event_type"], r["topic"]) for r in stored} == {
        (e.id, e.type, spec.topic) for spec, e in zip(EVENT_SPECS, valid, strict=True)
    }

    assert len(letters) == 1
    letter = letters[0]
    broken = metadata[half]
    assert letter.value == invalid[2]
    assert letter.key == invalid[1]
    assert letter.error_class == "InvalidJSON"
    assert "not valid JSON" in letter.reason
    assert letter.headers["dlq.source.topic"] == Topic.CREATOR_PROFILES
    assert letter.headers["dlq.source.partition"] == str(broken.partition)
    assert letter.headers["dlq.source.offset"] == str(broken.offset)
    # Sent with no content-type: the copy says what it holds, the bytes as they came.
    assert letter.headers["content-type"] == "application/octet-stream"


async def test_failure_policy_per_error_kind(
    infra: InfraUrls, topics: None, db_pool: asyncpg.Pool
) -> None:
    """Transient errors are retried until they pass; rule violations go to the DLQ at once;
    unexpected errors go there after the configured attempts; neighbours are unaffected."""
    source = f"policy-test/{uuid.uuid4().hex[:8]}"
    service = f"policy-{uuid.uuid4().hex[:8]}"
    creator = f"creator-{uuid.uuid4().hex[:8]}"
    kinds = ["ok-before", "transient", "rejected", "bug", "ok-after"]
    events = {
        kind: fresh_example(
            "creator.profile.upserted", source, creator_id=creator, handle=f"handle_{i}"
        )
        for i, kind in enumerate(kinds)
    }
    by_id = {e.id: kind for kind, e in events.items()}
    attempts: dict[str, int] = dict.fromkeys(kinds, 0)
    handled: list[str] = []

    async def handler(event: CloudEvent[Any], delivery: Delivery) -> None:
        if event.source != source:
            return
        kind = by_id[event.id]
        attempts[kind] += 1
        if kind == "transient" and attempts[kind] <= 3:
            raise ConnectionRefusedError("database unreachable")
        if kind == "rejected":
            raise EventRejected("data.followers: 12 likes per post for 50,000 followers")
        if kind == "bug":
            raise KeyError("missing")
        handled.append(kind)

    broker = make_broker(Settings(), infra.kafka_bootstrap_servers, logger=None)
    consumer = fast_consumer(broker, service)
    subscribe_events(
        broker, [Topic.CREATOR_PROFILES], group_id=service, handler=handler, consumer=consumer
    )
    await broker.start()
    try:
        # Same key, so one partition and a defined order.
        await produce(
            infra.kafka_bootstrap_servers,
            [(Topic.CREATOR_PROFILES, creator.encode(), encode(events[k])) for k in kinds],
        )

        async def done() -> bool:
            return "ok-after" in handled

        await eventually(done)
        letters = await dead_letters_of(infra, service, [Topic.CREATOR_PROFILES])
    finally:
        await broker.stop()

    assert handled == ["ok-before", "transient", "ok-after"]
    assert attempts == {"ok-before": 1, "transient": 4, "rejected": 1, "bug": 3, "ok-after": 1}
    reasons = {by_id[_id(letter)]: letter for letter in letters if source.encode() in letter.value}
    assert set(reasons) == {"rejected", "bug"}
    assert reasons["rejected"].error_class == "EventRejected"
    assert "50,000 followers" in reasons["rejected"].reason
    assert reasons["bug"].error_class == "KeyError"
    assert "after 3 attempts" in reasons["bug"].reason


def _id(letter: DeadLetter) -> str:
    return str(CloudEvent[Any].model_validate_json(letter.value).id)


async def test_batch_with_a_poison_event_dead_letters_only_that_one(
    infra: InfraUrls, topics: None
) -> None:
    source = f"batch-test/{uuid.uuid4().hex[:8]}"
    service = f"batch-{uuid.uuid4().hex[:8]}"
    events = [
        fresh_example("order.redeemed", source, order_id=f"order-{i}", promo_code="BATCH10")
        for i in range(30)
    ]
    poison = events[17].id
    handled: list[str] = []
    batch_sizes: list[int] = []

    async def handler(batch: Sequence[tuple[CloudEvent[Any], Delivery]]) -> None:
        mine = [e for e, _ in batch if e.source == source]
        if any(e.id == poison for e in mine):
            raise EventRejected(f"order {poison} breaks a rule")
        if mine:
            batch_sizes.append(len(mine))
        handled.extend(e.id for e in mine)

    broker = make_broker(Settings(), infra.kafka_bootstrap_servers, logger=None)
    consumer = fast_consumer(broker, service)
    subscribe_event_batches(
        broker,
        [Topic.TRACKING_ORDERS],
        group_id=service,
        handler=handler,
        consumer=consumer,
        max_records=50,
        batch_timeout_ms=200,
    )
    # Produced before the consumer starts, so the first fetch sees them all in one batch.
    await produce(
        infra.kafka_bootstrap_servers,
        [(Topic.TRACKING_ORDERS, b"BATCH10", encode(e)) for e in events],
    )
    await broker.start()
    try:

        async def done() -> bool:
            return len(handled) == len(events) - 1

        await eventually(done)
        letters = await dead_letters_of(infra, service, [Topic.TRACKING_ORDERS])
    finally:
        await broker.stop()

    # Every good event once, in the order produced (one key, one partition).
    assert handled == [e.id for e in events if e.id != poison]
    # Splitting in halves keeps most events in batches: a poison costs O(log n) extra calls.
    assert max(batch_sizes) > 1
    assert len(batch_sizes) < len(events) // 2
    letters = [letter for letter in letters if source.encode() in letter.value]
    assert [_id(letter) for letter in letters] == [poison]
    assert letters[0].error_class == "EventRejected"
