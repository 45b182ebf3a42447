"""Replaying every input topic from offset 0 after a restart changes no total.

A first service instance applies a small campaign and stops. A second one starts with a new
consumer group and a new inbox name, so it re-reads every topic from the start and re-applies
every event: only the business keys (order ids, latest snapshot per post, one confirmation
per deliverable, ...) keep the state as it was, and no new event is published.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.tracking.translate import SOURCE
from shared.contract.events import CloudEvent, Topic
from shared.tools.infra import InfraUrls
from tests.integration.tracking.support import run_until_caught_up
from tests.support.kafka_io import produce_events, read_topic
from tests.unit.tracking.builders import (
    confirmation_event,
    deal_event,
    fx_event,
    order_event,
    post_event,
    refund_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def campaign(tag: str, start: datetime) -> list[CloudEvent[Any]]:
    rng = random.Random(tag)
    events: list[CloudEvent[Any]] = [
        fx_event({"EUR": "0.9215"}, as_of=start, source=f"replay-{tag}"),
        fx_event({"EUR": "0.9300"}, as_of=start + timedelta(days=3), source=f"replay-{tag}"),
    ]
    for n in range(5):
        deal_id, creator, code = f"deal-{tag}-{n}", f"cr-{tag}-{n}", f"R{n}-{tag}"
        events.append(
            deal_event(
                deal_id,
                campaign_id=f"cmp-{tag}",
                creator_id=creator,
                currency="EUR" if n % 2 else "USD",
                promo_codes=(code,),
                deliverables=(("dl-reel", "reel", 1), ("dl-stories", "story", 2)),
                starts_at=start,
            )
        )
        for p in range(3):
            for hours in (30, 10, 20):
                events.append(
                    post_event(
                        f"post-{tag}-{n}-{p}",
                        creator_id=creator,
                        kind="reel" if p == 0 else "story",
                        posted_at=start + timedelta(days=1),
                        observed_at=start + timedelta(days=1, hours=hours),
                        likes=hours * 10 + p,
                        reach=hours * 100,
                    )
                )
        for k in range(6):
            order_id = f"ord-{tag}-{n}-{k}"
            at = start + timedelta(days=2 + k)
            events.append(
                order_event(
                    order_id, promo_code=code, amount=f"{rng.randint(10, 99)}.90", occurred_at=at
                )
            )
            if k == 5:
                events.append(
                    refund_event(order_id, promo_code=code, amount="5.00", occurred_at=at)
                )
    events.append(confirmation_event(f"deal-{tag}-0", "dl-stories", confirmed_by="brand-user"))
    return events + rng.sample(events, 30)


async def snapshot(pool: asyncpg.Pool, tag: str) -> dict[str, list[dict[str, Any]]]:
    like = f"%-{tag}-%"
    queries = {
        "attribution": "SELECT * FROM tracking_attribution WHERE deal_id LIKE $1",
        "orders": "SELECT * FROM tracking_orders WHERE order_id LIKE $1",
        "posts": "SELECT * FROM tracking_posts WHERE post_id LIKE $1",
        "memberships": "SELECT * FROM tracking_deal_posts WHERE deal_id LIKE $1",
        "confirmations": "SELECT * FROM tracking_confirmations WHERE deal_id LIKE $1",
        "deals": "SELECT * FROM tracking_deals WHERE deal_id LIKE $1",
    }
    result = {}
    for name, sql in queries.items():
        rows = [dict(r) for r in await pool.fetch(sql + " ORDER BY 1, 2", like)]
        for row in rows:
            row.pop("updated_at", None)
        result[name] = rows
    return result


async def published(infra: InfraUrls, tag: str) -> dict[str, int]:
    counts = {}
    for topic in (Topic.TRACKING_ATTRIBUTION, Topic.DELIVERABLES_CONFIRMED):
        events = await read_topic(infra.kafka_bootstrap_servers, topic)
        counts[topic] = sum(
            1 for e in events if e.data.deal_id.startswith(f"deal-{tag}-") and e.source == SOURCE
        )
    return counts


async def test_replaying_every_topic_from_offset_zero_changes_no_total(
    infra: InfraUrls, topics: None, db_pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    # Past dates keep our FX snapshots from becoming anyone's latest.
    start = datetime(1900, 1, 1, tzinfo=UTC) + timedelta(hours=random.randrange(1, 400_000))
    # The deals and the brand's own confirmation are applied before any post could confirm
    # that deliverable: sent together, the posts may be fetched first (other partitions, other
    # leaders) and tracking would rightly confirm it itself.
    events = campaign(tag, start)
    terms = {"deal.signed", "deliverable.confirmed", "fx.rates.published"}
    for phase in (
        [e for e in events if e.type in terms],
        [e for e in events if e.type not in terms],
    ):
        await produce_events(infra.kafka_bootstrap_servers, phase)
        await run_until_caught_up(infra, group=f"tracking-a-{tag}", inbox=f"tracking-a-{tag}")
    before = await snapshot(db_pool, tag)
    counts = await published(infra, tag)
    assert len(before["attribution"]) == 5
    assert sum(r["orders"] for r in before["attribution"]) == 30
    assert len(before["confirmations"]) == 10  # the brand confirmed one of them
    assert counts[Topic.DELIVERABLES_CONFIRMED] == 9

    await run_until_caught_up(infra, group=f"tracking-b-{tag}", inbox=f"tracking-b-{tag}")
    await asyncio.sleep(0.5)
    assert await snapshot(db_pool, tag) == before
    assert await published(infra, tag) == counts
