"""How many rows a statement read from a table, as PostgreSQL counts them: what a test of a
hot path's plan checks (that it reads the rows it needs, not the whole table)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

T = TypeVar("T")

_READ = """SELECT coalesce(sum(seq_tup_read + coalesce(idx_tup_fetch, 0)), 0)
           FROM pg_stat_xact_user_tables WHERE relname = $1"""


async def rows_read(
    conn: asyncpg.Connection, table: str, read: Callable[[], Awaitable[T]]
) -> tuple[int, T]:
    """Rows of `table` that `read()` read, and what it returned. `conn` is in a transaction
    and `read` uses it. The plan is the one PostgreSQL keeps for a statement run often (the
    generic plan), with sequential scans ruled out where an index can serve: a test table is
    small enough to be read whole otherwise."""
    await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
    await conn.execute("SET LOCAL enable_seqscan = off")
    # The connection's counts not yet reported include earlier transactions': a difference.
    before = await conn.fetchval(_READ, table)
    result = await read()
    return int(await conn.fetchval(_READ, table) - before), result
