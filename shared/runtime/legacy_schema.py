"""Adopting a database of the releases before schemas, where every table was in `public`.

Then the three services shared one inbox, one outbox and one FX snapshot table, and each
service's tables carried its name as a prefix (`payouts_postings`). On a service's first start
on such a database, before its schema has migrations of its own, this moves what is the
service's into its schema, in one transaction:

- its tables and functions (`public.payouts_*` into `payouts`), with their rows, sequences,
  indexes and triggers, as they are;
- copies of the shared rows it may need: every inbox row (a replayed event stays a no-op;
  other services' consumer names never match), its outbox rows (and unowned ones, which
  any relay could publish; consumers deduplicate them by event id), and every FX snapshot;
- the record of its migrations already applied, so none runs twice.

The shared `public` tables stay for the services not yet adopted; once all three have started
on this release they are unused (README, "Upgrading"). Nothing is adopted when the service
never ran on the database (no migration of its own recorded in `public`). A start that
stopped before adopting (refused, or killed) leaves the schema without a recorded migration,
so the next start adopts (`shared/runtime/db.py::migrate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import asyncpg
import structlog

from shared.runtime.db import (
    Migration,
    MigrationError,
    ServiceSchema,
    applied,
    check_unchanged,
    load_migrations,
    record,
)

log = structlog.get_logger(__name__)

# The shared tables' migrations of the last release before schemas (0001 to 0006): a database
# of that release has them all. Later ones run in the service's schema when it is adopted.
LAST_RELEASE_SHARED: Final = frozenset(range(1, 7))


async def adopt_legacy_tables(
    conn: asyncpg.Connection, service: ServiceSchema, migrations: Sequence[Migration]
) -> None:
    if service.legacy_prefix is None:
        return
    # The catalog, not to_regclass: a role of its own schema only may not look into `public`.
    exists = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_tables "
        "WHERE schemaname = 'public' AND tablename = 'schema_migrations')"
    )
    if not exists:
        return
    legacy = await applied(conn, "public.schema_migrations")
    runtime = {m.version for m in load_migrations()}
    own = [m for m in migrations if m.version not in runtime and m.version in legacy]
    if not own:
        return
    missing = sorted(LAST_RELEASE_SHARED - set(legacy))
    if missing:
        raise MigrationError(
            "this database's shared tables are older than the last release before schemas "
            f"(migrations {missing} never ran): start that release (the last whose "
            "migrations sit in deploy/migrations/, up to 0006_outbox_per_producer) once, "
            "then this one"
        )
    for migration in own:
        check_unchanged(migration, legacy[migration.version])
    schema = service.name
    async with conn.transaction():
        for migration in migrations:
            if migration.version in runtime:
                await conn.execute(migration.sql)
                await record(conn, migration)
        tables = await _move_owned(conn, schema, service.legacy_prefix)
        await _copy_shared_rows(conn, schema)
        for migration in own:
            await record(conn, migration)
    log.info("adopted tables from the public schema", schema=schema, tables=tables)


async def _move_owned(conn: asyncpg.Connection, schema: str, prefix: str) -> int:
    tables = await conn.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
        "AND starts_with(tablename, $1)",
        prefix,
    )
    for row in tables:
        await conn.execute(f'ALTER TABLE public."{row["tablename"]}" SET SCHEMA "{schema}"')
    functions = await conn.fetch(
        """SELECT p.oid::regprocedure::text AS signature FROM pg_proc p
           JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'public' AND starts_with(p.proname, $1)""",
        prefix,
    )
    for row in functions:
        # regprocedure prints the name unqualified when `public` is not on the search path.
        signature = row["signature"].removeprefix("public.")
        await conn.execute(f'ALTER FUNCTION public.{signature} SET SCHEMA "{schema}"')
    return len(tables)


async def _copy_shared_rows(conn: asyncpg.Connection, schema: str) -> None:
    await conn.execute(
        f"""INSERT INTO "{schema}".processed_events
                (consumer, event_id, event_type, topic, kafka_partition, kafka_offset,
                 processed_at, source)
            SELECT consumer, event_id, event_type, topic, kafka_partition, kafka_offset,
                   processed_at, source
            FROM public.processed_events"""
    )
    await conn.execute(
        f"""INSERT INTO "{schema}".outbox
                (seq, event_id, topic, kafka_key, value, created_at, published_at, producer)
            SELECT seq, event_id, topic, kafka_key, value, created_at, published_at, producer
            FROM public.outbox WHERE producer IN ($1, '')""",
        schema,
    )
    await conn.execute(
        f"""SELECT setval(pg_get_serial_sequence('"{schema}".outbox', 'seq'),
                          GREATEST((SELECT max(seq) FROM "{schema}".outbox), 1))"""
    )
    await conn.execute(
        f"""INSERT INTO "{schema}".fx_snapshots
                (base, as_of, source, rates, event_id, stored_at, suspect_reason)
            SELECT base, as_of, source, rates, event_id, stored_at, suspect_reason
            FROM public.fx_snapshots"""
    )
