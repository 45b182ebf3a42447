"""The inbox: which events a consumer has already applied (docs/reliability.md, idempotent
consumers), keyed on the event's (source, id) as CloudEvents defines uniqueness.

`claim` runs inside the caller's transaction, so the record of an event and the state change
it causes commit or roll back together; a replay after a crash finds the id and skips it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from shared.contract.events import CloudEvent, EventIdentity
from shared.runtime.kafka import Delivery

_CLAIM = """
INSERT INTO processed_events
    (consumer, source, event_id, event_type, topic, kafka_partition, kafka_offset)
SELECT $1, e.source, e.event_id, e.event_type, e.topic, e.kafka_partition, e.kafka_offset
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::bigint[])
    AS e(source, event_id, event_type, topic, kafka_partition, kafka_offset)
-- Recorded before the inbox knew sources (migration 0005): the id alone identifies it.
WHERE NOT EXISTS (
    SELECT 1 FROM processed_events legacy
    WHERE legacy.consumer = $1 AND legacy.source = '' AND legacy.event_id = e.event_id)
ON CONFLICT (consumer, source, event_id) DO NOTHING
RETURNING source, event_id
"""


async def claim(
    conn: asyncpg.Connection,
    consumer: str,
    events: Sequence[tuple[CloudEvent[Any], Delivery]],
) -> set[EventIdentity]:
    """Record `events` as processed by `consumer`; return the identities (source, id) seen for
    the first time.

    One statement for the whole batch. An identity repeated within `events` is returned once,
    so callers must also skip duplicates inside the batch (e.g. iterate and discard as they
    go). Must be called inside a transaction that also applies the events' effects.
    """
    if not events:
        return set()
    if not conn.is_in_transaction():
        raise RuntimeError("inbox.claim must run inside the transaction applying the events")
    unique: dict[EventIdentity, tuple[CloudEvent[Any], Delivery]] = {}
    for event, delivery in events:
        unique.setdefault(event.identity, (event, delivery))
    rows = await conn.fetch(
        _CLAIM,
        consumer,
        [source for source, _ in unique],
        [event_id for _, event_id in unique],
        [e.type for e, _ in unique.values()],
        [d.topic for _, d in unique.values()],
        [d.partition for _, d in unique.values()],
        [d.offset for _, d in unique.values()],
    )
    return {(row["source"], row["event_id"]) for row in rows}
