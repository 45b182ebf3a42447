"""Driving the tracking service through the real broker in tests."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from services.tracking.app import INPUT_TOPICS
from shared.contract.events import CloudEvent, decode, encode, event_key, spec_for_type
from shared.runtime.service import ServiceRuntime


async def publish(bootstrap: str, events: Sequence[CloudEvent[Any]]) -> None:
    """Send events as an outside producer would: raw bytes, keyed by their entity."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        sent = [
            await producer.send(spec_for_type(e.type).topic, encode(e), key=event_key(e))
            for e in events
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def read_topic(bootstrap: str, topic: str) -> list[CloudEvent[Any]]:
    """Every event currently on `topic`, decoded, in partition order."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
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


async def caught_up(runtime: ServiceRuntime) -> bool:
    """True when the service's consumer holds every input partition and has committed its
    end offset (everything produced so far was applied)."""
    assert runtime.resources is not None
    [consumer] = runtime.resources.kafka_consumers()
    if consumer is None:
        return False
    assigned = consumer.assignment()
    if {tp.topic for tp in assigned} != set(INPUT_TOPICS):
        return False
    ends = await consumer.end_offsets(list(assigned))
    for tp, end in ends.items():
        committed = await consumer.committed(tp)
        if end > 0 and (committed is None or committed < end):
            return False
    return True


async def table(pool: asyncpg.Pool, sql: str, *args: object) -> list[dict[str, Any]]:
    return [dict(row) for row in await pool.fetch(sql, *args)]
