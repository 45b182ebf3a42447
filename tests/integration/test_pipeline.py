"""PipelinedBatches on the real broker: order, overlap, commits, dead letters, rebalances.

Each test reads its topic from the start with a group of its own and looks only at the events
of its own source (other tests may have left events on the same topics).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.contract.events import (
    CloudEvent,
    Topic,
    dlq_topic,
    encode,
    spec_for_type,
)
from shared.runtime.config import Settings
from shared.runtime.kafka import (
    BatchHandler,
    DeadLetters,
    Delivery,
    SafeConsumer,
    make_broker,
)
from shared.runtime.pipeline import PipelinedBatches, Prepare
from shared.tools.infra import InfraUrls
from shared.tools.infra.smoke import read_dead_letters
from tests.support.examples import fresh_example
from tests.support.fast_retry import FAST_RETRY
from tests.support.kafka_io import produce, produce_events
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Batch = Sequence[tuple[CloudEvent[Any], Delivery]]


async def wait_for(event: asyncio.Event, seconds: float = 30.0) -> None:
    try:
        await asyncio.wait_for(event.wait(), seconds)
    except TimeoutError:
        raise AssertionError(f"not set within {seconds}s") from None


def example(event_type: str, source: str, key: str) -> CloudEvent[Any]:
    """A valid event of `event_type` from `source` with its key field set to `key`."""
    return fresh_example(event_type, source, **{spec_for_type(event_type).key_field: key})


def own_names(test: str) -> tuple[str, str, str]:
    """A fresh run id, and the event source and consumer group of one run of `test`: the tests
    share the topics, and each handles only the events of its own source."""
    run = uuid.uuid4().hex[:8]
    return run, f"pipeline-{test}/{run}", f"pipeline-{test}-{run}"


@dataclass
class Trace:
    """What happened, in the order it happened (one event loop, so a total order)."""

    entries: list[tuple[Any, ...]] = field(default_factory=list)

    def add(self, *entry: Any) -> int:
        self.entries.append(entry)
        return len(self.entries) - 1


class TracedConsumer(SafeConsumer):
    """A SafeConsumer noting each decode call (the pipeline's read side) in a trace."""

    def __init__(self, trace: Trace, member: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.trace = trace
        self.member = member

    async def decode(
        self, deliveries: Sequence[Delivery]
    ) -> list[tuple[CloudEvent[Any], Delivery]]:
        self.trace.add("decode", self.member, tuple((d.partition, d.offset) for d in deliveries))
        return await super().decode(deliveries)


@asynccontextmanager
async def running(
    infra: InfraUrls,
    topic: str,
    *,
    group_id: str,
    handler: BatchHandler,
    trace: Trace | None = None,
    member: str = "a",
    max_records: int = 500,
    prepare: Prepare | None = None,
) -> AsyncIterator[tuple[PipelinedBatches, asyncio.Task[None]]]:
    """A PipelinedBatches running in the background; cancelled (a stop) on exit."""
    broker = make_broker(Settings(), infra.kafka_bootstrap_servers, logger=None)
    await broker.start()
    dead_letters = DeadLetters(broker, service=group_id, retry=FAST_RETRY)
    consumer = TracedConsumer(trace or Trace(), member, dead_letters, FAST_RETRY)
    pipeline = PipelinedBatches(
        infra.kafka_bootstrap_servers,
        [topic],
        group_id=group_id,
        handler=handler,
        consumer=consumer,
        client_id=f"{group_id}-{member}",
        max_records=max_records,
        prepare=prepare,
    )
    task = asyncio.create_task(pipeline.run())
    try:
        yield pipeline, task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await broker.stop()


@asynccontextmanager
async def committed_offsets(
    infra: InfraUrls, group_id: str
) -> AsyncIterator[Callable[[TopicPartition], Awaitable[int | None]]]:
    """Reads the group's committed offsets from outside (never joins the group)."""
    reader = AIOKafkaConsumer(
        bootstrap_servers=infra.kafka_bootstrap_servers,
        group_id=group_id,
        enable_auto_commit=False,
    )
    await reader.start()
    try:

        async def committed(tp: TopicPartition) -> int | None:
            offset: int | None = await reader.committed(tp)
            return offset

        yield committed
    finally:
        await reader.stop()


def by_partition(metadata: Sequence[Any]) -> dict[int, list[int]]:
    offsets: dict[int, list[int]] = {}
    for m in metadata:
        offsets.setdefault(m.partition, []).append(m.offset)
    return offsets


async def test_every_event_is_handled_in_partition_order_while_the_next_batch_is_read(
    infra: InfraUrls, topics: None
) -> None:
    run, source, group = own_names("order")
    topic = Topic.CAMPAIGN_DEALS
    events = [example("deal.signed", source, f"deal-{run}-{i}") for i in range(300)]
    metadata = await produce_events(infra.kafka_bootstrap_servers, events)
    produced = by_partition(metadata)
    assert len(produced) == 3, "300 keys spread over every partition"

    trace = Trace()
    delivered: dict[int, list[int]] = {}
    handled: dict[int, list[int]] = {}
    batch_sizes: list[int] = []
    batch_records: list[list[tuple[int, int]]] = []

    async def handler(batch: Batch) -> None:
        for _, d in batch:
            delivered.setdefault(d.partition, []).append(d.offset)
        mine = [d for e, d in batch if e.source == source]
        if not mine:
            return
        number = len(batch_sizes)
        batch_sizes.append(len(batch))
        batch_records.append([(d.partition, d.offset) for _, d in batch])
        for d in mine:
            handled.setdefault(d.partition, []).append(d.offset)
        await asyncio.sleep(0.2)
        trace.add("end", number)

    tps = [TopicPartition(topic, p) for p in produced]
    ends = {TopicPartition(topic, p): offsets[-1] + 1 for p, offsets in produced.items()}
    async with (
        running(infra, topic, group_id=group, handler=handler, trace=trace, max_records=50),
        committed_offsets(infra, group) as committed,
    ):

        async def all_committed() -> bool:
            return all([await committed(tp) == ends[tp] for tp in tps])

        await eventually(all_committed, 45)

    # Each partition's events in offset order, each exactly once, none missing.
    assert handled == {p: sorted(offsets) for p, offsets in produced.items()}
    for partition, offsets in delivered.items():
        assert offsets == sorted(set(offsets)), f"partition {partition} out of order or repeated"
    assert max(batch_sizes) <= 50
    assert len(batch_sizes) >= 300 // 50
    # Batch N was read and decoded while batch N-1 was being applied, not after.
    decoded_at = {
        record: index
        for index, entry in enumerate(trace.entries)
        if entry[0] == "decode"
        for record in entry[2]
    }
    ended_at = {entry[1]: index for index, entry in enumerate(trace.entries) if entry[0] == "end"}
    read_ahead = [
        number
        for number in range(1, len(batch_records))
        if max(decoded_at[record] for record in batch_records[number]) < ended_at[number - 1]
    ]
    assert len(read_ahead) >= (len(batch_records) - 1) // 2, (read_ahead, len(batch_records))


@dataclass
class Gate:
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    deliveries: list[Delivery] = field(default_factory=list)


async def test_offsets_are_committed_only_after_the_handler_returned(
    infra: InfraUrls, topics: None
) -> None:
    run, source, group = own_names("commit")
    topic = Topic.TRACKING_POST_METRICS
    # One key: one partition, in this order.
    events = [example("post.metrics.observed", source, f"post-{run}") for _ in range(30)]
    metadata = await produce_events(infra.kafka_bootstrap_servers, events)
    [partition] = {m.partition for m in metadata}
    tp = TopicPartition(topic, partition)
    offset_of = {e.id: m.offset for e, m in zip(events, metadata, strict=True)}
    end = metadata[-1].offset + 1

    trace = Trace()
    gates = {0: Gate(), 2: Gate()}
    first_run: list[list[Delivery]] = []

    async def blocking(batch: Batch) -> None:
        mine = [d for e, d in batch if e.source == source]
        if not mine:
            return
        number = len(first_run)
        first_run.append(mine)
        gate = gates.get(number)
        if gate is not None:
            gate.deliveries = mine
            gate.entered.set()
            await gate.release.wait()

    async with committed_offsets(infra, group) as committed:
        async with running(
            infra, topic, group_id=group, handler=blocking, trace=trace, max_records=10
        ) as (_, task):
            await wait_for(gates[0].entered, 45)
            x = [d.offset for d in gates[0].deliveries]

            async def read_ahead() -> bool:
                return any(
                    entry[0] == "decode" and any(o > x[-1] for p, o in entry[2] if p == partition)
                    for entry in trace.entries
                )

            # The pipeline has gone on reading; none of that may be committed yet.
            await eventually(read_ahead)
            before = await committed(tp)
            assert before is None or before <= x[0], (before, x)

            gates[0].release.set()

            async def covers_first() -> bool:
                return (await committed(tp) or 0) >= x[-1] + 1

            await eventually(covers_first)

            await wait_for(gates[2].entered)
            y = [d.offset for d in gates[2].deliveries]
            blocked = await committed(tp)
            assert blocked is not None and x[-1] + 1 <= blocked <= y[0], (blocked, y)

            # A stop while the handler is still at work.
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        stopped = await committed(tp)
        assert stopped == blocked, "a batch cut short must not be committed"

        second_run: list[int] = []

        async def recording(batch: Batch) -> None:
            second_run.extend(d.offset for e, d in batch if e.source == source)

        async with running(infra, topic, group_id=group, handler=recording, max_records=10):

            async def caught_up() -> bool:
                return await committed(tp) == end

            await eventually(caught_up, 45)

    # The next member starts from the last commit: the cut-short batch again, then the rest.
    assert second_run == [o for o in offset_of.values() if o >= y[0]]
    assert second_run[: len(y)] == y


async def test_batches_are_prepared_ahead_and_applied_without_when_preparing_fails(
    infra: InfraUrls, topics: None
) -> None:
    run, source, group = own_names("prepare")
    events = [example("deal.signed", source, f"deal-{run}-{n}") for n in range(40)]
    await produce_events(infra.kafka_bootstrap_servers, events)
    plain: list[str] = []
    prepared: list[str] = []
    failures = 0

    async def handler(batch: Batch) -> None:
        plain.extend(e.id for e, _ in batch if e.source == source)

    def prepare(whole: Batch) -> BatchHandler:
        nonlocal failures
        if failures < 2:  # the first two batches cannot be prepared
            failures += 1
            raise RuntimeError("preparing failed")

        async def handle_prepared(batch: Batch) -> None:
            prepared.extend(e.id for e, _ in batch if e.source == source)

        return handle_prepared

    async with running(
        infra,
        Topic.CAMPAIGN_DEALS,
        group_id=group,
        handler=handler,
        max_records=10,
        prepare=prepare,
    ):

        async def all_handled() -> bool:
            return len(plain) + len(prepared) >= len(events)

        await eventually(all_handled, 45)
    assert sorted(plain + prepared) == sorted(e.id for e in events)
    assert failures == 2 and prepared, "prepared batches go to the handler prepare returned"


async def test_undecodable_records_go_to_the_dlq_and_their_offsets_are_committed(
    infra: InfraUrls, topics: None
) -> None:
    run, source, group = own_names("dlq")
    topic = Topic.CREATOR_PROFILES
    key = f"creator-{run}"
    valid = [example("creator.profile.upserted", source, key) for _ in range(4)]
    garbage = [f"not json {run} {i}".encode() for i in range(3)]
    # Poison between valid events, two in a row at the end, so a batch may hold only poison.
    values = [
        encode(valid[0]),
        garbage[0],
        encode(valid[1]),
        encode(valid[2]),
        encode(valid[3]),
        garbage[1],
        garbage[2],
    ]
    metadata = await produce(
        infra.kafka_bootstrap_servers, [(topic, key.encode(), v) for v in values]
    )
    [partition] = {m.partition for m in metadata}
    tp = TopicPartition(topic, partition)
    garbage_offsets = [m.offset for m, v in zip(metadata, values, strict=True) if v in garbage]

    handled: list[str] = []

    async def handler(batch: Batch) -> None:
        handled.extend(e.id for e, _ in batch if e.source == source)

    async with (
        running(infra, topic, group_id=group, handler=handler, max_records=3),
        committed_offsets(infra, group) as committed,
    ):

        async def past_the_last_poison() -> bool:
            return await committed(tp) == metadata[-1].offset + 1

        await eventually(past_the_last_poison, 45)

    assert handled == [e.id for e in valid]
    letters = await read_dead_letters(
        infra.kafka_bootstrap_servers, [dlq_topic(topic)], service=group
    )
    # The group read the topic from its start: leave out what other tests put there before.
    ours = [
        letter
        for letter in letters
        if letter.headers["dlq.source.partition"] == str(partition)
        and int(letter.headers["dlq.source.offset"]) >= metadata[0].offset
    ]
    assert [letter.value for letter in ours] == garbage
    assert [int(letter.headers["dlq.source.offset"]) for letter in ours] == garbage_offsets
    assert {letter.error_class for letter in ours} == {"InvalidJSON"}
    assert {letter.key for letter in ours} == {key.encode()}


async def test_a_rebalance_waits_for_the_batch_in_flight_and_loses_nothing(
    infra: InfraUrls, topics: None
) -> None:
    run, source, group = own_names("rebalance")
    topic = Topic.TRACKING_ATTRIBUTION
    first = [example("attribution.updated", source, f"deal-{run}-a{i}") for i in range(30)]
    second = [example("attribution.updated", source, f"deal-{run}-b{i}") for i in range(30)]
    await produce_events(infra.kafka_bootstrap_servers, first)

    trace = Trace()
    gate = Gate()
    handled: dict[str, list[str]] = {"a": [], "b": []}

    def handler_of(member: str) -> BatchHandler:
        async def handler(batch: Batch) -> None:
            mine = [(e, d) for e, d in batch if e.source == source]
            if not mine:
                return
            partitions = frozenset(d.partition for _, d in mine)
            number = trace.add("start", member, partitions)
            handled[member].extend(e.id for e, _ in mine)
            if member == "a" and not gate.entered.is_set():
                gate.deliveries = [d for _, d in mine]
                gate.entered.set()
                await gate.release.wait()
            trace.add("end", member, partitions, number)

        return handler

    async with running(
        infra, topic, group_id=group, handler=handler_of("a"), trace=trace, member="a"
    ) as (a, _):
        await wait_for(gate.entered, 45)
        in_flight = {e.id for e in first if e.id in handled["a"]}
        revocations = a.rebalances
        async with running(
            infra, topic, group_id=group, handler=handler_of("b"), trace=trace, member="b"
        ) as (b, _):

            async def revoking() -> bool:
                return a.rebalances > revocations

            # B's arrival makes A give up its partitions; A is still in its batch.
            await eventually(revoking, 45)

            async def b_assigned() -> bool:
                return b.kafka is not None and bool(b.kafka.assignment())

            # Held a while longer: a member that gave its partitions up before finishing
            # would let B start on them meanwhile (the broker completes a rebalance in ~5 s).
            with contextlib.suppress(AssertionError):
                await eventually(b_assigned, 8)
            gate.release.set()

            async def split() -> bool:
                if a.kafka is None or b.kafka is None:
                    return False
                mine, theirs = a.kafka.assignment(), b.kafka.assignment()
                return bool(mine) and bool(theirs) and len(mine | theirs) == 3

            await eventually(split, 45)
            await produce_events(infra.kafka_bootstrap_servers, second)

            expected = {e.id for e in first + second}

            async def all_handled() -> bool:
                return expected <= set(handled["a"]) | set(handled["b"])

            await eventually(all_handled, 20)

    assert set(handled["a"]) | set(handled["b"]) >= expected
    # A's batch in flight finished, and was committed, before B took its partitions over.
    assert not in_flight & set(handled["b"])
    running_batches: dict[int, tuple[str, frozenset[int]]] = {}
    for index, entry in enumerate(trace.entries):
        if entry[0] == "start":
            _, member, partitions = entry
            for other, (owner, held) in running_batches.items():
                assert owner == member or not held & partitions, (
                    f"{member} started on {sorted(partitions)} while {owner} was still applying "
                    f"batch {other} of {sorted(held)}"
                )
            running_batches[index] = (member, partitions)
        elif entry[0] == "end":
            running_batches.pop(entry[3])
