"""A database of the releases before schemas (every table in `public`) is adopted in place.

The legacy database is built the way those releases built it: their migrations, in version
order, in `public`, recorded in `public.schema_migrations` with the same checksums: the shared
tables' up to 0006, and every service's (later service migrations too, so that today's stores
can write the rows to adopt).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from pydantic import SecretStr

from services.payouts import translate
from services.payouts.app import open_destinations
from services.payouts.destinations import new_key
from services.payouts.schema import SCHEMA as PAYOUTS
from services.payouts.settings import PayoutsSettings
from services.payouts.store.postgres import PostgresPayoutsStore
from services.tracking.schema import SCHEMA as TRACKING
from shared.runtime.db import MigrationError, ServiceSchema, create_pool, load_migrations, migrate
from shared.runtime.legacy_schema import LAST_RELEASE_SHARED
from shared.tools.infra import InfraUrls
from shared.tools.schemas import SERVICE_SCHEMAS
from tests.unit.payouts.builders import account

pytestmark = pytest.mark.integration

SETTINGS = PayoutsSettings(destination_key=SecretStr(new_key()))
EVERYTHING = sorted(
    {m.version: m for s in SERVICE_SCHEMAS for m in s.migrations()}.values(),
    key=lambda m: m.version,
)
SHARED = {m.version for m in load_migrations()}
LEGACY = [m for m in EVERYTHING if m.version not in SHARED or m.version in LAST_RELEASE_SHARED]


@pytest.fixture
async def legacy_url(infra: InfraUrls, db_pool: asyncpg.Pool) -> AsyncIterator[str]:
    """A new database laid out as before schemas, dropped afterwards."""
    name = f"legacy_{uuid.uuid4().hex[:12]}"
    await db_pool.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(infra.database_url)._replace(path=f"/{name}"))
    pool = await create_pool(url, schema="public", min_size=1, max_size=1)
    try:
        await migrate(pool, ServiceSchema("public"), LEGACY)
    finally:
        await pool.close()
    yield url
    await db_pool.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def _count(conn: asyncpg.Connection, table: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


async def test_a_service_takes_its_tables_and_its_share_of_the_shared_rows(
    legacy_url: str,
) -> None:
    legacy = await create_pool(legacy_url, schema="public", min_size=1, max_size=1)
    creator, token = f"cr-{uuid.uuid4().hex[:8]}", f"tok_{uuid.uuid4().hex}"
    try:
        db = PostgresPayoutsStore(legacy)
        cipher = await open_destinations(db, SETTINGS)
        data = account(creator, method="bank_transfer", destination=token, form="W-9").data
        async with db.transaction() as repo:
            assert await repo.save_account(
                translate.payout_account(data, datetime.now(UTC), seal=cipher.seal)
            )
        for seq, producer in enumerate(["payouts", "tracking", "", "payouts"], start=1):
            await legacy.execute(
                """INSERT INTO outbox (event_id, topic, value, producer, published_at)
                   VALUES ($1, 'payouts.status', '{}', $2, CASE WHEN $3 THEN now() END)""",
                f"ev-{seq}",
                producer,
                seq == 1,
            )
        await legacy.execute(
            """INSERT INTO processed_events (consumer, source, event_id, event_type, topic,
                   kafka_partition, kafka_offset)
               VALUES ('payouts', 's', 'e1', 't', 'deals.signed', 0, 1),
                      ('tracking', 's', 'e2', 't', 'orders', 0, 1)"""
        )
        await legacy.execute(
            """INSERT INTO fx_snapshots (base, as_of, source, rates, event_id)
               VALUES ('USD', now(), 'ecb', '{"EUR": "0.9"}', 'fx-1')"""
        )
    finally:
        await legacy.close()

    pool = await create_pool(legacy_url, schema=PAYOUTS.name, min_size=1, max_size=2)
    try:
        assert await migrate(pool, PAYOUTS) == [], "every migration had run: none runs again"
        async with PostgresPayoutsStore(pool).transaction() as repo:
            stored = (await repo.accounts([creator]))[creator]
        assert cipher.open(creator, stored.destination).get_secret_value() == token
        outbox = await pool.fetch("SELECT event_id, producer FROM outbox ORDER BY seq")
        assert [(r["event_id"], r["producer"]) for r in outbox] == [
            ("ev-1", "payouts"),
            ("ev-3", ""),
            ("ev-4", "payouts"),
        ]
        # New rows continue after the adopted ones.
        seq = await pool.fetchval(
            """INSERT INTO outbox (event_id, topic, value, producer)
               VALUES ('ev-5', 'payouts.status', '{}', 'payouts') RETURNING seq"""
        )
        assert seq > 4
        assert await _count(pool, "processed_events") == 2
        assert await _count(pool, "fx_snapshots") == 1
        # The ledger's guards moved with its tables.
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pool.execute("TRUNCATE payouts_postings")
        assert await pool.fetchval("SELECT to_regclass('public.payouts_accounts')") is None
        assert await migrate(pool, PAYOUTS) == []
    finally:
        await pool.close()

    tracking = await create_pool(legacy_url, schema=TRACKING.name, min_size=1, max_size=1)
    try:
        assert await migrate(tracking, TRACKING) == []
        assert await tracking.fetchval("SELECT to_regclass('tracking_deals')") is not None
        assert [r["event_id"] for r in await tracking.fetch("SELECT event_id FROM outbox")] == [
            "ev-2",
            "ev-3",
        ]
    finally:
        await tracking.close()
    conn = await asyncpg.connect(legacy_url)
    try:
        left = await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename"
        )
        assert not [r for r in left if r["tablename"].startswith(("payouts_", "tracking_"))]
    finally:
        await conn.close()


async def test_a_database_older_than_the_last_release_before_schemas_is_refused(
    infra: InfraUrls, db_pool: asyncpg.Pool
) -> None:
    name = f"legacy_{uuid.uuid4().hex[:12]}"
    await db_pool.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(infra.database_url)._replace(path=f"/{name}"))
    try:
        old = [m for m in LEGACY if m.version != max(LAST_RELEASE_SHARED)]
        public = await create_pool(url, schema="public", min_size=1, max_size=1)
        try:
            await migrate(public, ServiceSchema("public"), old)
        finally:
            await public.close()
        pool = await create_pool(url, schema=PAYOUTS.name, min_size=1, max_size=1)
        try:
            with pytest.raises(MigrationError, match="never ran"):
                await migrate(pool, PAYOUTS)
        finally:
            await pool.close()
    finally:
        await db_pool.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_a_start_that_stopped_before_adopting_leaves_the_next_start_to_adopt(
    legacy_url: str,
) -> None:
    """A refused or killed first start may have made the service's schema and its empty
    migrations table: the next start still adopts the tables, rows and all, rather than
    creating empty ones beside them."""
    legacy = await create_pool(legacy_url, schema="public", min_size=1, max_size=1)
    creator = f"cr-{uuid.uuid4().hex[:8]}"
    try:
        db = PostgresPayoutsStore(legacy)
        cipher = await open_destinations(db, SETTINGS)
        data = account(creator, destination="tok_kept", form="W-9").data
        async with db.transaction() as repo:
            assert await repo.save_account(
                translate.payout_account(data, datetime.now(UTC), seal=cipher.seal)
            )
        await legacy.execute(f'CREATE SCHEMA "{PAYOUTS.name}"')
        await legacy.execute(
            f"""CREATE TABLE "{PAYOUTS.name}".schema_migrations (
                    version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                    applied_at timestamptz NOT NULL DEFAULT now())"""
        )
    finally:
        await legacy.close()
    pool = await create_pool(legacy_url, schema=PAYOUTS.name, min_size=1, max_size=1)
    try:
        assert await migrate(pool, PAYOUTS) == []
        async with PostgresPayoutsStore(pool).transaction() as repo:
            assert creator in await repo.accounts([creator])
    finally:
        await pool.close()
