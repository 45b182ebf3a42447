"""The pipelined consumer's offset commits (shared/runtime/pipeline.py): committed after their
batch is stored, one commit in flight at a time, an offset never overtaking a later one, and
nothing left committing once the consumer stops. Against a Kafka consumer that commits as
slowly as the test says; the real broker is tests/integration/test_pipeline.py's."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from shared.runtime.kafka import DeadLetters, RetryPolicy, SafeConsumer
from shared.runtime.pipeline import PipelinedBatches

P0, P1 = TopicPartition("t", 0), TopicPartition("t", 1)


class SlowCommits:
    """Records each commit once `release` lets it finish, and how many ran at once."""

    def __init__(self) -> None:
        self.committed: list[dict[int, int]] = []
        self.release = asyncio.Event()
        self.running = 0
        self.most_at_once = 0

    async def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await self.release.wait()
            self.committed.append({tp.partition: m.offset for tp, m in offsets.items()})
        finally:
            self.running -= 1


def pipeline() -> PipelinedBatches:
    retry = RetryPolicy()
    consumer = SafeConsumer(DeadLetters(cast(Any, None), service="t", retry=retry), retry)
    handler: Any = None  # never called: only commits are driven here
    return PipelinedBatches("unused:9092", ["t"], group_id="g", handler=handler, consumer=consumer)


async def test_commits_run_one_at_a_time_and_the_newest_offsets_win() -> None:
    batches, kafka = pipeline(), SlowCommits()
    batches._commit_later(cast(Any, kafka), {P0: 10}, 0.0)
    await asyncio.sleep(0)  # the first commit is in flight
    batches._commit_later(cast(Any, kafka), {P0: 20, P1: 5}, 0.0)
    batches._commit_later(cast(Any, kafka), {P0: 30}, 0.0)
    kafka.release.set()
    await batches.finish_applying()
    assert kafka.committed == [{0: 10}, {0: 30, 1: 5}]
    assert kafka.most_at_once == 1


async def test_a_stop_leaves_no_commit_running() -> None:
    batches, kafka = pipeline(), SlowCommits()
    batches._commit_later(cast(Any, kafka), {P0: 10}, 0.0)
    await asyncio.sleep(0)
    batches._commit_later(cast(Any, kafka), {P0: 20}, 0.0)
    committing = batches._committing
    assert committing is not None
    committing.cancel()  # as `run` does when it stops
    await asyncio.gather(committing, return_exceptions=True)
    kafka.release.set()
    await asyncio.sleep(0.01)
    assert kafka.committed == [] and kafka.running == 0
