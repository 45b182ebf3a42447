"""Migration 0212 reduces the referrers stored before to their host with the same result as
`kept_referrer`, the reduction new orders get, on real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from services.tracking.domain.leaks import kept_referrer
from tests.integration.tracking.conftest import db_pool

pytestmark = pytest.mark.integration

MIGRATION = (
    Path(__file__).resolve().parents[3]
    / "services/tracking/migrations/0212_tracking_referrer_hosts.sql"
)

REFERRERS = [
    "https://www.instagram.com/",
    "https://WWW.RetailMeNot.com/view/shop?email=jane%40example.com#x",
    "www.x.com/a?b=c",
    "x.com",
    "x.com:8080",
    "https://user:pass@Host.COM:8080/x",
    "https://a@b@c.com/",
    "http://[::1]:80/",
    "http://[2001:db8::7]/p",
    "http://[::1/",
    "http://h]/",
    "example.com/a//b",
    "android-app://com.google.android.gm/",
    "HTTPS://X.com./",
    "a:b//c",
    "1x://h/",
    "//h",
    "https://",
    "?//q",
    "?utm_source=x",
    "/path/only",
    "mailto:jane@example.com",
    "https://xn--bcher-kva.example/",
    "https://t.co",
]


async def test_stored_referrers_are_reduced_as_new_ones_are(db_pool: asyncpg.Pool) -> None:
    async with db_pool.acquire() as conn, conn.transaction():
        # A table of the same name in the session's temporary schema, searched first: the
        # migration's own text runs on it, not on the service's orders.
        await conn.execute(
            "CREATE TEMP TABLE tracking_orders (order_id text PRIMARY KEY, referrer text) "
            "ON COMMIT DROP"
        )
        await conn.executemany(
            "INSERT INTO tracking_orders VALUES ($1, $2)",
            [(str(n), r) for n, r in enumerate([*REFERRERS, None])],
        )
        await conn.execute(MIGRATION.read_text())
        rows = await conn.fetch("SELECT order_id, referrer FROM tracking_orders")
    reduced = {int(row["order_id"]): row["referrer"] for row in rows}
    assert [reduced[n] for n in range(len(REFERRERS) + 1)] == [
        kept_referrer(r) for r in [*REFERRERS, None]
    ]


__all__ = ["db_pool"]
