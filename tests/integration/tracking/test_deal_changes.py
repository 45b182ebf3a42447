"""Deal amendments and cancellations through the tracking service on the embedded Kafka and
PostgreSQL: an amendment moves the deal's orders to its new code and its spend to its new
fee, and is announced; a cancellation drops the orders after it; an amendment by another
brand, or in another currency, is dead-lettered with the field named.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from services.tracking.app import SERVICE
from shared.contract.events import CloudEvent, Topic, dlq_topic
from shared.contract.money import Money
from shared.tools.infra import InfraUrls
from shared.tools.infra.smoke import read_dead_letters
from tests.support.kafka_io import produce_events, read_topic
from tests.support.waiting import eventually
from tests.unit.tracking.builders import (
    amendment_event,
    cancellation_event,
    deal_event,
    order_event,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def attribution_of(infra: InfraUrls, deal_id: str) -> list[CloudEvent[Any]]:
    return [
        e
        for e in await read_topic(infra.kafka_bootstrap_servers, Topic.TRACKING_ATTRIBUTION)
        if e.data.deal_id == deal_id and e.type == "attribution.updated"
    ]


async def test_an_amendment_and_a_cancellation_end_to_end(
    infra: InfraUrls, pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    deal_id, old, new = f"deal-{tag}", f"OLD{tag}", f"NEW{tag}"
    # A cancellation ends its deal no earlier than its arrival (less the clock skew): this
    # deal runs around now, and its last order comes after the cancellation sent below.
    now = datetime.now(UTC)
    start = now - timedelta(days=10)
    terms: dict[str, Any] = {"creator_id": f"cr-{tag}", "promo_codes": (old,), "starts_at": start}
    await produce_events(
        infra.kafka_bootstrap_servers,
        [
            deal_event(deal_id, **terms),
            order_event(f"o1-{tag}", promo_code=old, amount="100.00", occurred_at=start),
            order_event(f"o2-{tag}", promo_code=new, amount="40.00", occurred_at=start),
            order_event(
                f"o3-{tag}", promo_code=new, amount="70.00", occurred_at=now + timedelta(hours=1)
            ),
        ],
    )

    async def revenue(amount: str, orders: int) -> bool:
        updates = await attribution_of(infra, deal_id)
        last = updates[-1].data if updates else None
        return last is not None and (last.revenue, last.orders) == (
            Money.of(amount, "USD"),
            orders,
        )

    await eventually(lambda: revenue("100.00", 1), what="the signed terms attributed")
    by_rival = amendment_event(deal_id, 3, brand_id="br-2", **terms)
    in_euros = amendment_event(deal_id, 4, currency="EUR", **terms)
    amended = amendment_event(deal_id, 2, fee="800.00", creator_id=terms["creator_id"],
                              promo_codes=(new,), starts_at=start)  # fmt: skip
    await produce_events(infra.kafka_bootstrap_servers, [by_rival, in_euros, amended])
    await eventually(lambda: revenue("110.00", 2), what="the amended terms attributed")
    [*_, after_amendment] = await attribution_of(infra, deal_id)
    # 800.00 fee plus 10 % commission on 110.00.
    assert after_amendment.data.spend == Money.of("811.00", "USD")

    await produce_events(infra.kafka_bootstrap_servers, [cancellation_event(deal_id, time=now)])
    await eventually(lambda: revenue("40.00", 1), what="the order after the cancellation dropped")
    row = await pool.fetchrow(
        "SELECT version, cancelled_at, promo_codes FROM tracking_deals WHERE deal_id = $1", deal_id
    )
    assert (row["version"], row["cancelled_at"], row["promo_codes"]) == (
        2,
        now,
        [new],
    )

    reasons: dict[str, str] = {}

    async def refused() -> bool:
        letters = await read_dead_letters(
            infra.kafka_bootstrap_servers, [dlq_topic(Topic.CAMPAIGN_DEALS)], service=SERVICE
        )
        for letter in letters:
            for event in (by_rival, in_euros):
                if event.id.encode() in letter.value:
                    reasons[event.id] = f"{letter.error_class} {letter.reason}"
        return len(reasons) == 2

    await eventually(refused, what="both refused amendments dead-lettered")
    assert reasons[by_rival.id].startswith("Untrusted not_the_deal_owner: data.brand_id")
    assert reasons[in_euros.id].startswith("EventRejected data.fee.currency: 'EUR'")
