"""Running a command's database work, with errors a user can act on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from shared.runtime.db import create_pool
from shared.tools.cli.console import fail
from shared.tools.cli.settings import database_url

T = TypeVar("T")


def on_database(service: str, action: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
    """Run `action` on a one-connection pool to `service`'s schema, closed after. Tables not
    migrated yet and an unreachable database end the command with what to do; any other
    error is `action`'s to raise."""

    async def run() -> T:
        pool = await create_pool(database_url(service), schema=service, min_size=1, max_size=1)
        try:
            return await action(pool)
        finally:
            await pool.close()

    try:
        return asyncio.run(run())
    except asyncpg.UndefinedTableError:
        fail(f"the {service} tables do not exist", hint="run: creatorflow db migrate")
    except OSError as error:
        fail(f"cannot reach the database: {error}", hint="is DATABASE_URL right?")
