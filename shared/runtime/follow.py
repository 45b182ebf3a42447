"""Every partition of some topics, read by each replica of a service on its own.

A consumer group splits a topic between a service's replicas, which is what a service wants
for work done once (answering a request). State every replica keeps in memory (matching's
creator index) needs every event instead: a `TopicFollower` assigns itself all partitions of
its topics, outside any group, starting where they end when it starts (what came before is
in the service's database, which the replica loads after `start`).

The events go through the service's failure policy (`SafeConsumer`: decoding, trust, retries,
bisecting) except the dead-letter topic and the metrics: the service's group consumer reads
the same records, counts them and dead-letters what is bad once; here it is only skipped.
`catch_up` reads and applies everything written before the call, so a replica can see every
event published before the one it is about to answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord
from faststream.security import BaseSecurity

from shared.contract.errors import TransientError
from shared.runtime.kafka import (
    BatchHandler,
    DeadLetters,
    Delivery,
    RetryPolicy,
    SafeConsumer,
    client_options,
    partitions_of,
)

log = structlog.get_logger(__name__)


class FollowerBehind(TransientError):
    """The follower did not reach the topics' ends in time (retried like any transient error)."""


class _Skipped(DeadLetters):
    """What the group consumer dead-letters, a follower only logs."""

    def __init__(self, retry: RetryPolicy) -> None:
        self._retry = retry

    async def send(self, delivery: Delivery, error_class: str, message: str) -> None:
        log.info("followed event skipped", source=str(delivery), error_class=error_class)


class TopicFollower:
    def __init__(
        self,
        bootstrap: str,
        security: BaseSecurity | None,
        topics: Sequence[str],
        *,
        handler: BatchHandler,
        policy: SafeConsumer,
        client_id: str,
        max_records: int = 500,
    ) -> None:
        self._consumer = AIOKafkaConsumer(
            **client_options(bootstrap, security),
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            max_poll_records=max_records,
        )
        self._topics = list(topics)
        self._handler = handler
        self._policy = SafeConsumer(
            _Skipped(policy.retry),
            policy.retry,
            max_bytes=policy.max_bytes,
            max_clock_skew=policy.max_clock_skew,
            clock=policy.clock,
            check_sender=policy.check_sender,
            counted=False,
        )
        self._lock = asyncio.Lock()
        self._started = False

    async def start(self) -> None:
        """Assign every partition at its current end: call before loading the database."""
        await self._consumer.start()
        self._started = True
        partitions = await partitions_of(self._consumer, self._topics)
        self._consumer.assign(partitions)
        for tp, end in (await self._consumer.end_offsets(partitions)).items():
            self._consumer.seek(tp, end)

    async def stop(self) -> None:
        if self._started:
            self._started = False
            await self._consumer.stop()

    async def run(self) -> None:
        """Apply events as they come, until cancelled (which stops the consumer)."""
        try:
            while True:
                async with self._lock:
                    await self._read_once(timeout_ms=200)
                await asyncio.sleep(0)  # let `catch_up` take the lock between batches
        except asyncio.CancelledError:
            await self.stop()
            raise

    async def catch_up(self, seconds: float = 30.0) -> None:
        """Read and apply every event written to the topics before this call."""
        async with self._lock:
            assigned = list(self._consumer.assignment())
            ends = await self._consumer.end_offsets(assigned)
            deadline = asyncio.get_running_loop().time() + seconds
            while await self._behind(ends):
                if asyncio.get_running_loop().time() > deadline:
                    raise FollowerBehind(f"{', '.join(self._topics)} not read to the end")
                await self._read_once(timeout_ms=100)

    async def _behind(self, ends: dict[TopicPartition, int]) -> bool:
        for tp, end in ends.items():
            position: int = await self._consumer.position(tp)
            if position < end:
                return True
        return False

    async def _read_once(self, *, timeout_ms: int) -> None:
        batch = await self._consumer.getmany(timeout_ms=timeout_ms)
        records: list[ConsumerRecord[Any, Any]] = [r for rs in batch.values() for r in rs]
        if records:
            deliveries = [
                Delivery(
                    r.topic, r.partition, r.offset, r.key, r.value or b"", tuple(r.headers or ())
                )
                for r in records
            ]
            await self._policy.handle_batch(deliveries, self._handler)
