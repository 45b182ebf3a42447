"""The running totals of each deal (tracking_deal_totals, kept by the triggers of migration
0206) never drift: after every batch of a random mix of posts and their newer snapshots,
orders, refunds, FX snapshots converting waiting orders, clicks and attribution model changes
re-splitting credits, applied in a random order and batching on real PostgreSQL, they equal
an aggregation of the stored rows from scratch; and the attributions and leaked-order flags
at the end equal those the in-memory store (which sums from scratch) gives for the same
events."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import pytest

from services.tracking.handlers import apply_batch
from services.tracking.store.memory import MemoryTrackingStore
from services.tracking.store.postgres import PostgresTrackingStore
from shared.contract.events import CloudEvent
from tests.unit.tracking.builders import delivered
from tests.unit.tracking.test_order_independence import (
    LEAK_RULES,
    NOW,
    OrderSpec,
    Origin,
    click_events,
    deals,
    fx_events,
    model_events,
    order_events,
    post_events,
)

pytestmark = pytest.mark.integration

# Every figure of tracking_deal_totals, aggregated from the rows it stands for.
FROM_SCRATCH = """
WITH ids AS (
    SELECT deal_id FROM tracking_deal_totals
    UNION SELECT deal_id FROM tracking_deal_posts
    UNION SELECT deal_id FROM tracking_order_credits
    UNION SELECT deal_id FROM tracking_orders WHERE deal_id IS NOT NULL
), p AS (
    SELECT m.deal_id, count(*) AS posts, sum(p.likes) AS likes, sum(p.comments) AS comments,
           sum(p.shares) AS shares, sum(p.saves) AS saves, sum(p.views) AS views,
           sum(p.impressions) AS impressions, sum(p.reach) AS reach,
           coalesce(sum(p.engagement_rate), 0) AS rate_sum,
           count(p.engagement_rate) AS rated_posts, max(p.observed_at) AS last_observed
    FROM tracking_deal_posts m JOIN tracking_posts p USING (post_id)
    GROUP BY m.deal_id
), c AS (
    SELECT c.deal_id, count(*) FILTER (WHERE NOT o.fully_refunded) AS orders,
           sum(c.revenue - c.refunded) AS revenue,
           max(greatest(o.occurred_at, o.last_refund_at)) AS last_order,
           count(*) FILTER (WHERE o.leak_suspected) AS suspected_credits,
           count(*) FILTER (WHERE o.leak_suspected AND NOT o.fully_refunded) AS suspected_orders,
           coalesce(sum(c.revenue - c.refunded) FILTER (WHERE o.leak_suspected), 0)
               AS suspected_revenue
    FROM tracking_order_credits c JOIN tracking_orders o USING (order_id)
    GROUP BY c.deal_id
), o AS (
    SELECT deal_id, count(*) FILTER (WHERE status = 'pending_fx') AS pending_fx_orders,
           count(*) FILTER (WHERE leak_suspected) AS flagged_orders
    FROM tracking_orders WHERE deal_id IS NOT NULL
    GROUP BY deal_id
)
SELECT ids.deal_id,
       coalesce(p.posts, 0) AS posts, coalesce(p.likes, 0) AS likes,
       coalesce(p.comments, 0) AS comments, coalesce(p.shares, 0) AS shares,
       coalesce(p.saves, 0) AS saves, coalesce(p.views, 0) AS views,
       coalesce(p.impressions, 0) AS impressions, coalesce(p.reach, 0) AS reach,
       coalesce(p.rate_sum, 0) AS rate_sum, coalesce(p.rated_posts, 0) AS rated_posts,
       p.last_observed, coalesce(c.orders, 0) AS orders, coalesce(c.revenue, 0) AS revenue,
       c.last_order, coalesce(c.suspected_credits, 0) AS suspected_credits,
       coalesce(c.suspected_orders, 0) AS suspected_orders,
       coalesce(c.suspected_revenue, 0) AS suspected_revenue,
       coalesce(o.pending_fx_orders, 0) AS pending_fx_orders,
       coalesce(o.flagged_orders, 0) AS flagged_orders
