"""Raw Kafka I/O for tests: send and read what an outside producer or consumer would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, RecordMetadata

from shared.contract.events import CloudEvent, decode, encode, event_key, spec_for_type
from shared.tools.topic_reader import TopicReader as BackgroundTopicReader


async def produce(
    bootstrap: str, messages: Sequence[tuple[str, bytes | None, bytes]]
) -> list[RecordMetadata]:
    """Send raw (topic, key, value) messages in order, all at once; returns where each landed.

    Acknowledged by every in-sync replica (acks=all, Kafka's producers' default), as the
    tests' "caught up" checks need: on a replicated topic a record the leader alone has is
    not below the high watermark yet, so the partition's end does not count it and no reader
    can see it."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks="all")
    await producer.start()
    try:
        sent = [await producer.send(topic, value, key=key) for topic, key, value in messages]
        return list(await asyncio.gather(*sent))
    finally:
        await producer.stop()


async def produce_events(bootstrap: str, events: Sequence[CloudEvent[Any]]) -> list[RecordMetadata]:
    """Send events as an outside producer would: on their topic, keyed by their entity."""
    return await produce(
        bootstrap, [(spec_for_type(e.type).topic, event_key(e), encode(e)) for e in events]
    )


def consumer_from_start(bootstrap: str, topic: str) -> AIOKafkaConsumer:
    """A consumer of `topic` (not started yet) in no group: it reads from the first record on
    and commits nothing."""
    return AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )


async def read_topic(bootstrap: str, topic: str) -> list[CloudEvent[Any]]:
    """Every event currently on `topic`, decoded, in partition order."""
    consumer = consumer_from_start(bootstrap, topic)
    await consumer.start()
    try:
        events: list[CloudEvent[Any]] = []
        while True:
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                return events
            for records in batch.values():
                events.extend(decode(topic, r.value or b"") for r in records)
    finally:
        await consumer.stop()


async def read_until(
    bootstrap: str,
    topic: str,
    wanted: Callable[[CloudEvent[Any]], bool],
    *,
    count: int,
    seconds: float = 30.0,
    linger: float = 0.0,
) -> list[CloudEvent[Any]]:
    """The events on `topic` (from its start) that `wanted` picks, in partition order, read
    until `count` of them arrived or `seconds` passed; then, with `linger`, one more read that
    long after, so that a duplicate on its way shows up too."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    found: list[CloudEvent[Any]] = []

    async def read_once() -> None:
        for records in (await consumer.getmany(timeout_ms=200)).values():
            events = (decode(topic, record.value or b"") for record in records)
            found.extend(e for e in events if wanted(e))

    try:
        deadline = asyncio.get_running_loop().time() + seconds
        while len(found) < count and asyncio.get_running_loop().time() < deadline:
            await read_once()
        if linger and len(found) >= count:
            await asyncio.sleep(linger)
            await read_once()
    finally:
        await consumer.stop()
    return found


class TopicReader(BackgroundTopicReader):
    """Reads whole topics from the beginning, without a consumer group, in the background.

    A subclass creates `_consumer` (unstarted) and sets `records` to empty; every record read
    is appended to `records` until `stop`.
    """

    records: list[ConsumerRecord[bytes, bytes]]

    async def read_from_beginning(self, topics: Sequence[str]) -> set[str]:
        """Start reading every partition of `topics`, each of which must already exist."""
        found = await super().read_from_beginning(topics)
        missing = set(topics) - found
        assert not missing, f"topics the services should have created are missing: {missing}"
        return found

    def take(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        self.records.extend(records)


class RecordingBroker:
    """Stands in for a FastStream broker where only `publish` is used: keeps each call's
    value and options."""

    def __init__(self) -> None:
        self.published: list[dict[str, Any]] = []

    async def publish(self, value: bytes, **options: Any) -> None:
        self.published.append({"value": value, **options})
