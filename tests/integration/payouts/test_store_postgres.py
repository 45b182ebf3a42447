"""The store contract against PostgreSQL, and the ledger guards the schema adds."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from services.payouts.domain.accounts import HoldCode
from services.payouts.domain.ledger import Posting
from services.payouts.domain.lifecycle import Transition
from services.payouts.store.postgres import (
    DUE_CHANNEL,
    PostgresPayoutsStore,
    PostgresPayoutsTransaction,
)
from shared.contract.money import Money
from shared.tools.infra import InfraUrls
from tests.support.table_reads import rows_read
from tests.support.waiting import eventually
from tests.unit.payouts.builders import uid
from tests.unit.payouts.store_contract import PayoutStoreContract, acct, add_payout, new_payout

pytestmark = pytest.mark.integration


async def _posted_payouts(db_pool: asyncpg.Pool, creators: list[str]) -> list[Transition]:
    """A payout for each creator, stored with its transfers."""
    created = [new_payout(uid("deal"), c, acct(c)) for c in creators]
    async with PostgresPayoutsStore(db_pool).transaction() as repo:
        for one in created:
            await add_payout(repo, one.payout)
            await repo.post(one.transfers)
    return created


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
        # A statement whose transfers do not each balance in every currency is refused, also
        # beside a balanced one, and so is a transfer inserted one posting at a time.
        unbalanced = [
            ["($1, 'a', 1, 'USD'), ($1, 'b', -1, 'EUR')"],
            ["($2, 'a', 1, 'USD'), ($2, 'b', -1, 'USD'), ($1, 'a', 1, 'USD')"],
            ["($1, 'a', 1, 'USD')", "($1, 'b', -1, 'USD')"],
        ]
        for statements in unbalanced:
            with pytest.raises(asyncpg.CheckViolationError, match=f"{transfer_id}:bad does not"):
                async with conn.transaction():
                    await conn.execute(
                        "INSERT INTO payouts_transfers (transfer_id, payout_id, kind) "
                        "VALUES ($1, $3, 'x'), ($2, $3, 'x')",
                        transfer_id + ":bad",
                        transfer_id + ":good",
                        created.payout.payout_id,
                    )
                    for values in statements:
                        ids = [transfer_id + ":bad", transfer_id + ":good"]
                        await conn.execute(
                            "INSERT INTO payouts_postings (transfer_id, account, amount, currency) "
                            f"VALUES {values}",
                            *ids[: 2 if "$2" in values else 1],
                        )


async def test_posting_an_unbalanced_transfer_is_refused(
    db_pool: asyncpg.Pool,
) -> None:
    """Transfers and postings go in one statement: the ledger's checks still run on it."""
    creator = uid("cr")
    created = new_payout(uid("deal"), creator, acct(creator))
    first = created.transfers[0]
    off = Posting(first.postings[0].account, Money.of("0.01", first.postings[0].amount.currency))
    object.__setattr__(first, "postings", (*first.postings, off))  # past the domain's check
    with pytest.raises(asyncpg.CheckViolationError, match="does not sum to zero"):
        async with PostgresPayoutsStore(db_pool).transaction() as repo:
            await add_payout(repo, created.payout)
            await repo.post(created.transfers)


@pytest.mark.parametrize("transfers", [True, False])
async def test_posting_wakes_the_dispatchers_at_commit_only_when_asked(
    db_pool: asyncpg.Pool, transfers: bool
) -> None:
    wakes: list[str] = []

    def woken(*_: object) -> None:
        wakes.append("woken")

    async with db_pool.acquire() as listening:
        await listening.add_listener(DUE_CHANNEL, woken)
        try:
            for wake in (False, True):
                creator = uid("cr")
                created = new_payout(uid("deal"), creator, acct(creator))
                async with PostgresPayoutsStore(db_pool).transaction() as repo:
                    await add_payout(repo, created.payout)
                    await repo.post(created.transfers if transfers else [], wake_dispatchers=wake)
                    await asyncio.sleep(0.2)
                    assert wakes == []  # not before the commit
            await eventually(lambda: wakes == ["woken"], what="one wake-up, at the commit")
            await asyncio.sleep(0.2)
            assert wakes == ["woken"]
        finally:
            await listening.remove_listener(DUE_CHANNEL, woken)


