"""The inbox: which events a consumer has already applied (DESIGN.md §2, idempotent consumers).

`claim` runs inside the caller's transaction, so the record of an event and the state change
it causes commit or roll back together; a replay after a crash finds the id and skips it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from shared.events import CloudEvent
from shared.kafka import Delivery

_CLAIM = """
INSERT INTO processed_events
    (consumer, event_id, event_type, topic, kafka_partition, kafka_offset)
SELECT $1, e.event_id, e.event_type, e.topic, e.kafka_partition, e.kafka_offset
FROM unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::bigint[])
    AS e(event_id, event_type, topic, kafka_partition, kafka_offset)
ON CONFLICT (consumer, event_id) DO NOTHING
RETURNING event_id
"""


async def claim(
    conn: asyncpg.Connection,
    consumer: str,
    events: Sequence[tuple[CloudEvent[Any], Delivery]],
) -> set[str]:
    """Record `events` as processed by `consumer`; return the ids seen for the first time.

    One statement for the whole batch. An id repeated within `events` is returned once, so
    callers must also skip duplicates inside the batch (e.g. iterate and discard as they go).
    Must be called inside a transaction that also applies the events' effects.
    """
    if not events:
        return set()
    if not conn.is_in_transaction():
        raise RuntimeError("inbox.claim must run inside the transaction applying the events")
    unique: dict[str, tuple[CloudEvent[Any], Delivery]] = {}
    for event, delivery in events:
        unique.setdefault(event.id, (event, delivery))
    rows = await conn.fetch(
        _CLAIM,
        consumer,
        list(unique),
        [e.type for e, _ in unique.values()],
        [d.topic for _, d in unique.values()],
        [d.partition for _, d in unique.values()],
        [d.offset for _, d in unique.values()],
    )
    return {row["event_id"] for row in rows}
