"""PostgreSQL: a schema per service, the asyncpg pool factory, the migrations runner, and `any_of`.

Each service owns one schema (named after it) and reaches no other: its pool's `search_path`
is that schema alone, so its SQL names tables without a schema and cannot read another
service's by accident. The runtime's own tables (inbox, outbox, FX snapshots) exist once per
schema, migrated from `shared/runtime/migrations/`; a service's own tables from its
`services/<name>/migrations/`. Several services may share one database (three schemas) or
each have its own (`<SERVICE>_DATABASE_URL`).

Migrations are ordered `NNNN_name.sql` files. Each runs in its own transaction and is recorded
in the schema's `schema_migrations`; a session-level advisory lock makes it safe for several
instances to migrate at once. A database from before schemas (every table in `public`) is
adopted on a service's first start: see `shared/runtime/legacy_schema.py`.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger(__name__)

RUNTIME_MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_SCHEMA_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# An arbitrary constant shared by every process that migrates a schema of this database.
_MIGRATION_LOCK_ID = 0x43_46_4D_49_47  # "CFMIG"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(RuntimeError):
    pass


def any_of(column: str, values: Iterable[str] | None) -> tuple[str, list[list[str]]]:
    """A condition for a WHERE clause keeping the rows whose text `column` is one of `values`,
    and its argument (as `$1`); `values` None keeps every row (`true`, no argument).

    Each case is a statement text of its own, never `$1 IS NULL OR column = ANY($1)`: the plan
    PostgreSQL keeps for a statement run often cannot use an index for that condition, so every
    call for a few keys would read the whole table."""
    if values is None:
        return "true", []
    return f"{column} = ANY($1::text[])", [list(values)]


def load_migrations(*directories: Path) -> list[Migration]:
    """The migrations of `directories`, in version order (the runtime's when none is given)."""
    migrations = []
    for directory in directories or (RUNTIME_MIGRATIONS_DIR,):
        for path in sorted(directory.glob("*.sql")):
            match = _MIGRATION_NAME.match(path.name)
            if match is None:
                raise MigrationError(f"{path}: migration files are named NNNN_lowercase_name.sql")
            migrations.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{', '.join(map(str, directories))}: two migrations share a version")
    return sorted(migrations, key=lambda m: m.version)


@dataclass(frozen=True)
class ServiceSchema:
    """The schema a service owns and the migrations that build it (the runtime's first)."""

    name: str
    migrations_dir: Path | None = None
    # The name prefix of the tables and functions this service owned in the single `public`
    # schema of earlier releases (shared/runtime/legacy_schema.py).
    legacy_prefix: str | None = None

    def __post_init__(self) -> None:
        if not _SCHEMA_NAME.match(self.name):
            raise ValueError(f"schema name {self.name!r}: lowercase letters, digits and _")

    def migrations(self) -> list[Migration]:
        own = (self.migrations_dir,) if self.migrations_dir is not None else ()
        return load_migrations(RUNTIME_MIGRATIONS_DIR, *own)


async def create_pool(
    database_url: str, *, schema: str | None = None, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """One pool per process, created in the lifespan and closed with it.

    With `schema`, every connection sees that schema only (its `search_path`), so unqualified
    table names are the service's own.
    """
    settings = None
    if schema is not None:
        if not _SCHEMA_NAME.match(schema):
            raise ValueError(f"schema name {schema!r}: lowercase letters, digits and _")
        settings = {"search_path": schema}
    pool = await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        command_timeout=60,
        server_settings=settings,
        reset=_nothing_to_undo,
    )
    assert pool is not None
    return pool


async def _nothing_to_undo(conn: asyncpg.Connection) -> None:
    """The pool's reset of a connection given back. asyncpg's default sends a statement that
    undoes session state (advisory locks, LISTEN, settings), one more round trip after every
    transaction; a plain loan sets none. asyncpg still rolls back a transaction left open
    before calling this. Session state is set on a `session_connection` alone, which undoes it."""


@contextlib.asynccontextmanager
async def session_connection(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    """A pooled connection for state that outlives a transaction (a session advisory lock,
    LISTEN, SET): reset in full before it goes back, or closed if that fails, so no later loan
    finds the state behind."""
    async with pool.acquire() as conn:
        try:
            yield conn
        finally:
            try:
                await conn.reset()
            except Exception:
                # Closed already (the server ended the session) or failing now: its state
                # dies with it, and the body's own outcome is what the caller sees.
                _terminate(conn)
            except BaseException:  # the reset itself interrupted (cancelled)
                _terminate(conn)
                raise


def _terminate(conn: asyncpg.Connection) -> None:
    with contextlib.suppress(Exception):  # one the pool took back when it died is gone
        conn.terminate()


async def migrate(
    pool: asyncpg.Pool, service: ServiceSchema, migrations: Sequence[Migration] | None = None
) -> list[str]:
    """Create the service's schema if needed and apply its migrations not yet applied, in
    order (`service.migrations()` unless given); returns the names applied now. Refuses to
    run if an applied migration's file changed since (checksum mismatch).

    `pool` must be one of `create_pool(..., schema=service.name)`.
    """
    from shared.runtime.legacy_schema import adopt_legacy_tables

    schema = service.name
    migrations = service.migrations() if migrations is None else list(migrations)
    applied_now: list[str] = []
    async with session_connection(pool) as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        try:
            current = await conn.fetchval("SELECT current_schema()")
            if current is not None and current != schema:
                raise MigrationError(f"migrating {schema} with a pool of schema {current}")
            # Checked first: CREATE SCHEMA IF NOT EXISTS needs the right to create schemas in
            # the database even when the schema exists, and a role per service has only its own.
            if not await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema):
                await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = await applied(conn, "schema_migrations")
            if not done:
                # Nothing migrated here yet, even if an earlier start made the table and
                # stopped: a database of the releases before schemas is adopted first.
                await adopt_legacy_tables(conn, service, migrations)
                done = await applied(conn, "schema_migrations")
            for migration in migrations:
                if migration.version in done:
                    check_unchanged(migration, done[migration.version])
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await record(conn, migration)
                applied_now.append(migration.name)
                log.info("migration applied", schema=schema, migration=migration.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return applied_now


async def applied(conn: asyncpg.Connection, table: str) -> dict[int, str]:
    """Version -> checksum of the migrations recorded in `table`."""
    rows = await conn.fetch(f"SELECT version, checksum FROM {table}")
    return {row["version"]: row["checksum"] for row in rows}


def check_unchanged(migration: Migration, checksum: str) -> None:
    if checksum != migration.checksum:
        raise MigrationError(
            f"migration {migration.name} changed after it was applied; "
            "add a new migration instead of editing an applied one"
        )


async def record(conn: asyncpg.Connection, migration: Migration) -> None:
    await conn.execute(
        "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
        migration.version,
        migration.name,
        migration.checksum,
    )
