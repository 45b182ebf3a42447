"""The infrastructure smoke flow: Kafka → FastStream → PostgreSQL → Redis, and the DLQ.

One valid event of every v1 type and two broken messages go in through a plain Kafka producer;
the consumer stores each valid event in `processed_events` (deduplicated on its source and id, in
one transaction) and counts it in Redis; the broken ones end up in their topic's DLQ.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity

from shared.contract.events import (
    EVENT_SPECS,
    TOPICS,
    CloudEvent,
    Topic,
    dlq_topic,
    encode,
    event_key,
)
from shared.contract.events.examples import valid_example
from shared.runtime.config import Settings
from shared.runtime.db import ServiceSchema, create_pool, migrate
from shared.runtime.kafka import (
    DLQ_HEADER_PREFIX,
    DeadLetters,
    Delivery,
    RetryPolicy,
    SafeConsumer,
    client_options,
    ensure_topics,
    kafka_security,
    make_broker,
    partitions_of,
    subscribe_events,
)
from shared.runtime.server_urls import InfraUrls
from shared.tools.infra.process import InfraError

# The smoke test's own schema: the runtime's tables only, touching no service's data.
SMOKE = ServiceSchema("smoke")


def smoke_source(run_id: str) -> str:
    return f"creatorflow-smoke/{run_id}"


def counter_key(run_id: str) -> str:
    return f"smoke:{run_id}:consumed"


def subscribe_smoke_consumer(
    broker: KafkaBroker,
    pool: asyncpg.Pool,
    cache: redis.Redis,
    *,
    run_id: str,
    retry: RetryPolicy,
) -> None:
    """Store and count this run's events from every contract topic (others are skipped)."""
    name = f"infra-smoke-{run_id}"
    consumer = SafeConsumer(DeadLetters(broker, service=name, retry=retry), retry)
    source = smoke_source(run_id)

    async def store(event: CloudEvent[Any], delivery: Delivery) -> None:
        if event.source != source:
            return
        async with pool.acquire() as conn, conn.transaction():
            first_time = await conn.fetchval(
                """INSERT INTO processed_events
                       (consumer, source, event_id, event_type, topic, kafka_partition,
                        kafka_offset)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT DO NOTHING RETURNING true""",
                name,
                event.source,
                event.id,
                event.type,
                delivery.topic,
                delivery.partition,
                delivery.offset,
            )
        if first_time:
            await cache.hincrby(counter_key(run_id), event.type, 1)

    subscribe_events(broker, TOPICS, group_id=name, handler=store, consumer=consumer)


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    key: bytes | None
    value: bytes
    headers: dict[str, str]

    @property
    def reason(self) -> str:
        return self.headers.get(f"{DLQ_HEADER_PREFIX}error.message", "")

    @property
    def error_class(self) -> str:
        return self.headers.get(f"{DLQ_HEADER_PREFIX}error.class", "")


async def read_dead_letters(
    bootstrap: str,
    topics: list[str],
    *,
    service: str | None = None,
    security: BaseSecurity | None = None,
    seconds: float = 30.0,
) -> list[DeadLetter]:
    """Everything in the given DLQ topics when called (optionally only one service's): each
    partition read up to the end it had then. A pause in the fetches (a loaded machine) does
    not end the read early; a read that has not reached those ends in `seconds` raises
    TimeoutError."""
    consumer = AIOKafkaConsumer(
        **client_options(bootstrap, security),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, topics)
        if not partitions:
            return []
        ends = await consumer.end_offsets(partitions)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        letters: list[DeadLetter] = []
        deadline = time.monotonic() + seconds
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"dead letters of {topics} not read to their end")
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    headers = {k: v.decode("utf-8", "replace") for k, v in record.headers or ()}
                    if service is None or headers.get(f"{DLQ_HEADER_PREFIX}service") == service:
                        letters.append(
                            DeadLetter(record.topic, record.key, record.value or b"", headers)
                        )
        return letters
    finally:
        await consumer.stop()


# Two messages the contract must refuse: not JSON at all, and a profile with negative followers.
def broken_messages(run_id: str) -> list[tuple[str, bytes, bytes]]:
    profile = valid_example("creator.profile.upserted")
    data = profile.data.model_dump(mode="json") | {"followers": -5}
    invalid_profile = profile.model_dump(mode="json") | {
        "id": f"{run_id}-negative-followers",
        "source": smoke_source(run_id),
        "data": data,
    }
    return [
        (Topic.BRAND_MATCH_REQUESTS, b"campaign-1", b'{"specversion": "1.0", "id": oops'),
        (Topic.CREATOR_PROFILES, b"creator-1", json.dumps(invalid_profile).encode()),
    ]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass
class SmokeReport:
    run_id: str
    produced: dict[str, int] = field(default_factory=dict)
    consumed: dict[str, int] = field(default_factory=dict)
    stored: int = 0
    dead_letters: list[DeadLetter] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.consumed == self.produced and self.stored == sum(self.produced.values())


async def run_smoke(
    urls: InfraUrls,
    settings: Settings,
    *,
    run_id: str,
    step: Callable[[str], None] = lambda _: None,
    wait_seconds: float = 60.0,
) -> SmokeReport:
    began = time.monotonic()
    report = SmokeReport(run_id)
    step("creating topics")
    security = kafka_security(settings)
    await ensure_topics(
        urls.kafka_bootstrap_servers,
        partitions=settings.kafka_partitions,
        replication_factor=settings.kafka_replication_factor,
        security=security,
    )
    step("migrating the database")
    if urls.redis_url is None:
        raise InfraError("the smoke test checks Redis too: set REDIS_URL")
    pool = await create_pool(urls.database_url, schema=SMOKE.name)
    cache = redis.Redis.from_url(urls.redis_url)
    broker = make_broker(settings, urls.kafka_bootstrap_servers, logger=None)
    try:
        await migrate(pool, SMOKE)
        subscribe_smoke_consumer(
            broker, pool, cache, run_id=run_id, retry=RetryPolicy.from_settings(settings)
        )
        step("starting the consumer")
        await broker.start()
        step("publishing one event of every type with a plain Kafka producer")
        producer = AIOKafkaProducer(**client_options(urls.kafka_bootstrap_servers, security))
        await producer.start()
        try:
            for spec in EVENT_SPECS:
                event = valid_example(spec.type).model_copy(update={"source": smoke_source(run_id)})
                await producer.send_and_wait(spec.topic, encode(event), key=event_key(event))
                report.produced[spec.type] = report.produced.get(spec.type, 0) + 1
            broken = broken_messages(run_id)
            for topic, key, value in broken:
                await producer.send_and_wait(topic, value, key=key)
        finally:
            await producer.stop()
        step("waiting for every event to be stored, counted or dead-lettered")
        service = f"infra-smoke-{run_id}"
        deadline = time.monotonic() + wait_seconds
        while time.monotonic() < deadline:
            counts = await cache.hgetall(counter_key(run_id))
            report.consumed = {_text(k): int(v) for k, v in counts.items()}
            if report.consumed == report.produced:
                break
            await asyncio.sleep(0.1)
        dlqs = sorted({dlq_topic(topic) for topic, _, _ in broken})
        while time.monotonic() < deadline:
            report.dead_letters = await read_dead_letters(
                urls.kafka_bootstrap_servers, dlqs, service=service, security=security
            )
            if len(report.dead_letters) >= len(broken):
                break
        report.stored = await pool.fetchval(
            "SELECT count(*) FROM processed_events WHERE consumer = $1", service
        )
    finally:
        await broker.stop()
        await cache.aclose()
        await pool.close()
    report.seconds = time.monotonic() - began
    return report
