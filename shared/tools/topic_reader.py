"""Reading whole topics from the beginning, without a consumer group, in the background."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord

from shared.runtime.kafka import partitions_of


class TopicReader:
    """Reads every partition of some topics from the beginning, without a consumer group,
    until `stop`, handing each fetched run of records to `take`.

    A subclass creates `_consumer` (unstarted) and defines `take`.
    """

    _consumer: AIOKafkaConsumer
    _task: asyncio.Task[None] | None = None

    async def read_from_beginning(self, topics: Sequence[str]) -> set[str]:
        """Start reading every partition of `topics`; the topics that have partitions (a
        topic that does not exist yet is not read)."""
        await self._consumer.start()
        partitions = await partitions_of(self._consumer, topics)
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        self._task = asyncio.create_task(self._read())
        return {tp.topic for tp in partitions}

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._consumer.stop()

    def take(self, records: list[ConsumerRecord[bytes, bytes]]) -> None:
        raise NotImplementedError

    async def _read(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=50)
            for records in batch.values():
                self.take(records)
