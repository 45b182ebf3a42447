"""Producing input events and watching `payouts.status` on the real broker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from shared.contract.events import CloudEvent, Topic, decode
from tests.support.kafka_io import consumer_from_start, produce_events
from tests.support.waiting import eventually


class StatusWatcher:
    """Collects every `payouts.status` event (from the beginning) in the background."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self.events: list[CloudEvent[Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> StatusWatcher:
        consumer = consumer_from_start(self._bootstrap, Topic.PAYOUTS_STATUS)
        await consumer.start()
        self._task = asyncio.create_task(self._collect(consumer))
        return self

    async def _collect(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    for r in records:
                        self.events.append(decode(r.topic, r.value or b""))
                if batch:
                    self._changed.set()
        finally:
            await consumer.stop()

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    def of(self, deal_ids: set[str]) -> list[CloudEvent[Any]]:
        return [e for e in self.events if e.data.deal_id in deal_ids]

    async def wait_for(
        self, check: Callable[[], bool], *, seconds: float = 30.0, what: str = "condition"
    ) -> None:
        deadline = asyncio.get_running_loop().time() + seconds
        while not check():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise AssertionError(f"{what} not met within {seconds}s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))


def types_of(events: list[CloudEvent[Any]]) -> list[str]:
    return [e.type for e in events]


async def applied_first(bootstrap: str, pool: asyncpg.Pool, *events: CloudEvent[Any]) -> None:
    """Produce `events` (a brand's funding, a creator's account) and wait until payouts has
    applied every one: what a test needs before the events whose outcome it follows exactly,
    since events on different topics are consumed in no particular order."""
    await produce_events(bootstrap, list(events))

    async def applied() -> bool:
        count = await pool.fetchval(
            "SELECT count(*) FROM processed_events WHERE event_id = ANY($1::text[])",
            [e.id for e in events],
        )
        return bool(count == len(events))

    await eventually(applied, what="the events applied")
