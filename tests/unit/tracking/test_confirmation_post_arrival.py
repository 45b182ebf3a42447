"""An automatic confirmation says when the post that completed it reached us (its Kafka record's
timestamp), so payouts can measure post -> payout.sent; only when made on that arrival."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from services.tracking.handlers import apply_batch
from services.tracking.store.memory import MemoryTrackingStore
from shared.contract.events import CloudEvent, EventType, decode, encode
from tests.unit.tracking.builders import T0, deal_event, delivered, post_event

NOW = T0 + timedelta(days=3)
ARRIVED_MS = 1_764_000_000_123  # a record timestamp, ms since the epoch


def arrived(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


async def apply(
    store: MemoryTrackingStore, events: list[CloudEvent[Any]], stamps: list[int | None]
) -> list[CloudEvent[Any]]:
    """Apply one batch whose records carry `stamps`; the confirmations it published, read
    back with the consumers' codec."""
    batch = [
        (event, replace(delivery, timestamp_ms=stamp))
        for (event, delivery), stamp in zip(delivered(events), stamps, strict=True)
    ]
    before = len(store.state.outbox)
    async with store.transaction() as tx:
        await apply_batch(tx, batch, now=NOW)
    return [
        decode("deliverables.confirmed", encode(e))
        for e in store.state.outbox[before:]
        if e.type == EventType.DELIVERABLE_CONFIRMED
    ]


async def test_a_confirmation_made_on_a_posts_arrival_carries_that_arrival() -> None:
    store = MemoryTrackingStore()
    deal = deal_event("deal-1", deliverables=(("dl-1", "reel", 1), ("dl-2", "story", 2)))
    # The same post twice in the batch: its first arrival counts.
    first, again = post_event("p-1", event_id="e-1"), post_event("p-1", event_id="e-2")
    story = post_event("s-1", kind="story")
    [confirmation] = await apply(
        store, [deal, first, again, story], [None, ARRIVED_MS, ARRIVED_MS + 40, ARRIVED_MS + 80]
    )
    assert confirmation.data.deliverable_id == "dl-1"
    assert confirmation.data.post_received_at == arrived(ARRIVED_MS)
    # The second story completes dl-2, which was waiting for it: its arrival counts, not the
    # first story's.
    [confirmation] = await apply(
        store, [post_event("s-2", kind="story", posted_at=T0)], [ARRIVED_MS + 5_000]
    )
    assert confirmation.data.deliverable_id == "dl-2"
    assert confirmation.data.post_received_at == arrived(ARRIVED_MS + 5_000)


async def test_a_confirmation_made_on_a_deals_arrival_or_without_timestamps_carries_none() -> None:
    store = MemoryTrackingStore()
    assert await apply(store, [post_event("p-1")], [ARRIVED_MS]) == []
    # The deal arrives after its post: nothing says when the payable moment began.
    [confirmation] = await apply(store, [deal_event("deal-1")], [ARRIVED_MS + 9_000])
    assert confirmation.data.post_received_at is None
    # A snapshot applied before and delivered again with the deal stamps nothing either.
    again = MemoryTrackingStore()
    post = post_event("p-3", creator_id="cr-3")
    assert await apply(again, [post], [ARRIVED_MS]) == []
    [confirmation] = await apply(
        again, [post, deal_event("deal-3", creator_id="cr-3")], [ARRIVED_MS, ARRIVED_MS + 9_000]
    )
    assert confirmation.data.post_received_at is None
    other = MemoryTrackingStore()
    [confirmation] = await apply(
        other,
        [deal_event("deal-2", creator_id="cr-2"), post_event("p-2", creator_id="cr-2")],
        [None, None],
    )
    assert confirmation.data.post_received_at is None
