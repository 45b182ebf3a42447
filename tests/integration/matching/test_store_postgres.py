"""The Postgres store passes the same contract as the fake."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from services.matching.store.port import FollowerCount, Outcome
from services.matching.store.postgres import PostgresMatchingStore
from tests.support.table_reads import rows_read
from tests.unit.matching.store_contract import T0, MatchingStoreContract, uid

pytestmark = pytest.mark.integration


class TestPostgresMatchingStore(MatchingStoreContract):
    @pytest.fixture(autouse=True)
    def _store(self, db_pool: asyncpg.Pool) -> None:
        self.store = PostgresMatchingStore(db_pool, consumer="matching")


async def test_one_creators_history_and_performance_read_only_their_rows(
    db_pool: asyncpg.Pool,
) -> None:
    """Read for the creators of every batch of posts and attributions: that must not cost a
    read of every creator's rows."""
    store = PostgresMatchingStore(db_pool, consumer="matching")
    creators = [f"cr-{uid()}" for _ in range(3)]
    async with store.transaction() as tx:
        for n, creator in enumerate(creators):
            await tx.record_followers([FollowerCount(creator, "instagram", T0, 1_000 + n)])
            for deal in range(2):
                outcome = Outcome(f"deal-{uid()}", "camp", creator, Decimal(deal + 1), None, T0)
                await tx.record_outcome(outcome)
    async with db_pool.acquire() as conn, conn.transaction():
        # The store's reads go through this one connection.
        on_conn = PostgresMatchingStore(conn, consumer="matching")  # type: ignore[arg-type]
        read, history = await rows_read(
            conn, "matching_follower_history", lambda: on_conn.follower_history(creators[:1])
        )
        assert (read, history) == (1, {(creators[0], "instagram"): [(T0, 1_000)]})
        read, performance = await rows_read(
            conn, "matching_performance", lambda: on_conn.performance(creators[:1])
        )
        assert (read, performance) == (2, [(creators[0], 3.0, 2)])
