"""How far a reader outside any consumer group has applied its partitions, and waiting for it.

The topic follower (`shared.runtime.follow`) and the signing-key reader (`shared.runtime.trust`)
each read every partition of their topics themselves; a caller that must see everything
written before a moment asks for the topics' ends and waits until the reader has applied
records up to them.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, TopicPartition


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
