"""Driving the tracking service through the real broker in tests."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.tracking.app import INPUT_TOPICS, SERVICE, make_setup
from services.tracking.schema import SCHEMA
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from tests.support.waiting import eventually


async def caught_up(runtime: ServiceRuntime) -> bool:
    """True when the service's consumer holds every input partition and has committed its
    end offset (everything produced so far was applied)."""
    assert runtime.resources is not None
    [consumer] = runtime.resources.kafka_consumers()
    if consumer is None:
        return False
    assigned = consumer.assignment()
    if {tp.topic for tp in assigned} != set(INPUT_TOPICS):
        return False
    ends = await consumer.end_offsets(list(assigned))
    for tp, end in ends.items():
        committed = await consumer.committed(tp)
        if end > 0 and (committed is None or committed < end):
            return False
    return True


async def table(pool: asyncpg.Pool, sql: str, *args: object) -> list[dict[str, Any]]:
    return [dict(row) for row in await pool.fetch(sql, *args)]


async def run_until_caught_up(infra: InfraUrls, *, group: str, inbox: str) -> None:
    """Run the service under consumer `group` and `inbox` until it has applied every input
    and published every outbox row, then stop it."""
    setup = make_setup(group_id=group, inbox_consumer=inbox)
    async with ServiceRuntime(SERVICE, setup, schema=SCHEMA, urls=infra) as runtime:
        assert runtime.resources is not None
        pool = runtime.resources.pool

        async def drained() -> bool:
            # Caught up first: a batch committed after counting the outbox would leave rows
            # the relay may have published but not marked when the service stops.
            if not await caught_up(runtime):
                return False
            unpublished = await pool.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            return bool(unpublished == 0)

        await eventually(drained, seconds=90, what="every input applied and published")
