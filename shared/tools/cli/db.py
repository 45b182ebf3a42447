"""`creatorflow db migrate`: the PostgreSQL schema."""

from __future__ import annotations

import asyncio

import typer

from shared.runtime.db import MigrationError, create_pool, load_migrations, migrate
from shared.tools.cli.console import console, fail
from shared.tools.cli.settings import database_url

app = typer.Typer(help="PostgreSQL schema migrations.", no_args_is_help=True)


@app.command("migrate")
def migrate_command() -> None:
    """Apply pending migrations (safe to run from several instances at once)."""

    async def run() -> list[str]:
        pool = await create_pool(database_url(), min_size=1, max_size=1)
        try:
            return await migrate(pool)
        finally:
            await pool.close()

    try:
        applied = asyncio.run(run())
    except MigrationError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot reach the database: {error}", hint="is DATABASE_URL right?")
    total = len(load_migrations())
    console.print(f"{len(applied)} applied now, {total} in all.")
    for name in applied:
        console.print(f"  [green]+[/] {name}")
