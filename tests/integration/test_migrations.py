"""The migrations runner against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.matching.schema import SCHEMA as MATCHING
from services.payouts.schema import SCHEMA as PAYOUTS
from shared.runtime.db import MigrationError, ServiceSchema, create_pool, load_migrations, migrate
from shared.tools.infra import InfraUrls
from shared.tools.schemas import SERVICE_SCHEMAS

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh_database_url(infra: InfraUrls, db_pool: asyncpg.Pool) -> AsyncIterator[str]:
    """A new empty database on the test server, dropped afterwards."""
    name = f"migrations_{uuid.uuid4().hex[:12]}"
    await db_pool.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(infra.database_url)._replace(path=f"/{name}"))
    await db_pool.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


SCRATCH = ServiceSchema("scratch")


@asynccontextmanager
async def one_connection(url: str, schema: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool of one connection to `schema` of the database at `url`, closed on exit."""
    pool = await create_pool(url, schema=schema, min_size=1, max_size=1)
    try:
        yield pool
    finally:
        await pool.close()


async def test_concurrent_instances_apply_each_migration_once(fresh_database_url: str) -> None:
    pools = [
        await create_pool(fresh_database_url, schema=PAYOUTS.name, min_size=1, max_size=1)
        for _ in range(5)
    ]
    try:
        results = await asyncio.gather(*(migrate(pool, PAYOUTS) for pool in pools))
        applied = [name for names in results for name in names]
        expected = [m.name for m in PAYOUTS.migrations()]
        assert sorted(applied) == sorted(expected)
        rows = await pools[0].fetch("SELECT name FROM schema_migrations ORDER BY version")
        assert [r["name"] for r in rows] == expected
        assert await migrate(pools[0], PAYOUTS) == []
    finally:
        for pool in pools:
            await pool.close()


async def test_each_service_owns_a_schema_with_its_own_runtime_tables(
    fresh_database_url: str,
) -> None:
    for schema in SERVICE_SCHEMAS:
        async with one_connection(fresh_database_url, schema.name) as pool:
            await migrate(pool, schema)
    conn = await asyncpg.connect(fresh_database_url)
    try:
        tables = await conn.fetch(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
    finally:
        await conn.close()
    by_schema: dict[str, set[str]] = {}
    for row in tables:
        by_schema.setdefault(row["schemaname"], set()).add(row["tablename"])
    assert set(by_schema) == {"matching", "tracking", "payouts"}
    for name, names in by_schema.items():
        shared = {"schema_migrations", "processed_events", "outbox", "fx_snapshots"}
        assert shared <= names, name
        assert all(t.startswith(f"{name}_") for t in names - shared), (name, names - shared)


async def test_a_pool_of_another_schema_is_refused(fresh_database_url: str) -> None:
    async with one_connection(fresh_database_url, "tracking") as pool:
        await migrate(pool, ServiceSchema("tracking"))
        with pytest.raises(MigrationError, match="with a pool of schema tracking"):
            await migrate(pool, PAYOUTS)


async def test_edited_migration_is_refused(fresh_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_table (id int);")
    async with one_connection(fresh_database_url, SCRATCH.name) as pool:
        assert await migrate(pool, SCRATCH, load_migrations(tmp_path)) == ["0001_first"]
        (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_table (id bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(pool, SCRATCH, load_migrations(tmp_path))


async def test_failed_migration_rolls_back_whole(fresh_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_broken.sql").write_text("CREATE TABLE half (id int); SELECT no_such_fn();")
    async with one_connection(fresh_database_url, SCRATCH.name) as pool:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(pool, SCRATCH, load_migrations(tmp_path))
        assert await pool.fetchval("SELECT to_regclass('half')") is None
        assert await pool.fetchval("SELECT count(*) FROM schema_migrations") == 0


def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_Add Table.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_lowercase_name\.sql"):
        load_migrations(tmp_path)


async def test_a_role_per_service_reaches_its_own_schema_only(fresh_database_url: str) -> None:
    """deploy/SECURITY.md's recipe: each service's role owns its schema and nothing else."""
    admin = await asyncpg.connect(fresh_database_url)
    suffix = uuid.uuid4().hex[:8]
    roles = {schema.name: f"{schema.name}_{suffix}" for schema in SERVICE_SCHEMAS}
    try:
        await admin.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
        for schema, role in roles.items():
            await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{suffix}'")
            await admin.execute(f"CREATE SCHEMA {schema} AUTHORIZATION {role}")
        for schema in SERVICE_SCHEMAS:
            parts = urlsplit(fresh_database_url)
            url = urlunsplit(
                parts._replace(
                    netloc=f"{roles[schema.name]}:pw-{suffix}@{parts.hostname}:{parts.port}"
                )
            )
            async with one_connection(url, schema.name) as pool:
                await migrate(pool, schema)
                assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
                for other in (s.name for s in SERVICE_SCHEMAS if s.name != schema.name):
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await pool.fetchval(f"SELECT count(*) FROM {other}.outbox")
    finally:
        for schema, role in roles.items():
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await admin.execute(f"DROP ROLE IF EXISTS {role}")
        await admin.close()


async def test_matching_0105_keys_stored_profiles_and_history_by_platform(
    fresh_database_url: str,
) -> None:
    """Profiles and follower counts stored before 0105 keep their rows, under the platform
    their profile names; afterwards a second platform account of the creator is a new row."""
    before = [m for m in MATCHING.migrations() if m.version < 105]
    async with one_connection(fresh_database_url, MATCHING.name) as pool:
        await migrate(pool, MATCHING, before)
        await pool.execute(
            """INSERT INTO matching_creators (creator_id, profile, event_time, event_id)
               VALUES ('cr-1', '{"platform": "tiktok", "handle": "@one"}', now(), 'e1')"""
        )
        await pool.execute(
            """INSERT INTO matching_follower_history (creator_id, observed_at, followers)
               VALUES ('cr-1', now() - interval '1 day', 900), ('cr-1', now(), 1000)"""
        )
        upto = [m for m in MATCHING.migrations() if m.version <= 105]
        assert await migrate(pool, MATCHING, upto) == ["0105_matching_platform_accounts"]
        creators = await pool.fetch("SELECT creator_id, platform FROM matching_creators")
        assert [tuple(r) for r in creators] == [("cr-1", "tiktok")]
        history = await pool.fetch(
            "SELECT platform, followers FROM matching_follower_history ORDER BY observed_at"
        )
        assert [tuple(r) for r in history] == [("tiktok", 900), ("tiktok", 1000)]
        await pool.execute(
            """INSERT INTO matching_creators (creator_id, platform, profile, event_time, event_id)
               VALUES ('cr-1', 'youtube', '{"platform": "youtube"}', now(), 'e2')"""
        )
        assert await pool.fetchval("SELECT count(*) FROM matching_creators") == 2