async def test_balances_of_some_accounts_read_only_their_postings(db_pool: asyncpg.Pool) -> None:
    """The consumer reads its creators' balances in every batch: that must not cost a read of
    the whole ledger."""
    creators = [uid("cr") for _ in range(3)]
    created = await _posted_payouts(db_pool, creators)
    mine = [p for t in created[0].transfers for p in t.postings if creators[0] in p.account]
    accounts = [*sorted({p.account for p in mine}), f"creator_receivable:{creators[0]}"]
    async with db_pool.acquire() as conn, conn.transaction():
        tx = PostgresPayoutsTransaction(conn)
        read, balances = await rows_read(conn, "payouts_postings", lambda: tx.balances(accounts))
        everyone = await tx.balances()
    assert read == len(mine)
    assert balances == {k: v for k, v in everyone.items() if k[0] in accounts} != {}


async def test_one_creators_payouts_are_read_alone(db_pool: asyncpg.Pool) -> None:
    """Their payout page reads them on every visit."""
    db = PostgresPayoutsStore(db_pool)
    creators = [uid("cr") for _ in range(3)]
    async with db.transaction() as repo:
        for creator in creators:
            await add_payout(repo, new_payout(uid("deal"), creator, acct(creator)).payout)
    async with db_pool.acquire() as conn, conn.transaction():
        tx = PostgresPayoutsTransaction(conn)
        read, payouts = await rows_read(conn, "payouts_payouts", lambda: tx.payouts_of(creators[0]))
    assert read == 1
    assert [p.creator_id for p in payouts] == creators[:1]


async def test_one_creators_held_payouts_are_read_alone(db_pool: asyncpg.Pool) -> None:
    """A creator's new payout account releases their held payouts: that must not read every
    creator's."""
    db = PostgresPayoutsStore(db_pool)
    creators = [uid("cr") for _ in range(3)]
    held = [new_payout(uid("deal"), c, None).payout for c in creators]
    async with db.transaction() as repo:
        for payout in held:
            await add_payout(repo, payout)
    async with db_pool.acquire() as conn, conn.transaction():
        tx = PostgresPayoutsTransaction(conn)
        read, mine = await rows_read(
            conn,
            "payouts_payouts",
            lambda: tx.held_for_update(creator_ids=creators[:1], codes=[HoldCode.NO_ACCOUNT]),
        )
        everyone = await tx.held_for_update(codes=[HoldCode.NO_ACCOUNT])
    assert read == 1
    assert [p.payout_id for p in mine] == [held[0].payout_id]
    assert {p.payout_id for p in held} <= {p.payout_id for p in everyone}


async def test_one_payouts_transfers_are_read_alone(db_pool: asyncpg.Pool) -> None:
    """The statement reads a retried payout's transfers: not the whole ledger's."""
    creators = [uid("cr") for _ in range(3)]
    created = await _posted_payouts(db_pool, creators)
    first = created[0].payout.payout_id
    async with db_pool.acquire() as conn, conn.transaction():
        tx = PostgresPayoutsTransaction(conn)
        read, mine = await rows_read(conn, "payouts_transfers", lambda: tx.transfers([first]))
        everyone = await tx.transfers()
    assert read == len(created[0].transfers)
    assert [t.transfer_id for t in mine] == [t.transfer_id for t in created[0].transfers]
    assert {t.transfer_id for t in mine} < {t.transfer_id for t in everyone}


async def test_listening_for_due_payouts_ends_when_the_server_ends_its_session(
    db_pool: asyncpg.Pool, infra: InfraUrls
) -> None:
    """A restart of PostgreSQL closes the listening session: the loop wakes the dispatcher
    (a round for what was notified meanwhile) and ends with a transient error, so its
    supervisor listens again on a new session, rather than wait forever on a dead one."""
    name = f"listen-due-{uuid.uuid4().hex[:8]}"
    pool = await asyncpg.create_pool(
        infra.database_url, min_size=1, max_size=1, server_settings={"application_name": name}
    )
    wakes: list[None] = []
    listening = asyncio.create_task(
        PostgresPayoutsStore(pool).listen_due(lambda: wakes.append(None))
    )
    try:

        async def listener_pid() -> int | None:
            return await db_pool.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1"
                " AND query LIKE 'LISTEN%'",
                name,
            )

        await eventually(listener_pid, what="a session listening for due payouts")
        await db_pool.execute("SELECT pg_terminate_backend($1)", await listener_pid())
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(listening, 10)
        assert wakes
    finally:
        listening.cancel()
        await asyncio.gather(listening, return_exceptions=True)
        await pool.close()
