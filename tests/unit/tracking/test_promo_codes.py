"""A promo code means one brand at a time: an order names its code, not always its brand."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from services.tracking.domain.deals import DealTerms, code_clash
from services.tracking.domain.orders import Order, OrderReason, Refund, evaluate_order
from services.tracking.handlers import apply_batch
from services.tracking.store.memory import MemoryTrackingStore
from shared.contract.errors import EventRejected
from shared.contract.money import Money
from shared.contract.signing import Party, Signer
from tests.unit.tracking.builders import (
    T0,
    applied,
    cancellation_event,
    deal_event,
    delivered,
    order_event,
    refund_event,
    terms,
)

# Orders count from T0 to T0 + 30 + 7 days.
HELD = terms(deal_id="deal-a", promo_codes=("SUMMER10", "JANE"), days=30, window_days=7)


def rival_from(*, days: int) -> DealTerms:
    """Another brand's deal with the code SUMMER10, from `days` after T0."""
    return terms(
        deal_id="deal-b",
        brand_id="br-2",
        promo_codes=("SUMMER10",),
        starts_at=T0 + timedelta(days=days),
    )


def test_another_brands_deal_may_not_share_a_code_while_it_counts_orders() -> None:
    clashing = terms(deal_id="deal-b", brand_id="br-2", promo_codes=("SUMMER10",))
    reason = code_clash(clashing, [HELD])
    assert reason is not None
    assert "'SUMMER10'" in reason and "'deal-a'" in reason and "'br-2'" in reason
    # Overlapping only by the attribution window (orders after the end still count).
    late = rival_from(days=36)
    assert code_clash(late, [HELD]) is not None


def test_the_same_brand_another_time_or_the_same_deal_may() -> None:
    assert code_clash(terms(deal_id="deal-b", promo_codes=("SUMMER10",)), [HELD]) is None
    after = rival_from(days=38)
    assert code_clash(after, [HELD]) is None
    other_code = terms(deal_id="deal-b", brand_id="br-2", promo_codes=("WINTER",))
    assert code_clash(other_code, [HELD]) is None
    assert code_clash(HELD, [HELD]) is None


def test_a_cancelled_deal_gives_its_codes_up_when_it_is_cancelled() -> None:
    cancelled = replace(HELD, cancelled_at=T0 + timedelta(days=5))
    later = rival_from(days=6)
    assert code_clash(later, [HELD]) is not None
    assert code_clash(later, [cancelled]) is None
    # A deal of another brand starting before the cancellation still clashes.
    earlier = replace(later, starts_at=T0 + timedelta(days=4))
    assert code_clash(earlier, [cancelled]) is not None


def test_after_a_cancellation_another_brand_takes_the_code_and_its_orders() -> None:
    store = MemoryTrackingStore()
    first = deal_event("deal-a", brand_id="br-1", creator_id="cr-a", promo_codes=("SUMMER10",))
    cancelled = cancellation_event("deal-a", brand_id="br-1", time=T0 + timedelta(days=5))
    second = deal_event(
        "deal-b",
        brand_id="br-2",
        creator_id="cr-b",
        promo_codes=("SUMMER10",),
        starts_at=T0 + timedelta(days=6),
    )
    order = order_event(
        "ord-1", promo_code="SUMMER10", occurred_at=T0 + timedelta(days=7), brand_id="br-2"
    )
    applied(store, [first], [cancelled], [second], [order], now=T0 + timedelta(days=8))
    assert set(store.state.deals) == {"deal-a", "deal-b"}
    assert store.state.outcomes["ord-1"].deal_id == "deal-b"


def test_a_clashing_deal_is_rejected_and_the_code_keeps_paying_its_brand() -> None:
    store = MemoryTrackingStore()
    first = deal_event("deal-a", brand_id="br-1", creator_id="cr-a", promo_codes=("SUMMER10",))
    second = deal_event("deal-b", brand_id="br-2", creator_id="cr-b", promo_codes=("SUMMER10",))
    order = order_event("ord-1", promo_code="SUMMER10", occurred_at=T0 + timedelta(days=2))

    async def main() -> None:
        async with store.transaction() as tx:
            await apply_batch(tx, delivered([first]), now=T0)
        with pytest.raises(EventRejected, match="SUMMER10"):
            async with store.transaction() as tx:
                await apply_batch(tx, delivered([second], offset=1), now=T0)
        async with store.transaction() as tx:
            await apply_batch(tx, delivered([order], offset=2), now=T0)

    asyncio.run(main())
    assert set(store.state.deals) == {"deal-a"}
    assert store.state.outcomes["ord-1"].deal_id == "deal-a"


