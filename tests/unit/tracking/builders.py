"""Events and domain values for tracking tests, with unique ids per test run."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from services.tracking.domain.deals import DealTerms
from services.tracking.handlers import apply_batch
from services.tracking.store.memory import MemoryTrackingStore
from services.tracking.translate import deal_terms
from shared.contract.events import (
    AttributionModelSet,
    CloudEvent,
    DealAmended,
    DealCancelled,
    DealSigned,
    Deliverable,
    DeliverableConfirmed,
    FxRatesPublished,
    LinkClicked,
    OrderRedeemed,
    OrderRefunded,
    PostMetricsObserved,
    Utm,
    decode,
    encode,
    make_event,
    spec_for_type,
)
from shared.contract.money import Money
from shared.runtime.kafka import Delivery

T0 = datetime(2025, 4, 1, tzinfo=UTC)
SOURCE = "tests/tracking"
COUPON_SITE = "https://www.retailmenot.com/view/bakeco.com"
INSTAGRAM = "https://www.instagram.com/"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def deal_event(
    deal_id: str,
    *,
    campaign_id: str = "cmp-1",
    brand_id: str = "br-1",
    creator_id: str = "cr-1",
    fee: str = "500.00",
    currency: str = "USD",
    commission_rate: str = "0.10",
    promo_codes: tuple[str, ...] = ("CODE10",),
    deliverables: tuple[tuple[str, str, int], ...] = (("dl-1", "reel", 1),),
    required_tags: tuple[str, ...] = ("#ad",),
    starts_at: datetime = T0,
    days: int = 30,
    window_days: int = 7,
    time: datetime = T0,
    event_id: str | None = None,
    audience_countries: tuple[str, ...] | None = None,
) -> CloudEvent[Any]:
    return make_event(
        DealSigned(
            deal_id=deal_id,
            campaign_id=campaign_id,
            brand_id=brand_id,
            creator_id=creator_id,
            fee=Money.of(fee, currency),
            commission_rate=Decimal(commission_rate),
            promo_codes=promo_codes,
            deliverables=tuple(
                Deliverable(
                    deliverable_id=i,
                    kind=kind,  # type: ignore[arg-type]
                    count=count,
                    due_by=starts_at + timedelta(days=n + 1),
                )
                for n, (i, kind, count) in enumerate(deliverables)
            ),
            required_tags=required_tags,
            starts_at=starts_at,
            ends_at=starts_at + timedelta(days=days),
            attribution_window_days=window_days,
            audience_countries=audience_countries,
        ),
        source=SOURCE,
        id=event_id,
        time=time,
    )


def amendment_event(
    deal_id: str, version: int, *, time: datetime = T0, **fields: Any
) -> CloudEvent[Any]:
    """Version `version` of deal `deal_id`: the terms `deal_event(deal_id, **fields)` states,
    sent at `time`."""
    signed = deal_event(deal_id, **fields).data
    return make_event(DealAmended(**dict(signed), version=version), source=SOURCE, time=time)


def cancellation_event(
    deal_id: str, *, brand_id: str = "br-1", time: datetime = T0
) -> CloudEvent[Any]:
    return make_event(
        DealCancelled(deal_id=deal_id, brand_id=brand_id, reason="campaign withdrawn"),
        source=SOURCE,
        time=time,
    )


def terms(**kwargs: Any) -> DealTerms:
    deal_id = kwargs.pop("deal_id", "deal-1")
    return deal_terms(deal_event(deal_id, **kwargs))


def post_event(
    post_id: str,
    *,
    creator_id: str = "cr-1",
    deal_id: str | None = None,
    kind: str = "reel",
    tags: tuple[str, ...] = ("#ad",),
    caption: str | None = None,
    posted_at: datetime = T0 + timedelta(days=1),
    observed_at: datetime = T0 + timedelta(days=2),
    likes: int = 100,
    comments: int = 10,
    shares: int = 5,
    saves: int = 3,
    views: int = 2000,
    impressions: int = 3000,
    reach: int = 1500,
    followers: int = 10_000,
    event_id: str | None = None,
) -> CloudEvent[Any]:
    return make_event(
        PostMetricsObserved(
            post_id=post_id,
            creator_id=creator_id,
            platform="instagram",
            kind=kind,  # type: ignore[arg-type]
            deal_id=deal_id,
            caption=caption,
            tags=tags,
            posted_at=posted_at,
            observed_at=observed_at,
            likes=likes,
            comments=comments,
            shares=shares,
            saves=saves,
            views=views,
            impressions=impressions,
            reach=reach,
            followers=followers,
        ),
        source=SOURCE,
        id=event_id,
        time=observed_at,
    )


def order_event(
    order_id: str,
    *,
    promo_code: str = "CODE10",
    amount: str = "50.00",
    currency: str = "USD",
    occurred_at: datetime = T0 + timedelta(days=3),
    event_id: str | None = None,
    kind: type[OrderRedeemed] | type[OrderRefunded] = OrderRedeemed,
    visitor_id: str | None = None,
    click_id: str | None = None,
    shipping_country: str | None = None,
    referrer: str | None = None,
    brand_id: str | None = None,
) -> CloudEvent[Any]:
    joins = (
        {"brand_id": brand_id}
        if kind is OrderRefunded
        else {
            "visitor_id": visitor_id,
            "click_id": click_id,
            "shipping_country": shipping_country,
            "referrer": referrer,
            "brand_id": brand_id,
        }
    )
    return make_event(
        kind(
            order_id=order_id,
            promo_code=promo_code,
            amount=Money.of(amount, currency),
            occurred_at=occurred_at,
            **joins,
        ),
        source=SOURCE,
        id=event_id,
        time=occurred_at,
    )


def refund_event(
    order_id: str, *, occurred_at: datetime = T0 + timedelta(days=5), **fields: Any
) -> CloudEvent[Any]:
    """An OrderRefunded: the fields and defaults of `order_event`, two days later."""
    return order_event(order_id, occurred_at=occurred_at, kind=OrderRefunded, **fields)


def visitor(n: int | str) -> str:
    """A visitor hash (64 hex digits) standing for visitor `n`."""
    return hashlib.sha256(f"visitor-{n}".encode()).hexdigest()


def click_event(
    click_id: str,
    deal_id: str,
    *,
    visitor_id: str,
    clicked_at: datetime = T0 + timedelta(days=2),
    event_id: str | None = None,
    brand_id: str | None = None,
) -> CloudEvent[Any]:
    return make_event(
        LinkClicked(
            click_id=click_id,
            deal_id=deal_id,
            visitor_id=visitor_id,
            clicked_at=clicked_at,
            utm=Utm(source="ig", content=deal_id),
            brand_id=brand_id,
        ),
        source=SOURCE,
        id=event_id,
        time=clicked_at,
    )


def model_event(
    model: str,
    *,
    campaign_id: str = "cmp-1",
    brand_id: str = "br-1",
    lookback_days: int = 30,
    half_life_days: int = 7,
    time: datetime = T0,
    event_id: str | None = None,
    leaked_orders: str = "credit",
) -> CloudEvent[Any]:
    return make_event(
        AttributionModelSet(
            campaign_id=campaign_id,
            brand_id=brand_id,
            model=model,  # type: ignore[arg-type]
            lookback_days=lookback_days,
            half_life_days=half_life_days,
            leaked_orders=leaked_orders,  # type: ignore[arg-type]
        ),
        source=SOURCE,
        id=event_id,
        time=time,
    )


def fx_event(
    rates: dict[str, str],
    *,
    base: str = "USD",
    as_of: datetime = T0,
    source: str = "ecb",
    event_id: str | None = None,
) -> CloudEvent[Any]:
    return make_event(
        FxRatesPublished(
            base=base,
            rates={code: Decimal(rate) for code, rate in rates.items()},
            as_of=as_of,
            source=source,
        ),
        source=SOURCE,
        id=event_id,
        time=as_of,
    )


def confirmation_event(
    deal_id: str,
    deliverable_id: str,
    *,
    post_id: str | None = None,
    confirmed_by: str = "brand-user-1",
    confirmed_at: datetime = T0 + timedelta(days=4),
    event_id: str | None = None,
) -> CloudEvent[Any]:
    return make_event(
        DeliverableConfirmed(
            deal_id=deal_id,
            deliverable_id=deliverable_id,
            post_id=post_id,
            confirmed_by=confirmed_by,
            confirmed_at=confirmed_at,
        ),
        source=SOURCE,
        id=event_id,
        time=confirmed_at,
    )


def follower_orders(promo_code: str, order_ids: list[str]) -> list[CloudEvent[Any]]:
    """Orders of $10.00 with `promo_code` from the creator's followers (from Instagram,
    shipped to the US), one every 3 hours from day 2."""
    return [
        order_event(
            order_id,
            promo_code=promo_code,
            amount="10.00",
            occurred_at=T0 + timedelta(days=2, hours=3 * i),
            shipping_country="US",
            referrer=INSTAGRAM,
        )
        for i, order_id in enumerate(order_ids)
    ]


def coupon_site_orders(
    promo_code: str, order_ids: list[str], *, day: int = 4
) -> list[CloudEvent[Any]]:
    """Orders of $20.00 with `promo_code` from a coupon site, shipped to Germany, one every
    10 minutes on `day`: what a leaked code looks like."""
    return [
        order_event(
            order_id,
            promo_code=promo_code,
            amount="20.00",
            occurred_at=T0 + timedelta(days=day, minutes=10 * i),
            shipping_country="DE",
            referrer=COUPON_SITE,
        )
        for i, order_id in enumerate(order_ids)
    ]


def delivered(
    events: list[CloudEvent[Any]], *, offset: int = 0
) -> list[tuple[CloudEvent[Any], Delivery]]:
    """Pair events with made-up deliveries (topic "test", offsets from `offset`)."""
    return [
        (event, Delivery("test", 0, offset + n, None, b"", ())) for n, event in enumerate(events)
    ]


def applied(
    store: MemoryTrackingStore, *batches: list[CloudEvent[Any]], now: datetime
) -> list[CloudEvent[Any]]:
    """Apply `batches` in turn through the tracking use case, one transaction each; return
    everything they published, each checked by the consumers' codec."""

    async def main() -> None:
        for batch in batches:
            async with store.transaction() as tx:
                await apply_batch(tx, delivered(batch), now=now)

    before = len(store.state.outbox)
    asyncio.run(main())
    published = store.state.outbox[before:]
    for event in published:
        assert decode(spec_for_type(event.type).topic, encode(event)) == event
    return published


def published_by_batch(
    store: MemoryTrackingStore, batches: Sequence[list[CloudEvent[Any]]], *, now: datetime
) -> list[list[CloudEvent[Any]]]:
    """Apply `batches` in turn through the tracking use case, one transaction each, their
    deliveries' offsets running on from one batch to the next; return what each published."""
    published: list[list[CloudEvent[Any]]] = []

    async def main() -> None:
        offset = 0
        for batch in batches:
            before = len(store.state.outbox)
            async with store.transaction() as tx:
                await apply_batch(tx, delivered(batch, offset=offset), now=now)
            offset += len(batch)
            published.append(store.state.outbox[before:])

    asyncio.run(main())
    return published