FROM ids LEFT JOIN p USING (deal_id) LEFT JOIN c USING (deal_id) LEFT JOIN o USING (deal_id)
"""

TABLES = """SELECT string_agg(quote_ident(tablename), ', ') FROM pg_tables
            WHERE schemaname = current_schema() AND tablename <> 'schema_migrations'"""


def random_events(rng: random.Random) -> list[CloudEvent[Any]]:
    """The events of the order-independence test, drawn with `rng`: several snapshots of
    each post, orders of every code with refunds, snapshots converting EUR orders, clicks
    sharing the credit, and model changes re-splitting it."""
    identities = [
        (
            rng.choice(["cr-a", "cr-a", "cr-b"]),
            rng.choice(["story", "reel", "post"]),
            rng.choice([None, None, "deal-1", "deal-2"]),
            rng.randint(-2, 32),
        )
        for _ in range(6)
    ]
    snapshots = [
        (
            rng.randint(0, 5),
            rng.choice([("#ad",), ("#AD", "#Brand"), ()]),
            rng.randint(0, 48),
            rng.randint(0, 5000),
            rng.randint(0, 20_000),
        )
        for _ in range(rng.randint(4, 14))
    ]
    orders: list[OrderSpec] = [
        (
            rng.choice(["SHARED", "ONE", "ONE", "TWO", "NOPE"]),
            rng.choice(["10.00", "64.90", "199.99", "0.00"]),
            rng.choice(["USD", "USD", "EUR"]),
            rng.choice([rng.randint(15, 24), rng.randint(-2, 40)]),
            rng.choice([None, "all", "part"]),
            rng.choice([None, 0, 0, 1]),
            rng.choice([None, None, 0, 3]),
        )
        for _ in range(12)
    ]
    origins: list[Origin] = [
        (
            rng.choice([None, "US", "DE", "DE", "DE"]),
            rng.choice([None, "https://www.instagram.com/", "https://www.groupon.com/deals/x"]),
            rng.randint(0, 50),
            rng.choice([None, "br-1", "br-1", "br-9"]),
        )
        for _ in orders
    ]
    fx = [(rng.randint(-3, 30), rng.choice(["0.9215", "0.95", "1.1"])) for _ in range(2)]
    clicks = [
        (
            rng.choice(["deal-1", "deal-3", "deal-3", "deal-2", "deal-404"]),
            rng.choice([0, 0, 1]),
            rng.randint(-48, 40 * 24),
        )
        for _ in range(rng.randint(1, 8))
    ]
    models = [
        (
            rng.choice(["promo_code", "last_click", "linear", "time_decay"]),
            rng.choice([2, 30]),
            rng.choice([1, 7]),
            rng.randint(0, 3),
            rng.choice(["credit", "withhold"]),
        )
        for _ in range(rng.randint(1, 3))
    ]
    return (
        deals()
        + post_events(identities, snapshots)
        + order_events(orders, origins)
        + fx_events(fx)
        + click_events(clicks)
        + model_events(models)
    )


async def assert_totals_exact(pool: asyncpg.Pool) -> None:
    totals = {r["deal_id"]: dict(r) for r in await pool.fetch("SELECT * FROM tracking_deal_totals")}
    for row in await pool.fetch(FROM_SCRATCH):
        expected = dict(row)
        kept = totals.get(expected["deal_id"])
        assert kept is not None, f"no running totals for {expected['deal_id']}"
        assert {k: kept[k] for k in expected} == expected


@pytest.mark.parametrize("seed", range(12))
async def test_running_totals_equal_a_from_scratch_sum_after_every_batch(
    db_pool: asyncpg.Pool, seed: int
) -> None:
    await db_pool.execute(f"TRUNCATE {await db_pool.fetchval(TABLES)}")
    rng = random.Random(seed)
    events = random_events(rng)
    shuffled = rng.sample(events, len(events)) + rng.sample(events, len(events) // 4)
    cuts = sorted(rng.sample(range(1, len(shuffled)), 8))
    store = PostgresTrackingStore(db_pool, consumer="tracking-totals")
    offset = 0
    for start, end in zip([0, *cuts], [*cuts, len(shuffled)], strict=True):
        async with store.transaction() as tx:
            batch = delivered(shuffled[start:end], offset=offset)
            await apply_batch(tx, batch, now=NOW, leak_rules=LEAK_RULES)
        offset += end - start
        await assert_totals_exact(db_pool)

    memory = MemoryTrackingStore()
    async with memory.transaction() as tx:
        await apply_batch(tx, delivered(events), now=NOW, leak_rules=LEAK_RULES)
    reference = memory.state
    stored = {a.deal_id: a for a in await store.campaign_attributions("cmp-1")}
    assert stored == reference.attributions
    flagged = await db_pool.fetch("SELECT order_id FROM tracking_orders WHERE leak_suspected")
    assert {r["order_id"] for r in flagged} == reference.leak_suspects
