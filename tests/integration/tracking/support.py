"""Driving the tracking service through the real broker in tests."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.tracking.app import INPUT_TOPICS
from shared.runtime.service import ServiceRuntime


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
