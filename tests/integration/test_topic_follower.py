"""A replica's follower on the real broker (shared/runtime/follow.py): `catch_up` returns only
once every event published before it is applied, and says so when the follower is behind."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Sequence
from typing import Any

import pytest

from shared.contract.events import CloudEvent, EventType, Topic
from shared.runtime.config import Settings
from shared.runtime.follow import FollowerBehind, TopicFollower
from shared.runtime.kafka import Delivery, make_broker
from shared.tools.infra import InfraUrls
from tests.support.examples import fresh_example
from tests.support.fast_retry import fast_consumer
from tests.support.kafka_io import produce_events

pytestmark = [pytest.mark.integration]


async def test_catch_up_waits_until_every_event_published_before_it_is_applied(
    infra: InfraUrls, topics: None
) -> None:
    run_id = uuid.uuid4().hex[:8]
    applied: list[str] = []

    async def handler(batch: Sequence[tuple[CloudEvent[Any], Delivery]]) -> None:
        await asyncio.sleep(0.05)  # a slow apply: catch_up must wait for it, not for the read
        applied.extend(event.id for event, _ in batch)

    bootstrap = infra.kafka_bootstrap_servers
    policy = fast_consumer(make_broker(Settings(), bootstrap, logger=None), run_id)
    follower = functools.partial(
        TopicFollower, bootstrap, None, [Topic.CREATOR_PROFILES], handler=handler, policy=policy
    )
    reader = follower(client_id=f"follower-{run_id}", max_records=5)  # several batches
    await reader.start()
    reading = asyncio.create_task(reader.run())
    try:
        await reader.catch_up()  # nothing published since the start: returns at once
        profiles = [
            fresh_example(EventType.CREATOR_PROFILE_UPSERTED, f"tests/follower-{run_id}")
            for _ in range(20)
        ]
        await produce_events(bootstrap, profiles)
        await reader.catch_up()
        assert {e.id for e in profiles} <= set(applied)
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)  # stops the follower

    behind = follower(client_id=f"follower-{run_id}-idle")
    await behind.start()
    try:
        late = fresh_example(EventType.CREATOR_PROFILE_UPSERTED, f"tests/follower-{run_id}")
        await produce_events(bootstrap, [late])
        with pytest.raises(FollowerBehind):  # nobody reads: the event is never applied
            await behind.catch_up(seconds=0.5)
        assert late.id not in applied
    finally:
        await behind.stop()
