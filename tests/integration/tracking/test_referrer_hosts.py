"""Migration 0212 reduces the referrers stored before to their host with the same result as
`kept_referrer`, the reduction new orders get, on real PostgreSQL; those it leaves as they
were (hosts Python checks further) read back reduced, and so does every reduced one."""

from __future__ import annotations

import re
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
    # Python checks these further (brackets, percent signs, non-ASCII): left to the reader.
    "http://[notip]/",
    "http://[1.2.3.4]/",
    "http://us[er@host.com/",
    "https://ex\uff0fample.com/",
    "http://[fe80::1%25ETH0]/",
    "http://A%B.com/",
    "https://B\u00fccher.example/",
]


def _netloc(referrer: str) -> str | None:
    text = referrer if "//" in referrer else f"//{referrer}"
    found = re.match(r"(?:[A-Za-z][A-Za-z0-9+.-]*:)?//([^/?#]*)", text)
    return None if found is None else found.group(1)


LEFT_AS_SENT = {
    r
    for r in REFERRERS
    if (netloc := _netloc(r)) is not None
    and (any(c in netloc for c in "[]%") or not netloc.isascii())
}


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
    stored = {int(row["order_id"]): row["referrer"] for row in rows}
    every = [*REFERRERS, None]
    for n, referrer in enumerate(every):
        expected = referrer if referrer in LEFT_AS_SENT else kept_referrer(referrer)
        assert stored[n] == expected, referrer
        # What the store reads back (store/rows.py) is the reduction of what was sent.
        assert kept_referrer(stored[n]) == kept_referrer(referrer), referrer


__all__ = ["db_pool"]
