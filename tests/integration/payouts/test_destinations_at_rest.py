"""Payout destinations in PostgreSQL: only ever stored encrypted, and old plain rows sealed."""

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
from services.payouts.destinations import DestinationCipher, new_key
from services.payouts.schema import SCHEMA
from services.payouts.settings import PayoutsSettings
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.runtime.db import create_pool, migrate
from shared.runtime.service import ServiceConfigurationError
from shared.tools.infra import InfraUrls
from tests.unit.payouts.builders import account as account_event
from tests.unit.payouts.builders import uid

pytestmark = pytest.mark.integration

KEY = new_key()
SETTINGS = PayoutsSettings(destination_key=SecretStr(KEY))


@pytest.fixture
async def fresh_pool(infra: InfraUrls, db_pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a new empty database, dropped afterwards."""
    name = f"destinations_{uuid.uuid4().hex[:12]}"
    await db_pool.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(infra.database_url)._replace(path=f"/{name}"))
    pool = await create_pool(url, schema=SCHEMA.name, min_size=1, max_size=2)
    yield pool
    await pool.close()
    await db_pool.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def _table_text(pool: asyncpg.Pool) -> str:
    rows = await pool.fetch("SELECT a::text AS row FROM payouts_accounts a")
    return "\n".join(r["row"] for r in rows)


async def test_accounts_are_stored_with_the_destination_encrypted(db_pool: asyncpg.Pool) -> None:
    db = PostgresPayoutsStore(db_pool)
    cipher = await open_destinations(db, SETTINGS)
    creator, token = uid("cr"), f"tok_{uuid.uuid4().hex}"
    data = account_event(creator, method="bank_transfer", destination=token, form="W-9").data
    account = translate.payout_account(data, datetime.now(UTC), seal=cipher.seal)
    async with db.transaction() as repo:
        assert await repo.save_account(account)
        stored = (await repo.accounts([creator]))[creator]
    assert token not in await _table_text(db_pool)
    row = await db_pool.fetchrow(
        "SELECT destination_token, destination_sealed FROM payouts_accounts WHERE creator_id = $1",
        creator,
    )
    assert row["destination_token"] is None and token.encode() not in row["destination_sealed"]
    assert cipher.open(creator, stored.destination).get_secret_value() == token


async def test_destinations_stored_in_plain_text_before_0301_are_sealed_at_start(
    fresh_pool: asyncpg.Pool,
) -> None:
    before = [m for m in SCHEMA.migrations() if m.version < 301]
    assert [m.name for m in SCHEMA.migrations() if m.version == 301] == [
        "0301_payouts_sealed_destinations"
    ]
    await migrate(fresh_pool, SCHEMA, before)
    plain = {uid("cr"): f"tok_legacy_{uuid.uuid4().hex}" for _ in range(3)}
    await fresh_pool.executemany(
        """INSERT INTO payouts_accounts (creator_id, method, destination_token, currency,
               tax_form_type, tax_form_status, updated_at)
           VALUES ($1, 'paypal', $2, 'USD', 'W-9', 'verified', now())""",
        list(plain.items()),
    )
    applied = await migrate(fresh_pool, SCHEMA)
    assert applied == [m.name for m in SCHEMA.migrations() if m.version >= 301]
    assert applied[0] == "0301_payouts_sealed_destinations"
    db = PostgresPayoutsStore(fresh_pool)

    cipher = await open_destinations(db, SETTINGS)

    text = await _table_text(fresh_pool)
    assert not any(token in text for token in plain.values())
    async with db.transaction() as repo:
        accounts = await repo.accounts(plain)
    assert {c: cipher.open(c, a.destination).get_secret_value() for c, a in accounts.items()} == (
        plain
    )
    assert await db.seal_plain_destinations(cipher.seal) == 0  # nothing left to seal


async def test_the_service_refuses_to_start_with_another_key(fresh_pool: asyncpg.Pool) -> None:
    await migrate(fresh_pool, SCHEMA)
    db = PostgresPayoutsStore(fresh_pool)
    first = DestinationCipher.from_setting(SETTINGS.destination_key)
    creator = uid("cr")
    await fresh_pool.execute(
        """INSERT INTO payouts_accounts (creator_id, method, destination_sealed, currency,
               tax_form_type, tax_form_status, updated_at)
           VALUES ($1, 'paypal', $2, 'USD', 'W-9', 'verified', now())""",
        creator,
        first.seal(creator, SecretStr("tok_x")).data,
    )
    other = PayoutsSettings(destination_key=SecretStr(new_key()))
    with pytest.raises(ServiceConfigurationError, match="another PAYOUTS_DESTINATION_KEY"):
        await open_destinations(db, other)
    assert (await open_destinations(db, SETTINGS)).key_id == first.key_id
