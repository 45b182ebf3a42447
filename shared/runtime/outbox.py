"""The transactional outbox: events that must not be lost (docs/architecture.md §2).

`enqueue` writes events in the caller's transaction, so they exist exactly when the state
change that caused them committed. `OutboxRelay` publishes committed rows in `seq` order and
marks them published. A crash between publishing and marking re-publishes on restart, which
consumers absorb by deduplicating on the event id.

Each row names its producer (the service that wrote it), and a relay publishes its own
producer's rows only. One relay per producer publishes at a time (an advisory lock held on
its listening connection): that keeps per-key order without Kafka transactions, which the
embedded broker lacks. Other replicas wait and take over when the holder's connection goes
away.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Sequence
from typing import Any

import asyncpg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faststream.kafka import KafkaBroker

from shared.contract.events import CONTENT_TYPE, CloudEvent, encode, event_key, spec_for_type
from shared.contract.signing import sign_json
from shared.runtime.db import session_connection
from shared.runtime.kafka import RetryPolicy, is_transient
from shared.runtime.rounds import run_in_rounds

log = structlog.get_logger(__name__)

_CHANNEL = "creatorflow_outbox"


def channel(producer: str) -> str:
    """The NOTIFY channel that wakes `producer`'s relay."""
    return f"{_CHANNEL}_{producer}"


def _lock_id(producer: str) -> int:
    """The advisory lock whose holder is `producer`'s leading relay (a signed 64-bit key)."""
    digest = hashlib.blake2b(f"creatorflow/outbox/{producer}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


async def enqueue(
    conn: asyncpg.Connection, events: Sequence[CloudEvent[Any]], *, producer: str
) -> None:
    """Add `events` to `producer`'s outbox inside the caller's transaction (ids already there
    are kept).

    Topic and key come from the event registry. The producer's relay is woken when the
    transaction commits (NOTIFY is delivered at commit).
    """
    if not events:
        return
    if not conn.is_in_transaction():
        raise RuntimeError("outbox.enqueue must run inside the transaction that caused the events")
    # One round trip: the INSERT runs in full as a data-modifying WITH, then the NOTIFY.
    await conn.execute(
        """WITH added AS (
               INSERT INTO outbox (event_id, topic, kafka_key, value, producer)
               SELECT e.*, $5 FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bytea[]) AS e
               ON CONFLICT (event_id) DO NOTHING)
           SELECT pg_notify($6, '')""",
        [e.id for e in events],
        [spec_for_type(e.type).topic for e in events],
        [event_key(e) for e in events],
        [encode(e) for e in events],
        producer,
        channel(producer),
    )


class OutboxRelay:
    """Publishes committed outbox rows, oldest first; run `run()` as a background task."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: KafkaBroker,
        *,
        producer: str,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        retry: RetryPolicy | None = None,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> None:
        self._pool = pool
        # Signs what it publishes as the service (shared/contract/signing.py): the signature
        # is made when a row is sent, the same each time it is sent again (Ed25519 is
        # deterministic), so stored rows stay as the transaction wrote them.
        self._signing_key = signing_key
        self._broker = broker
        self._producer = producer
        self._channel = channel(producer)
        self._lock_id = _lock_id(producer)
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._retry = retry or RetryPolicy()
        self._wake = asyncio.Event()
        self.published = 0

    async def run(self) -> None:
        """Publish until cancelled; database or broker outages are waited out, not fatal."""
        failures = 0
        while True:
            try:
                await self._lead_and_publish()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not is_transient(error):
                    log.exception("outbox relay failed")
                failures += 1
                await asyncio.sleep(self._retry.delay(failures))

    async def _lead_and_publish(self) -> None:
        async with session_connection(self._pool) as listener:
            await listener.add_listener(self._channel, self._on_notify)
            try:
                await self._wait_for_leadership(listener)
                try:
                    await run_in_rounds(
                        self.publish_pending,
                        full=self._batch_size,
                        idle_seconds=self._poll_seconds,
                        wake=self._wake,
                    )
                finally:
                    with contextlib.suppress(Exception):
                        await listener.execute("SELECT pg_advisory_unlock($1)", self._lock_id)
            finally:
                with contextlib.suppress(Exception):
                    await listener.remove_listener(self._channel, self._on_notify)

    async def _wait_for_leadership(self, listener: asyncpg.Connection) -> None:
        while True:
            if await listener.fetchval("SELECT pg_try_advisory_lock($1)", self._lock_id):
                return
            await asyncio.sleep(self._poll_seconds)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def publish_pending(self) -> int:
        """Publish up to one batch of pending rows in order; returns how many."""
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                """SELECT seq, topic, kafka_key, value FROM outbox
                   WHERE published_at IS NULL AND producer IN ($2, '')
                   ORDER BY seq LIMIT $1 FOR UPDATE""",
                self._batch_size,
                self._producer,
            )
            # Queue the whole batch in order, then wait for every ack together: waiting per
            # row would cap the relay at one broker round trip per event.
            acks = [
                await self._broker.publish(
                    self._signed(row["value"]),
                    topic=row["topic"],
                    key=row["kafka_key"],
                    headers={"content-type": CONTENT_TYPE},
                    no_confirm=True,
                )
                for row in rows
            ]
            await asyncio.gather(*acks)
            if rows:
                await conn.execute(
                    "UPDATE outbox SET published_at = clock_timestamp() WHERE seq = ANY($1)",
                    [row["seq"] for row in rows],
                )
        self.published += len(rows)
        return len(rows)

    def _signed(self, value: bytes) -> bytes:
        return value if self._signing_key is None else sign_json(value, self._signing_key)
