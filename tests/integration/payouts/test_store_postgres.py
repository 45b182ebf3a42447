"""The store contract against PostgreSQL, and the ledger guards the schema adds."""

from __future__ import annotations

import asyncpg
import pytest

from services.payouts.store.postgres import PostgresPayoutsStore
from tests.unit.payouts.builders import uid
from tests.unit.payouts.store_contract import PayoutStoreContract, acct, add_payout, new_payout

pytestmark = pytest.mark.integration


class TestPostgresStore(PayoutStoreContract):
    @pytest.fixture
    def db(self, db_pool: asyncpg.Pool) -> PostgresPayoutsStore:
        return PostgresPayoutsStore(db_pool)


async def test_postings_are_append_only_and_transfers_must_balance(db_pool: asyncpg.Pool) -> None:
    db = PostgresPayoutsStore(db_pool)
    creator = uid("cr")
    created = new_payout(uid("deal"), creator, acct(creator))
    async with db.transaction() as repo:
        await add_payout(repo, created.payout)
        await repo.post(created.transfers)
    transfer_id = created.transfers[0].transfer_id
    async with db_pool.acquire() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(
                "UPDATE payouts_postings SET amount = 1 WHERE transfer_id = $1", transfer_id
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM payouts_transfers WHERE transfer_id = $1", transfer_id)
        # An unbalanced transfer is refused when its transaction commits.
        with pytest.raises(asyncpg.CheckViolationError, match="does not sum to zero"):
            async with conn.transaction():
                await conn.execute(
                    "INSERT INTO payouts_transfers (transfer_id, payout_id, kind) "
                    "VALUES ($1, $2, 'x')",
                    transfer_id + ":bad",
                    created.payout.payout_id,
                )
                await conn.execute(
                    "INSERT INTO payouts_postings (transfer_id, account, amount, currency) "
                    "VALUES ($1, 'a', 1, 'USD'), ($1, 'b', -1, 'EUR')",
                    transfer_id + ":bad",
                )
