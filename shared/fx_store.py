"""FX snapshots in PostgreSQL: saved from `fx.rates.published`, read back to convert money.

Every service that converts money keeps its copy of the feed in one shared table; inserts are
idempotent on (base, as_of, source), so several consumers of `fx.rates` can all write.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import asyncpg

from shared.events import FxRatesPublished
from shared.money import FxSnapshot


def snapshot_from_event(data: FxRatesPublished) -> FxSnapshot:
    return FxSnapshot(base=data.base, rates=dict(data.rates), as_of=data.as_of, source=data.source)


async def save_snapshot(conn: asyncpg.Connection, snapshot: FxSnapshot, event_id: str) -> bool:
    """Store `snapshot` unless it is already there; True when it was new."""
    rates = {code: str(rate) for code, rate in snapshot.rates.items()}
    inserted = await conn.fetchval(
        """INSERT INTO fx_snapshots (base, as_of, source, rates, event_id)
           VALUES ($1, $2, $3, $4::jsonb, $5)
           ON CONFLICT (base, as_of, source) DO NOTHING RETURNING true""",
        snapshot.base,
        snapshot.as_of,
        snapshot.source,
        json.dumps(rates),
        event_id,
    )
    return bool(inserted)


_SELECT = "SELECT base, as_of, source, rates::text AS rates FROM fx_snapshots"


async def latest_snapshot(conn: asyncpg.Connection | asyncpg.Pool) -> FxSnapshot | None:
    """The most recent snapshot (by `as_of`), or None before the first one arrived."""
    row = await conn.fetchrow(f"{_SELECT} ORDER BY as_of DESC, source LIMIT 1")
    return None if row is None else _snapshot(row)


async def snapshot_at(conn: asyncpg.Connection | asyncpg.Pool, when: datetime) -> FxSnapshot | None:
    """The snapshot in force at `when`: the latest with `as_of <= when`, or None."""
    row = await conn.fetchrow(
        f"{_SELECT} WHERE as_of <= $1 ORDER BY as_of DESC, source LIMIT 1", when
    )
    return None if row is None else _snapshot(row)


def _snapshot(row: asyncpg.Record) -> FxSnapshot:
    rates = {code: Decimal(rate) for code, rate in json.loads(row["rates"]).items()}
    return FxSnapshot(
        base=row["base"].strip(), rates=rates, as_of=row["as_of"], source=row["source"]
    )
