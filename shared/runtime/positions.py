"""How far a reader outside any consumer group has applied its partitions, and waiting for it.

The topic follower (`shared.runtime.follow`) and the signing-key reader (`shared.runtime.trust`)
each read every partition of their topics themselves; a caller that must see everything
written before a moment asks for the topics' ends and waits until the reader has applied
records up to them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from shared.runtime.kafka import partitions_of, start_both


class AppliedPositions:
    """Per partition, the position up to which records are applied."""

    def __init__(self) -> None:
        self.applied: dict[TopicPartition, int] = {}
        self._progress = asyncio.Condition()

    def reached(self, ends: dict[TopicPartition, int]) -> bool:
        return all(self.applied[tp] >= end for tp, end in ends.items())

    async def wait_for(self, ends: dict[TopicPartition, int], seconds: float) -> None:
        """Until records are applied up to `ends`; TimeoutError after `seconds`."""
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: self.reached(ends)), seconds)

    async def read_by(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        """The consumer's positions, past what it just read (control records too): taken
        before the records read are applied, passed to `advance` once they are."""
        return {tp: await consumer.position(tp) for tp in self.applied}

    async def advance(self, reached: dict[TopicPartition, int]) -> None:
        if reached != self.applied:
            async with self._progress:
                self.applied.update(reached)
                self._progress.notify_all()


class AssignedReader:
    """A consumer that assigns itself every partition of its topics, its `ends_client` and the
    positions it has applied: the follower and the key reader start, read and stop alike."""

    def __init__(self, consumer: AIOKafkaConsumer, ends: AIOKafkaConsumer) -> None:
        self._consumer = consumer
        self._ends = ends
        self._positions = AppliedPositions()
        self._started = False

    async def _start_assigned(self, topics: Sequence[str]) -> list[TopicPartition]:
        """Start both clients and assign every partition of `topics`; returns them."""
        await start_both(self._consumer, self._ends)
        self._started = True
        partitions = await partitions_of(self._consumer, topics)
        self._consumer.assign(partitions)
        return partitions

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._ends.stop()
            await self._consumer.stop()

    async def _read_once(self, *, timeout_ms: int) -> None:
        """Read what has come (waiting up to `timeout_ms`), apply it, then advance."""
        batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        reached = await self._positions.read_by(self._consumer)
        records = [r for rs in batch.values() for r in rs]
        if records:
            await self._apply(records)
        await self._positions.advance(reached)

    async def _apply(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        raise NotImplementedError
