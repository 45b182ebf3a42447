"""The creator page's reads: one creator's payouts, their deals' confirmations and the status
events each payout published, all from payouts' own tables, as of one snapshot, read-only."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from services.payouts.creator_page.timeline import DealView, StatusEvent, deal_views
from services.payouts.store.postgres import PostgresPayoutsTransaction
from shared.contract.events import Topic, decode


async def creator_deals(pool: asyncpg.Pool, creator_id: str) -> list[DealView]:
    """Every deal of the creator that has a payout, newest activity first."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        repo = PostgresPayoutsTransaction(conn)
        payouts = [p for p in await repo.payouts_of(creator_id) if p.creator_id == creator_id]
        deal_ids = sorted({p.deal_id for p in payouts})
        confirmations = {deal_id: dict(await repo.confirmed(deal_id)) for deal_id in deal_ids}
        events = await status_events(conn, deal_ids, {p.payout_id for p in payouts})
        account = (await repo.accounts([creator_id])).get(creator_id)
    cooling_off_until = None if account is None else account.cooling_off_until
    return deal_views(payouts, confirmations, events, cooling_off_until)


async def status_events(
    conn: asyncpg.Connection, deal_ids: Iterable[str], payout_ids: set[str]
) -> list[StatusEvent]:
    """The `payout.<status>` events of these payouts, in the order they were written (the
    outbox keeps every event payouts published; its key is the deal)."""
    rows = await conn.fetch(
        """SELECT value FROM outbox
           WHERE topic = $1 AND kafka_key = ANY($2::bytea[]) ORDER BY seq""",
        Topic.PAYOUTS_STATUS.value,
        [d.encode() for d in deal_ids],
    )
    events: list[StatusEvent] = []
    for row in rows:
        event: Any = decode(Topic.PAYOUTS_STATUS, bytes(row["value"]))
        if event.data.payout_id in payout_ids:
            events.append(StatusEvent(event.data.payout_id, event.data.status, event.time))
    return events
