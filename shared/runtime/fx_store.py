"""FX snapshots in PostgreSQL: saved from `fx.rates.published`, read back to convert money.

Every service that converts money keeps its own copy of the feed, in its own schema; inserts
are idempotent on (base, as_of, source), so the service's replicas can all write. Each
snapshot is judged against the last trusted ones before it (shared.runtime.fx_moves); a suspect
one is kept with its reason, never used for money.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

import asyncpg
import structlog

from shared.contract.events import FxRatesPublished
from shared.contract.money import FxSnapshot
from shared.runtime.fx_moves import ANCHOR_AGE, rejudged
from shared.runtime.observability import FX_SNAPSHOTS_SUSPECT

log = structlog.get_logger(__name__)

_JUDGE_LOCK = 0x46_58_4A_55_44_47_45  # "FXJUDGE": serialises judging FX snapshots


def snapshot_from_event(data: FxRatesPublished) -> FxSnapshot:
    return FxSnapshot(base=data.base, rates=dict(data.rates), as_of=data.as_of, source=data.source)


async def save_snapshot(conn: asyncpg.Connection, snapshot: FxSnapshot, event_id: str) -> bool:
    """Store `snapshot` (with its `suspect` reason) unless it is already there; True when new."""
    rates = {code: str(rate) for code, rate in snapshot.rates.items()}
    inserted = await conn.fetchval(
        """INSERT INTO fx_snapshots (base, as_of, source, rates, event_id, suspect_reason)
           VALUES ($1, $2, $3, $4::jsonb, $5, $6)
           ON CONFLICT (base, as_of, source) DO NOTHING RETURNING true""",
        snapshot.base,
        snapshot.as_of,
        snapshot.source,
        json.dumps(rates),
        event_id,
        snapshot.suspect,
    )
    return bool(inserted)


async def save_judged(
    conn: asyncpg.Connection, snapshot: FxSnapshot, event_id: str, max_move: Decimal
) -> bool:
    """Store `snapshot` unless it is already there (True when new), then judge it and every
    later snapshot against the last trusted ones before each (shared.runtime.fx_moves.rejudged), so
    the verdicts do not depend on the order the feed's events arrived in."""
    if not await save_snapshot(conn, replace(snapshot, suspect=None), event_id):
        return False
    # One judge at a time, whichever service stores: verdicts read each other's.
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _JUDGE_LOCK)
    rows = await conn.fetch(f"{_SELECT} WHERE as_of >= $1 ORDER BY as_of, source", snapshot.as_of)
    stored = [_snapshot(row) for row in rows]
    trusted = await trusted_before(
        conn, snapshot.as_of, {s.base for s in stored}, until=stored[-1].as_of
    )
    for before, after in zip(stored, rejudged(stored, trusted, max_move), strict=True):
        if before.suspect != after.suspect:
            await conn.execute(
                "UPDATE fx_snapshots SET suspect_reason = $4 "
                "WHERE base = $1 AND as_of = $2 AND source = $3",
                after.base,
                after.as_of,
                after.source,
                after.suspect,
            )
            report_verdict(after)
    return True


def report_verdict(snapshot: FxSnapshot) -> None:
    """Log and count a snapshot found suspect (an operator should look at its feed)."""
    if snapshot.suspect is None:
        return
    FX_SNAPSHOTS_SUSPECT.inc()
    log.error(
        "FX snapshot is suspect: payouts that need it are held",
        base=snapshot.base,
        as_of=snapshot.as_of.isoformat(),
        source=snapshot.source,
        reason=snapshot.suspect,
    )


_SELECT = "SELECT base, as_of, source, rates::text AS rates, suspect_reason FROM fx_snapshots"


async def snapshot_at(
    conn: asyncpg.Connection | asyncpg.Pool, when: datetime, *, trusted: bool = False
) -> FxSnapshot | None:
    """The snapshot in force at `when`: the latest with `as_of <= when` (only trusted ones if
    `trusted`), or None. Its `suspect` says whether money may be converted with it."""
    only = "AND suspect_reason IS NULL" if trusted else ""
    row = await conn.fetchrow(
        f"{_SELECT} WHERE as_of <= $1 {only} ORDER BY as_of DESC, source LIMIT 1", when
    )
    return None if row is None else _snapshot(row)


async def first_trusted_after(
    conn: asyncpg.Connection | asyncpg.Pool,
    after: datetime,
    until: datetime,
    currencies: Sequence[str],
) -> FxSnapshot | None:
    """The earliest trusted snapshot with `after < as_of <= until` that quotes every one of
    `currencies` (as its base or a rate), or None."""
    row = await conn.fetchrow(
        f"""{_SELECT} WHERE as_of > $1 AND as_of <= $2 AND suspect_reason IS NULL
              AND NOT EXISTS (SELECT 1 FROM unnest($3::text[]) AS c
                              WHERE c <> trim(base) AND NOT rates ? c)
            ORDER BY as_of, source LIMIT 1""",
        after,
        until,
        list(currencies),
    )
    return None if row is None else _snapshot(row)


async def trusted_before(
    conn: asyncpg.Connection | asyncpg.Pool,
    when: datetime,
    bases: Collection[str] = (),
    *,
    until: datetime | None = None,
) -> list[FxSnapshot]:
    """What snapshots from `when` to `until` (default: `when`) are judged by
    (shared.runtime.fx_moves.references_for): the latest trusted snapshot with `as_of` before
    `when`, the latest of each of `bases`, the first trusted one, and every trusted one before
    `when` from the one in force `ANCHOR_AGE` before `when` to `ANCHOR_AGE` before `until`:
    the day's anchors of the snapshots judged, not the whole day (a feed quoting every second
    would make that 86,400 rows per snapshot)."""
    last = when if until is None else max(when, until)
    rows = await conn.fetch(
        f"""({_SELECT} WHERE as_of < $1 AND suspect_reason IS NULL
                ORDER BY as_of DESC, source LIMIT 1)
            UNION
            SELECT f.* FROM unnest($2::bpchar[]) AS b (base), LATERAL (
                {_SELECT} WHERE base = b.base AND as_of < $1 AND suspect_reason IS NULL
                ORDER BY as_of DESC, source LIMIT 1) f
            UNION
            ({_SELECT} WHERE as_of < $1 AND suspect_reason IS NULL ORDER BY as_of, source LIMIT 1)
            UNION
            {_SELECT} WHERE as_of < $1 AND suspect_reason IS NULL
              AND as_of <= $4::timestamptz - $3::interval AND as_of >= coalesce(
                (SELECT max(as_of) FROM fx_snapshots
                 WHERE as_of <= $1 - $3::interval AND suspect_reason IS NULL), '-infinity')""",
        when,
        sorted(set(bases)),
        ANCHOR_AGE,
        last,
    )
    return [_snapshot(row) for row in rows]


def _snapshot(row: asyncpg.Record) -> FxSnapshot:
    rates = {code: Decimal(rate) for code, rate in json.loads(row["rates"]).items()}
    return FxSnapshot(
        base=row["base"].strip(),
        rates=rates,
        as_of=row["as_of"],
        source=row["source"],
        suspect=row["suspect_reason"],
    )
