"""`creatorflow db migrate`: every service's PostgreSQL schema."""

from __future__ import annotations

import asyncio

import typer

from shared.runtime.db import MigrationError, create_pool, migrate
from shared.tools.cli.console import console, fail
from shared.tools.cli.settings import database_url
from shared.tools.schemas import SERVICE_SCHEMAS

app = typer.Typer(help="PostgreSQL schema migrations.", no_args_is_help=True)


@app.command("migrate")
def migrate_command() -> None:
    """Apply pending migrations to each service's schema (safe to run from several instances
    at once)."""
    urls = {schema.name: database_url(schema.name) for schema in SERVICE_SCHEMAS}

    async def run() -> dict[str, list[str]]:
        applied = {}
        for schema in SERVICE_SCHEMAS:
            pool = await create_pool(urls[schema.name], schema=schema.name, min_size=1, max_size=1)
            try:
                applied[schema.name] = await migrate(pool, schema)
            finally:
                await pool.close()
        return applied

    try:
        applied = asyncio.run(run())
    except MigrationError as error:
        fail(str(error))
    except OSError as error:
        fail(f"cannot reach the database: {error}", hint="is DATABASE_URL right?")
    for schema in SERVICE_SCHEMAS:
        names = applied[schema.name]
        total = len(schema.migrations())
        console.print(f"{schema.name}: {len(names)} applied now, {total} in all.")
        for name in names:
            console.print(f"  [green]+[/] {name}")
