"""The inbox: which events a consumer has already applied (docs/reliability.md, idempotent
consumers), keyed on the event's (source, id) as CloudEvents defines uniqueness.

`claim` runs inside the caller's transaction, so the record of an event and the state change
it causes commit or roll back together; a replay after a crash finds the id and skips it.

An id names one event. The inbox keeps a hash of what each event said (its type and data),
and an event sent again under an identity already applied with other content is refused
(`EventIdReused`, dead-lettered by the failure policy) instead of skipped as a repeat: two
services reading it in different orders would otherwise each keep a different event and
drop the other without a word. CreatorFlow's own events are exempt: a service announces a
fact again under the id derived from it, with fields that may have moved since
(`services/tracking/translate.py::_derived_event`), and the repeat is meant to be skipped.
An event with secret fields (a payout account) is hashed without them: the inbox keeps no
trace of where money goes, so an account for another creator under a used id is refused, and
one that changes only its destination is taken for a repeat.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import asyncpg

from shared.contract.errors import EventRejected
from shared.contract.events import CloudEvent, EventIdentity, spec_for_type
from shared.runtime.kafka import Delivery

# The sources of CreatorFlow's services and tools (e.g. "creatorflow/tracking").
OWN_SOURCE_PREFIX: Final = "creatorflow/"

_CLAIM = """
INSERT INTO processed_events
    (consumer, source, event_id, event_type, topic, kafka_partition, kafka_offset,
     content_digest)
SELECT $1, e.source, e.event_id, e.event_type, e.topic, e.kafka_partition, e.kafka_offset,
       e.content_digest
FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::bigint[],
            $8::bytea[])
    AS e(source, event_id, event_type, topic, kafka_partition, kafka_offset, content_digest)
-- Recorded before the inbox knew sources (migration 0005): the id alone identifies it.
WHERE NOT EXISTS (
    SELECT 1 FROM processed_events legacy
    WHERE legacy.consumer = $1 AND legacy.source = '' AND legacy.event_id = e.event_id)
ON CONFLICT (consumer, source, event_id) DO NOTHING
RETURNING source, event_id
"""

_CLAIMED_BEFORE = """
SELECT p.source, p.event_id, p.event_type, p.topic, p.kafka_partition, p.kafka_offset,
       p.content_digest
FROM unnest($2::text[], $3::text[]) AS e(source, event_id)
JOIN processed_events p ON p.consumer = $1 AND p.source = e.source AND p.event_id = e.event_id
WHERE p.content_digest IS NOT NULL
"""


class EventIdReused(EventRejected):
    """Another event than the one applied under this (source, id)."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """What the inbox keeps of an applied event besides its identity."""

    event_type: str
    digest: bytes | None
    topic: str
    partition: int
    offset: int

    @classmethod
    def of(cls, event: CloudEvent[Any], delivery: Delivery) -> Claimed:
        return cls(
            event.type, content_digest(event), delivery.topic, delivery.partition, delivery.offset
        )


def content_digest(event: CloudEvent[Any]) -> bytes | None:
    """A hash of what `event` says (type and data; not its time or signature), secret fields
    left out; None for CreatorFlow's own events (the module's docstring says why)."""
    if event.source.startswith(OWN_SOURCE_PREFIX):
        return None
    if spec_for_type(event.type).secret_fields:
        # Python mode shows every secret, nested ones too, as '**********': the inbox keeps
        # nothing a guess of a destination could be checked against.
        data = json.dumps(event.data.model_dump(), default=str, sort_keys=True).encode()
    else:
        data = event.data.model_dump_json().encode()
    return hashlib.blake2b(event.type.encode() + b"\0" + data, digest_size=16).digest()


def check_same(
    event: CloudEvent[Any], digest: bytes | None, applied: Claimed, consumer: str
) -> None:
    """Refuse `event` (whose content hash is `digest`) if `applied`, the event claimed
    under its identity before, said something else."""
    if digest is None or applied.digest is None or digest == applied.digest:
        return
    raise EventIdReused(
        f"event id {event.id!r} of source {event.source!r} was already used by another "
        f"{applied.event_type} ({applied.topic}[{applied.partition}]@{applied.offset}), "
        f"which {consumer} applied: an id names one event, so this one was not applied; "
        "send it again under an id of its own"
    )


def first_of_each(
    events: Sequence[tuple[CloudEvent[Any], Delivery]], consumer: str
) -> dict[EventIdentity, tuple[CloudEvent[Any], Delivery, Claimed]]:
    """The first occurrence of each identity in `events`, with what the inbox keeps of it; a
    later occurrence that says something else is refused."""
    unique: dict[EventIdentity, tuple[CloudEvent[Any], Delivery, Claimed]] = {}
    for event, delivery in events:
        first = unique.get(event.identity)
        if first is None:
            unique[event.identity] = (event, delivery, Claimed.of(event, delivery))
        else:
            check_same(event, content_digest(event), first[2], consumer)
    return unique


async def claim(
    conn: asyncpg.Connection,
    consumer: str,
    events: Sequence[tuple[CloudEvent[Any], Delivery]],
) -> set[EventIdentity]:
    """Record `events` as processed by `consumer`; return the identities (source, id) seen for
    the first time. Raises `EventIdReused` if one of them reuses an identity applied (or
    met earlier in `events`) with other content.

    One statement for the whole batch (and one more when some were applied before). An
    identity repeated within `events` is returned once, so callers must also skip duplicates
    inside the batch (e.g. iterate and discard as they go). Must be called inside a
    transaction that also applies the events' effects.
    """
    if not events:
        return set()
    if not conn.is_in_transaction():
        raise RuntimeError("inbox.claim must run inside the transaction applying the events")
    unique = first_of_each(events, consumer)
    kept = [claimed for _, _, claimed in unique.values()]
    rows = await conn.fetch(
        _CLAIM,
        consumer,
        [source for source, _ in unique],
        [event_id for _, event_id in unique],
        [c.event_type for c in kept],
        [c.topic for c in kept],
        [c.partition for c in kept],
        [c.offset for c in kept],
        [c.digest for c in kept],
    )
    fresh = {(row["source"], row["event_id"]) for row in rows}
    repeated = [i for i, (_, _, c) in unique.items() if i not in fresh and c.digest is not None]
    if repeated:
        before = await conn.fetch(
            _CLAIMED_BEFORE, consumer, [s for s, _ in repeated], [i for _, i in repeated]
        )
        for row in before:
            event, _, claimed = unique[(row["source"], row["event_id"])]
            applied = Claimed(
                row["event_type"],
                row["content_digest"],
                row["topic"],
                row["kafka_partition"],
                row["kafka_offset"],
            )
            check_same(event, claimed.digest, applied, consumer)
    return fresh


def claim_in(
    inbox: MutableMapping[tuple[str, str, str], Claimed],
    consumer: str,
    events: Sequence[tuple[CloudEvent[Any], Delivery]],
) -> set[EventIdentity]:
    """`claim` over an inbox in memory, keyed (consumer, source, id): the stores' fakes give
    the same answers and refusals. The caller rolls `inbox` back if this raises."""
    fresh: set[EventIdentity] = set()
    for identity, (event, _, claimed) in first_of_each(events, consumer).items():
        applied = inbox.get((consumer, *identity))
        if applied is None:
            inbox[(consumer, *identity)] = claimed
            fresh.add(identity)
        else:
            check_same(event, claimed.digest, applied, consumer)
    return fresh
