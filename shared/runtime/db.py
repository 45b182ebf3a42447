"""PostgreSQL: the asyncpg pool factory and the migrations runner.

Migrations are the ordered `NNNN_name.sql` files in `deploy/migrations/`. Each runs in its own
transaction and is recorded in `schema_migrations`; a session-level advisory lock makes it safe
for several service instances to migrate the same database at once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import structlog

log = structlog.get_logger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# An arbitrary constant shared by every process that migrates this schema.
_MIGRATION_LOCK_ID = 0x43_46_4D_49_47  # "CFMIG"


async def create_pool(database_url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    """One pool per process, created in the lifespan and closed with it."""
    pool = await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size, command_timeout=60
    )
    assert pool is not None
    return pool


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


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if match is None:
            raise MigrationError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        migrations.append(Migration(int(match.group(1)), path.stem, path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"{directory}: two migrations share a version number")
    return migrations


async def migrate(pool: asyncpg.Pool, migrations: list[Migration] | None = None) -> list[str]:
    """Apply the migrations not yet applied, in order; returns the names applied now.

    Refuses to run if an applied migration's file changed since (checksum mismatch).
    """
    migrations = load_migrations() if migrations is None else migrations
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       checksum text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
            done = {row["version"]: row for row in rows}
            for migration in migrations:
                row = done.get(migration.version)
                if row is not None:
                    if row["checksum"] != migration.checksum:
                        raise MigrationError(
                            f"migration {migration.name} changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) "
                        "VALUES ($1, $2, $3)",
                        migration.version,
                        migration.name,
                        migration.checksum,
                    )
                applied_now.append(migration.name)
                log.info("migration applied", migration=migration.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    return applied_now
