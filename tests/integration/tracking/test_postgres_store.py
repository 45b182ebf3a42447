"""The store contract against the real PostgreSQL adapter."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from services.tracking.store.port import TrackingStore
from services.tracking.store.postgres import PostgresTrackingStore
from tests.unit.tracking.store_contract import StoreContract, ids

pytestmark = pytest.mark.integration

__all__ = ["ids"]


class TestPostgresStore(StoreContract):
    @pytest.fixture
    def store(self, db_pool: asyncpg.Pool) -> TrackingStore:
        return PostgresTrackingStore(db_pool, consumer="tracking-contract")


async def test_a_batch_waits_for_the_one_applied_by_another_replica(db_pool: asyncpg.Pool) -> None:
    """Two replicas' batches, one with a deal and one with its post, must not run at once: each
    would read the other's entities before they are committed and miss the link."""
    store = PostgresTrackingStore(db_pool, consumer="tracking-lock")
    first_holds = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with store.transaction() as tx:
            await tx.exclude_other_batches()
            first_holds.set()
            await release.wait()

    async def second() -> None:
        async with store.transaction() as tx:
            await tx.exclude_other_batches()

    holder = asyncio.create_task(first())
    await asyncio.wait_for(first_holds.wait(), 10)
    waiter = asyncio.create_task(second())
    try:
        done, _ = await asyncio.wait({waiter}, timeout=0.5)
        assert not done, "a second batch ran while the first was being applied"
    finally:
        release.set()
        await asyncio.wait_for(asyncio.gather(holder, waiter), 10)
