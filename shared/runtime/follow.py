"""Every partition of some topics, read by each replica of a service on its own.

A consumer group splits a topic between a service's replicas, which is what a service wants
for work done once (answering a request). State every replica keeps in memory (matching's
creator index) needs every event instead: a `TopicFollower` assigns itself all partitions of
its topics, outside any group, starting where they end when it starts (what came before is
in the service's database, which the replica loads after `start`).

The events go through the service's failure policy (`SafeConsumer`: decoding, trust, retries,
bisecting) except the dead-letter topic and the metrics: the service's group consumer reads
the same records, counts them and dead-letters what is bad once; here it is only skipped.
`catch_up` waits until everything written before the call is applied, so a replica can see
every event published before the one it is about to answer. It asks for the topics' ends on a
connection of its own: the broker answers one request per connection at a time, so on the
reader's connection the question would queue behind the pending fetch, which the broker holds
for up to the fetch wait when there is nothing new; every request would pay that wait.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer
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
    ends_client,
)
from shared.runtime.positions import AssignedReader

log = structlog.get_logger(__name__)


class FollowerBehind(TransientError):
    """The follower did not reach the topics' ends in time (retried like any transient error)."""


class _Skipped(DeadLetters):
    """What the group consumer dead-letters, a follower only logs."""

    def __init__(self, retry: RetryPolicy) -> None:
        self._retry = retry

    async def send(self, delivery: Delivery, error_class: str, message: str) -> None:
        log.info("followed event skipped", source=str(delivery), error_class=error_class)


class TopicFollower(AssignedReader):
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
        consumer = AIOKafkaConsumer(
            **client_options(bootstrap, security),
            client_id=client_id,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            max_poll_records=max_records,
        )
        super().__init__(consumer, ends_client(bootstrap, security, client_id=f"{client_id}-ends"))
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

    async def start(self) -> None:
        """Assign every partition at its current end: call before loading the database."""
        partitions = await self._start_assigned(self._topics)
        for tp, end in (await self._ends.end_offsets(partitions)).items():
            self._consumer.seek(tp, end)
            self._positions.applied[tp] = end

    async def run(self) -> None:
        """Apply events as they come, until cancelled (which stops the consumers). The only
        reader: `catch_up` waits for it."""
        try:
            while True:
                await self._read_once(timeout_ms=200)
        except asyncio.CancelledError:
            await self.stop()
            raise

    async def catch_up(self, seconds: float = 30.0) -> None:
        """Wait until every event written to the topics before this call is applied (by
        `run`, which must be running)."""
        ends = await self._ends.end_offsets(list(self._positions.applied))
        try:
            await self._positions.wait_for(ends, seconds)
        except TimeoutError:
            raise FollowerBehind(f"{', '.join(self._topics)} not read to the end") from None

    async def _apply(self, records: list[ConsumerRecord[Any, Any]]) -> None:
        deliveries = [
            Delivery(r.topic, r.partition, r.offset, r.key, r.value or b"", tuple(r.headers or ()))
            for r in records
        ]
        await self._policy.handle_batch(deliveries, self._handler)
