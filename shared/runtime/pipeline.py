"""Batch consumption that reads and decodes the next batch while the previous one is applied.

`subscribe_event_batches` (FastStream) runs one step at a time: fetch, decode, apply, commit,
then fetch again. For a service whose batch is one database transaction, the process then sits
idle while PostgreSQL works, and PostgreSQL while the process decodes. `PipelinedBatches`
overlaps the two: batch N+1 is fetched and decoded while batch N's transaction runs, and
batch N's offsets are committed to Kafka while batch N+1's transaction runs.

What does not change (docs/architecture.md §2):

- batches are applied one after another, in partition order, each through
  `SafeConsumer.apply` (retries, bisection, dead letters);
- a batch's offsets, and only its own, are committed after its handler returned, i.e. after
  its database commit, and in batch order;
- on a rebalance, the batch being applied finishes and is committed before the partitions are
  given up, and a batch being read is dropped: the partitions this member keeps are read
  again from their committed offsets, the others by their new holder. Records of a dropped
  batch that went to the DLQ may be dead-lettered twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiokafka.errors
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.structs import OffsetAndMetadata
from faststream.security import BaseSecurity

from shared.contract.events import CloudEvent
from shared.runtime.kafka import (
    FETCH_MAX_WAIT_MS,
    REBALANCE_TIMEOUT_MS,
    BatchHandler,
    Delivery,
    SafeConsumer,
    client_options,
    count_from_zero,
)
from shared.runtime.observability import HANDLER_SECONDS

log = structlog.get_logger(__name__)

# Enough for a full batch from a handful of partitions in one fetch; aiokafka's 1 MiB default
# caps a partition at about 1,500 events per fetch.
MAX_PARTITION_FETCH_BYTES = 8 * 1024 * 1024
# Records decoded between two yields to the event loop: decoding runs on the same thread as
# the transaction in flight, which should not wait long for its next statement to be sent.
DECODE_CHUNK = 500


Events = Sequence[tuple[CloudEvent[Any], Delivery]]
Prepare = Callable[[Events], BatchHandler]


class PipelinedBatches:
    """One consumer-group member over `topics`, applying batches through `handler`.

    With `prepare`, each complete batch is first given to `prepare` (while the previous one is
    still applied), and the handler it returns applies the batch: work that needs no database
    can be done ahead. That handler is also called on parts of the batch if it fails, and
    must then work them out from scratch.

    `run` is a background loop for `shared.runtime.service`; `kafka` is its aiokafka consumer
    while it runs (readiness and lag read it), None before.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        topics: Sequence[str],
        *,
        group_id: str,
        handler: BatchHandler,
        consumer: SafeConsumer,
        prepare: Prepare | None = None,
        security: BaseSecurity | None = None,
        client_id: str | None = None,
        max_records: int = 500,
        batch_timeout_ms: int = 50,
        fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
        group_instance_id: str | None = None,
    ) -> None:
        count_from_zero(topics, consumer)
        self._bootstrap_servers = bootstrap_servers
        self._group_instance_id = group_instance_id
        self._security = security
        self._topics = list(topics)
        self._group_id = group_id
        self._handler = handler
        self._prepare = prepare
        self._consumer = consumer
        self._client_id = client_id
        self._max_records = max_records
        self._batch_timeout_ms = batch_timeout_ms
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._applying: asyncio.Task[None] | None = None
        # The offsets of the batches in the database, committed while the next batch is
        # applied: one commit at a time, each of the greatest offsets stored meanwhile.
        self._uncommitted: dict[TopicPartition, int] = {}
        self._uncommitted_batches: list[tuple[frozenset[str], float]] = []
        self._committing: asyncio.Task[None] | None = None
        self._rebalances = 0
        self.kafka: AIOKafkaConsumer | None = None

    @property
    def rebalances(self) -> int:
        """How many times this member's partitions were revoked."""
        return self._rebalances

    async def run(self) -> None:
        kafka = AIOKafkaConsumer(
            group_id=self._group_id,
            group_instance_id=self._group_instance_id,
            client_id=self._client_id or self._group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            max_partition_fetch_bytes=MAX_PARTITION_FETCH_BYTES,
            rebalance_timeout_ms=REBALANCE_TIMEOUT_MS,
            **client_options(self._bootstrap_servers, self._security),
        )
        kafka.subscribe(self._topics, listener=_FinishBeforeRevoke(self))
        try:
            await kafka.start()  # inside: a stop during the first join still leaves the group
            self.kafka = kafka
            while True:
                await self._next_batch(kafka)
        finally:
            self.kafka = None
            tasks = [t for t in (self._applying, self._committing) if t is not None]
            self._applying = self._committing = None
            self._uncommitted, self._uncommitted_batches = {}, []
            # Stopping: a transaction cut short rolls back, and the records of a batch whose
            # offsets were not committed come again (the inbox skips what was applied).
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await kafka.stop()

    async def _next_batch(self, kafka: AIOKafkaConsumer) -> None:
        """Read and decode records until the batch is full or the previous one is applied,
        then start applying it."""
        rebalances = self._rebalances
        batch = _Batch()
        while True:
            fetched = await kafka.getmany(
                timeout_ms=self._batch_timeout_ms,
                max_records=min(DECODE_CHUNK, self._max_records - batch.size),
            )
            if fetched:
                # The CPU-bound part, done while the previous batch is in PostgreSQL.
                await batch.add(fetched, self._consumer)
            applying = self._applying
            idle = applying is None or applying.done()
            if batch.size >= self._max_records or (batch.size and idle):
                break
        if self._prepare is not None and batch.events:
            try:
                batch.handler = self._prepare(batch.events)
            except Exception:
                # Work done ahead is an optimisation: the plain handler, under the failure
                # policy, deals with whatever made it fail.
                log.exception("preparing a batch failed; applying it without", group=self._group_id)
        await self._finish_storing()
        if self._rebalances != rebalances:
            # Partly read under an assignment that has ended: drop it all, and read again from
            # the committed offsets what is still ours (the rest, whoever holds it now reads).
            await self.finish_applying()
            await _rewind(kafka, set(batch.offsets) & kafka.assignment())
            return
        self._applying = asyncio.create_task(self._apply(kafka, batch))

    async def _apply(self, kafka: AIOKafkaConsumer, batch: _Batch) -> None:
        started = time.perf_counter()
        if batch.events:
            await self._consumer.apply(batch.events, batch.handler or self._handler)
        # In the database: its offsets go to Kafka while the next batch is applied.
        self._commit_later(kafka, batch.offsets, started)

    def _commit_later(
        self, kafka: AIOKafkaConsumer, offsets: Mapping[TopicPartition, int], started: float
    ) -> None:
        committing = self._committing
        if committing is not None and committing.done() and not committing.cancelled():
            committing.result()  # an unexpected failure of the last commit surfaces here
        for tp, offset in offsets.items():
            self._uncommitted[tp] = max(offset, self._uncommitted.get(tp, offset))
        self._uncommitted_batches.append((frozenset(tp.topic for tp in offsets), started))
        if committing is None or committing.done():
            self._committing = asyncio.create_task(self._commit_uncommitted(kafka))

    async def _commit_uncommitted(self, kafka: AIOKafkaConsumer) -> None:
        """Commit what was stored until nothing is left: one commit in flight at a time, so
        an offset never overtakes a later one."""
        while self._uncommitted:
            offsets, self._uncommitted = self._uncommitted, {}
            batches, self._uncommitted_batches = self._uncommitted_batches, []
            try:
                await kafka.commit({tp: OffsetAndMetadata(o, "") for tp, o in offsets.items()})
            except aiokafka.errors.KafkaError as error:
                # The batches are in the database; if these records come again, the inbox
                # skips them.
                log.warning("offset commit failed", group=self._group_id, error=repr(error))
            done = time.perf_counter()
            for topics, started in batches:
                for topic in topics:
                    HANDLER_SECONDS.labels(topic).observe(done - started)

    async def _finish_storing(self) -> None:
        """Wait until the batch being applied is in the database."""
        applying = self._applying
        if applying is not None:
            await asyncio.shield(applying)  # a failure stays, for the reading loop to raise
            if self._applying is applying:
                self._applying = None

    async def finish_applying(self) -> None:
        """Wait until the batch being applied is in the database and the offsets of every
        batch stored are committed (also when applying failed: those before it are in)."""
        try:
            await self._finish_storing()
        finally:
            committing = self._committing
            if committing is not None:
                await asyncio.shield(committing)


