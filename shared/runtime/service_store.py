"""What every service's PostgreSQL store does alike: a transaction is one connection on which
the inbox claim (inbox.py), the service's own writes and the outbox (outbox.py) commit
together, all under the service's consumer name."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Generic, TypeVar

import asyncpg

from shared.contract.events import CloudEvent, EventIdentity
from shared.runtime import inbox, outbox
from shared.runtime.unit_of_work import Batch


class ServiceTransaction:
    """One transaction on one connection: the inbox and outbox side of a service's
    transaction, so each service adds only its own reads and writes."""

    def __init__(self, conn: asyncpg.Connection, consumer: str) -> None:
        self._conn = conn
        self._consumer = consumer

    async def claim(self, events: Batch) -> set[EventIdentity]:
        return await inbox.claim(self._conn, self._consumer, events)

    async def enqueue(self, events: Sequence[CloudEvent[Any]]) -> None:
        # The consumer name doubles as the outbox producer: its own relay publishes these.
        await outbox.enqueue(self._conn, events, producer=self._consumer)


TxT = TypeVar("TxT", bound=ServiceTransaction)


class ServiceStore(Generic[TxT]):
    """Opens a service's transactions (of type `opens`) on a pool, so each service's store
    adds only the reads that need no transaction."""

    def __init__(self, pool: asyncpg.Pool, opens: type[TxT], consumer: str) -> None:
        self._pool = pool
        self._opens = opens
        self._consumer = consumer

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[TxT]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield self._opens(conn, self._consumer)
