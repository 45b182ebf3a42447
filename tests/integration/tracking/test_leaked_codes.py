"""Leaked promo codes on the embedded Kafka and PostgreSQL, through the broker.

A burst of coupon-site orders gives exactly one `promo-code.leak-suspected`, and replaying
every topic from offset 0 with a new consumer group and inbox gives none more; a campaign
whose brand withholds suspected orders publishes a lower revenue (what payouts computes
commission on) than one that credits them.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services.tracking.translate import SOURCE
from shared.contract.events import CloudEvent, EventType, Topic
from shared.contract.money import Money
from shared.tools.infra import InfraUrls
from tests.integration.tracking.support import run_until_caught_up, table
from tests.support.kafka_io import produce_events, read_topic
from tests.unit.tracking.builders import (
    T0,
    coupon_site_orders,
    deal_event,
    follower_orders,
    model_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def campaign(tag: str, n: int, *, leaked_orders: str) -> list[CloudEvent[Any]]:
    """One deal whose code reached a coupon site: 10 orders of $10.00 from its followers on
    day 2, then 8 of $20.00 from the coupon site, shipped abroad, within 80 minutes on day 4;
    the brand's policy for suspected orders."""
    campaign_id, code = f"cmp-{tag}-{n}", f"LEAK{n}-{tag}"
    events: list[CloudEvent[Any]] = [
        model_event("promo_code", campaign_id=campaign_id, leaked_orders=leaked_orders),
        deal_event(
            f"deal-{tag}-{n}",
            campaign_id=campaign_id,
            creator_id=f"cr-{tag}-{n}",
            promo_codes=(code,),
            fee="100.00",
            commission_rate="0.10",
            audience_countries=("US", "CA"),
        ),
    ]
    events += follower_orders(code, [f"ord-{tag}-{n}-f{i}" for i in range(10)])
    events += coupon_site_orders(code, [f"ord-{tag}-{n}-c{i}" for i in range(8)])
    return events


async def published(infra: InfraUrls, tag: str, kind: EventType) -> list[Any]:
    return [
        e.data
        for e in await read_topic(infra.kafka_bootstrap_servers, Topic.TRACKING_ATTRIBUTION)
        if e.type == kind and e.source == SOURCE and e.data.deal_id.startswith(f"deal-{tag}-")
    ]


async def test_a_leaked_code_alerts_once_replays_add_nothing_and_withholding_lowers_revenue(
    infra: InfraUrls, topics: None, db_pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    await produce_events(
        infra.kafka_bootstrap_servers,
        campaign(tag, 0, leaked_orders="credit") + campaign(tag, 1, leaked_orders="withhold"),
    )
    await run_until_caught_up(infra, group=f"tracking-a-{tag}", inbox=f"tracking-a-{tag}")

    alerts = await published(infra, tag, EventType.PROMO_CODE_LEAK_SUSPECTED)
    assert sorted((a.deal_id, a.rule) for a in alerts) == [
        (f"deal-{tag}-0", "coupon_site"),
        (f"deal-{tag}-1", "coupon_site"),
    ]
    [alert] = [a for a in alerts if a.deal_id == f"deal-{tag}-0"]
    assert (alert.promo_code, alert.leaked_orders) == (f"LEAK0-{tag}", "credit")
    # The 5th coupon-site order: 5 of the 15 orders with a referrer.
    assert (alert.evidence[0].orders, alert.evidence[0].considered) == (5, 15)
    assert alert.suspected_since == T0 + timedelta(days=4, minutes=40)

    rows = {
        r["deal_id"]: r
        for r in await table(
            db_pool, "SELECT * FROM tracking_attribution WHERE deal_id LIKE $1", f"deal-{tag}-%"
        )
    }
    credited, withheld = rows[f"deal-{tag}-0"], rows[f"deal-{tag}-1"]
    # ord-c4..c7 were placed from the first firing on: 4 suspected orders of $20.00.
    assert (credited["leak_suspected"], credited["suspected_orders"]) == (True, 4)
    assert (credited["revenue"], credited["withheld_orders"]) == (Decimal("260.00"), 0)
    assert (withheld["revenue"], withheld["withheld_revenue"]) == (
        Decimal("180.00"),
        Decimal("80.00"),
    )
    assert withheld["orders"] == 14 and withheld["spend"] == Decimal("118.00")
    # What payouts reads: the last attribution.updated of each deal.
    updates = await published(infra, tag, EventType.ATTRIBUTION_UPDATED)
    last = {u.deal_id: u for u in updates}
    assert last[f"deal-{tag}-0"].revenue == Money.of("260.00", "USD")
    assert last[f"deal-{tag}-1"].revenue == Money.of("180.00", "USD")
    assert last[f"deal-{tag}-1"].withheld_revenue == Money.of("80.00", "USD")
    assert last[f"deal-{tag}-1"].leak_suspected is True

    # Every topic again from offset 0, under a new group and inbox: every event is applied
    # again, and no alert is sent twice.
    before = await table(
        db_pool, "SELECT * FROM tracking_leak_alerts WHERE deal_id LIKE $1", f"deal-{tag}-%"
    )
    await run_until_caught_up(infra, group=f"tracking-b-{tag}", inbox=f"tracking-b-{tag}")
    await asyncio.sleep(0.5)
    assert len(await published(infra, tag, EventType.PROMO_CODE_LEAK_SUSPECTED)) == 2
    after = await table(
        db_pool, "SELECT * FROM tracking_leak_alerts WHERE deal_id LIKE $1", f"deal-{tag}-%"
    )
    assert after == before
