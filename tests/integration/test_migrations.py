"""The migrations runner against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from shared.runtime.db import MigrationError, create_pool, load_migrations, migrate
from shared.tools.infra import InfraUrls

pytestmark = pytest.mark.integration


@pytest.fixture
async def fresh_database_url(infra: InfraUrls, db_pool: asyncpg.Pool) -> AsyncIterator[str]:
    """A new empty database on the test server, dropped afterwards."""
    name = f"migrations_{uuid.uuid4().hex[:12]}"
    await db_pool.execute(f'CREATE DATABASE "{name}"')
    yield urlunsplit(urlsplit(infra.database_url)._replace(path=f"/{name}"))
    await db_pool.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_concurrent_instances_apply_each_migration_once(fresh_database_url: str) -> None:
    pools = [await create_pool(fresh_database_url, min_size=1, max_size=1) for _ in range(5)]
    try:
        results = await asyncio.gather(*(migrate(pool) for pool in pools))
        applied = [name for names in results for name in names]
        expected = [m.name for m in load_migrations()]
        assert sorted(applied) == sorted(expected)
        rows = await pools[0].fetch("SELECT name FROM schema_migrations ORDER BY version")
        assert [r["name"] for r in rows] == expected
        assert await migrate(pools[0]) == []
    finally:
        for pool in pools:
            await pool.close()


async def test_edited_migration_is_refused(fresh_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_table (id int);")
    pool = await create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        assert await migrate(pool, load_migrations(tmp_path)) == ["0001_first"]
        (tmp_path / "0001_first.sql").write_text("CREATE TABLE first_table (id bigint);")
        with pytest.raises(MigrationError, match="changed after it was applied"):
            await migrate(pool, load_migrations(tmp_path))
    finally:
        await pool.close()


async def test_failed_migration_rolls_back_whole(fresh_database_url: str, tmp_path: Path) -> None:
    (tmp_path / "0001_broken.sql").write_text("CREATE TABLE half (id int); SELECT no_such_fn();")
    pool = await create_pool(fresh_database_url, min_size=1, max_size=1)
    try:
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(pool, load_migrations(tmp_path))
        assert await pool.fetchval("SELECT to_regclass('half')") is None
        assert await pool.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await pool.close()


def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_Add Table.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNNN_lowercase_name\.sql"):
        load_migrations(tmp_path)