def test_an_order_naming_its_brand_counts_only_for_that_brands_deals() -> None:
    at = T0 + timedelta(days=2)
    deal = terms(deal_id="deal-a", brand_id="br-1", promo_codes=("SUMMER10",))
    theirs = Order("o-1", "SUMMER10", Money.of("50.00", "USD"), at, brand_id="br-1")
    elsewhere = Order("o-2", "SUMMER10", Money.of("50.00", "USD"), at, brand_id="br-2")
    unnamed = Order("o-3", "SUMMER10", Money.of("50.00", "USD"), at)
    assert evaluate_order(theirs, (), [deal], None).deal_id == "deal-a"
    assert evaluate_order(elsewhere, (), [deal], None).reason is OrderReason.UNKNOWN_CODE
    assert evaluate_order(unnamed, (), [deal], None).deal_id == "deal-a"


def test_an_order_of_a_shop_selling_for_one_brand_counts_only_for_that_brand() -> None:
    """A shop key bound to one brand (shared.runtime.trust): its order that names no brand is
    that brand's, so another brand's code earns nothing through it."""
    store = MemoryTrackingStore()
    deal = deal_event("deal-a", brand_id="br-1", promo_codes=("SUMMER10",), starts_at=T0)
    shop = Signer(Party.SHOP, "shop-zest", "ed25519:zest", frozenset({"br-2"}))
    acme = Signer(Party.SHOP, "shop-acme", "ed25519:acme", frozenset({"br-1"}))
    orders = [
        order_event("o-zest", promo_code="SUMMER10", occurred_at=T0 + timedelta(days=1)),
        order_event("o-acme", promo_code="SUMMER10", occurred_at=T0 + timedelta(days=1)),
    ]
    batch = delivered(orders, offset=1)
    signed = [
        (event, replace(delivery, signed_by=signer))
        for (event, delivery), signer in zip(batch, (shop, acme), strict=True)
    ]

    async def main() -> None:
        async with store.transaction() as tx:
            await apply_batch(tx, delivered([deal]), now=T0)
        async with store.transaction() as tx:
            await apply_batch(tx, signed, now=T0 + timedelta(days=2))

    asyncio.run(main())
    assert store.state.outcomes["o-acme"].deal_id == "deal-a"
    assert store.state.outcomes["o-zest"].deal_id is None
    assert store.state.outcomes["o-zest"].reason is OrderReason.UNKNOWN_CODE

    # Its refund of the other shop's order (order ids are everyone's) takes nothing back.
    refunds = delivered(
        [
            refund_event("o-acme", amount="50.00", occurred_at=T0 + timedelta(days=2)),
            refund_event("o-acme", amount="10.00", occurred_at=T0 + timedelta(days=2, hours=1)),
        ],
        offset=3,
    )
    by_zest, by_acme = (
        (event, replace(delivery, signed_by=signer))
        for (event, delivery), signer in zip(refunds, (shop, acme), strict=True)
    )

    async def refund(signed: tuple[Any, Any]) -> None:
        async with store.transaction() as tx:
            await apply_batch(tx, [signed], now=T0 + timedelta(days=3))

    asyncio.run(refund(by_zest))
    assert store.state.outcomes["o-acme"].refunded_source == Money.of("0.00", "USD")
    asyncio.run(refund(by_acme))
    assert store.state.outcomes["o-acme"].refunded_source == Money.of("10.00", "USD")


def test_a_refund_naming_another_brand_takes_nothing_from_the_order() -> None:
    """Order ids are shared by every shop: a refund naming a brand (or sent with the key of a
    shop selling for one) counts only for an order of that brand."""
    at = T0 + timedelta(days=2)
    deal = terms(deal_id="deal-a", brand_id="br-1", promo_codes=("SUMMER10",))
    order = Order("o-1", "SUMMER10", Money.of("50.00", "USD"), at)
    theirs = Refund("o-1", Money.of("50.00", "USD"), at, "br-2")
    ours = Refund("o-1", Money.of("20.00", "USD"), at + timedelta(hours=1), "br-1")
    unnamed = Refund("o-1", Money.of("5.00", "USD"), at + timedelta(hours=2))
    outcome = evaluate_order(order, (theirs,), [deal], None)
    assert outcome.counts_as_order and outcome.refunded == Money.of("0.00", "USD")
    outcome = evaluate_order(order, (theirs, ours, unnamed), [deal], None)
    assert outcome.refunded == Money.of("25.00", "USD")
    # An order naming its brand is that brand's whatever deal it counts for.
    named = replace(order, brand_id="br-2")
    assert evaluate_order(named, (theirs,), [deal], None).refunded_source == theirs.amount
