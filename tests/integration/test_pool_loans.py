"""The connection pool's loans against a real PostgreSQL: a plain loan is given back without
a reset statement, a session loan (`session_connection`) with all its session state undone."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from shared.runtime.db import create_pool, session_connection
from shared.tools.infra import InfraUrls

pytestmark = pytest.mark.integration

LOCK = 0x504F4F4C  # "POOL"


@pytest.fixture
async def one_pool(infra: InfraUrls) -> AsyncIterator[asyncpg.Pool]:
    """A pool of one connection, so every loan is the same session."""
    pool = await create_pool(infra.database_url, min_size=1, max_size=1)
    yield pool
    await pool.close()


def _statements(pool_conn: asyncpg.Connection) -> list[str]:
    seen: list[str] = []
    pool_conn.add_query_logger(lambda record: seen.append(record.query))
    return seen


async def test_a_plain_loan_goes_back_without_a_reset_statement(one_pool: asyncpg.Pool) -> None:
    async with one_pool.acquire() as conn:
        seen = _statements(conn)
        async with conn.transaction():
            await conn.execute("SELECT 1")
    assert not [q for q in seen if "pg_advisory_unlock_all" in q or "RESET ALL" in q], seen


async def test_a_transaction_left_open_is_rolled_back_when_given_back(
    one_pool: asyncpg.Pool,
) -> None:
    async with one_pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TEMP TABLE left_open (x int)")
    async with one_pool.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open')") is None


async def test_a_session_loan_undoes_its_locks_listens_and_settings(
    one_pool: asyncpg.Pool, infra: InfraUrls
) -> None:
    async with session_connection(one_pool) as conn:
        assert await conn.fetchval("SELECT pg_try_advisory_lock($1)", LOCK)
        await conn.execute("LISTEN pool_loans_test")
        await conn.execute("SET statement_timeout = 1234")
    other = await asyncpg.connect(infra.database_url)
    try:
        # The lock went with the loan: another session takes it at once.
        assert await other.fetchval("SELECT pg_try_advisory_lock($1)", LOCK)
        await other.execute("SELECT pg_advisory_unlock($1)", LOCK)
    finally:
        await other.close()
    async with one_pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM pg_listening_channels()") == 0
        assert await conn.fetchval("SHOW statement_timeout") == "0"


class _BodyFailed(Exception):
    pass


async def test_a_session_loan_whose_connection_died_gives_back_the_bodys_own_error(
    one_pool: asyncpg.Pool, infra: InfraUrls
) -> None:
    """The server ended the session (a restart, a failover): nothing is left to undo, and
    what the body raised, a cancellation above all, is what the caller sees."""
    other = await asyncpg.connect(infra.database_url)
    try:
        with pytest.raises(_BodyFailed):
            async with session_connection(one_pool) as conn:
                pid = conn.get_server_pid()
                await other.execute("SELECT pg_terminate_backend($1)", pid)
                # Whichever error the client meets first (the server's FATAL may race it).
                with pytest.raises(Exception):  # noqa: B017
                    await conn.execute("SELECT 1")
                raise _BodyFailed
    finally:
        await other.close()
    async with one_pool.acquire() as conn:  # the pool made a new one
        assert await conn.fetchval("SELECT 1") == 1