async def _rewind(kafka: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
    for tp in partitions:
        committed = await kafka.committed(tp)
        # A partition lost meanwhile (another rebalance) got a fresh position with its new
        # holder, as one newly assigned to us does here.
        try:
            if committed is None:
                await kafka.seek_to_beginning(tp)
            else:
                kafka.seek(tp, committed)
        except aiokafka.errors.IllegalStateError:
            continue


class _Batch:
    """Decoded events read so far, and the offset to commit per partition once applied."""

    def __init__(self) -> None:
        self.size = 0
        self.events: list[tuple[CloudEvent[Any], Delivery]] = []
        self.offsets: dict[TopicPartition, int] = {}
        self.handler: BatchHandler | None = None

    async def add(
        self, fetched: dict[TopicPartition, list[ConsumerRecord[Any, Any]]], consumer: SafeConsumer
    ) -> None:
        deliveries = [Delivery.of_record(r) for records in fetched.values() for r in records]
        self.size += len(deliveries)
        self.events += await consumer.decode(deliveries)
        for tp, records in fetched.items():
            self.offsets[tp] = records[-1].offset + 1


class _FinishBeforeRevoke(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: PipelinedBatches) -> None:
        self._owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        self._owner._rebalances += 1
        try:
            await self._owner.finish_applying()
        except Exception:
            # Its records are not committed: whoever holds them next applies them again (the
            # inbox skips what was applied). The reading loop meets the error and restarts.
            log.exception("the batch in flight failed before the partitions were revoked")

    async def on_partitions_assigned(self, assigned: Any) -> None:
        pass
