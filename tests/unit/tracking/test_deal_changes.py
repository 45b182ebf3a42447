"""Deal amendments and cancellations in tracking: the terms in force decide which orders and
posts count and what the deal costs; attribution is recomputed and announced once."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from services.tracking.domain.deals import Cancellation, in_force
from services.tracking.domain.deliverables import DeliverableState, confirmations_due
from services.tracking.domain.orders import OrderReason
from services.tracking.domain.posts import post_belongs_to_deal
from services.tracking.handlers import apply_batch
from services.tracking.store.memory import MemoryTrackingStore
from services.tracking.translate import deal_terms, post_snapshot
from shared.contract.errors import EventRejected
from shared.contract.events import CloudEvent, EventType
from shared.contract.money import Money
from shared.runtime.kafka import Delivery
from shared.runtime.observability import STALE_AMENDMENTS
from shared.runtime.trust import Untrusted
from tests.unit.tracking.builders import (
    T0,
    amendment_event,
    cancellation_event,
    confirmation_event,
    deal_event,
    delivered,
    order_event,
    post_event,
    published_by_batch,
)

NOW = T0 + timedelta(days=60)
SIGNED = deal_terms(deal_event("deal-1"))


def amended(version: int, hours: int = 1, **fields: Any) -> Any:
    return deal_terms(
        amendment_event("deal-1", version, time=T0 + timedelta(hours=hours), **fields)
    )


def test_the_highest_version_not_sent_after_the_cancellation_is_in_force() -> None:
    v2, v3 = amended(2, fee="600.00"), amended(3, hours=5, fee="700.00")
    foreign = amended(4, brand_id="br-2")
    for versions in ([v2, v3, foreign], [foreign, v3, v2]):
        assert in_force(SIGNED, versions, []).fee == Money.of("700.00", "USD")
    ended = [Cancellation("deal-1", "br-1", T0 + timedelta(hours=2))]
    terms = in_force(SIGNED, [v3, v2], [*ended, Cancellation("deal-1", "br-2", T0)])
    assert (terms.version, terms.cancelled_at) == (2, T0 + timedelta(hours=2))
    assert terms.signed_at == SIGNED.signed_at


def test_nothing_after_the_cancellation_counts() -> None:
    ended = replace(SIGNED, cancelled_at=T0 + timedelta(days=2))
    assert ended.accepts_order_at(T0 + timedelta(days=2))
    assert not ended.accepts_order_at(T0 + timedelta(days=2, seconds=1))
    late = post_snapshot(
        post_event(
            "p",
            deal_id="deal-1",
            posted_at=T0 + timedelta(days=3),
            observed_at=T0 + timedelta(days=4),
        )
    )
    assert post_belongs_to_deal(late, SIGNED) and not post_belongs_to_deal(late, ended)
    early = post_snapshot(post_event("p", posted_at=T0 + timedelta(days=1)))
    assert confirmations_due(DeliverableState(SIGNED, (early,), {}), NOW)
    assert confirmations_due(DeliverableState(ended, (early,), {}), NOW) == []


def run(*batches: list[CloudEvent[Any]]) -> tuple[MemoryTrackingStore, list[list[Any]]]:
    """Apply each batch; returns the store and the attribution.updated each batch published."""
    store = MemoryTrackingStore()
    published = [
        [e.data for e in new if e.type == EventType.ATTRIBUTION_UPDATED]
        for new in published_by_batch(store, batches, now=NOW)
    ]
    return store, published


def test_an_amendment_recounts_orders_and_costs_and_is_announced_once() -> None:
    orders = [
        order_event("o-1", promo_code="CODE10", amount="100.00"),
        order_event("o-2", promo_code="NEW", amount="40.00"),
        order_event(
            "o-3", promo_code="CODE10", amount="10.00", occurred_at=T0 + timedelta(days=40)
        ),
    ]
    store, published = run(
        [deal_event("deal-1"), *orders],
        [amendment_event("deal-1", 2, promo_codes=("NEW",), fee="800.00", window_days=20)],
        [amendment_event("deal-1", 2, promo_codes=("CODE10",), fee="1.00")],  # stale
    )
    assert [p.revenue for p in published[0]] == [Money.of("100.00", "USD")]
    [after] = published[1]
    # CODE10 is no longer the deal's; NEW is; the spend is the new fee plus 10 % of 40.00.
    assert (after.orders, after.revenue) == (1, Money.of("40.00", "USD"))
    assert after.spend == Money.of("804.00", "USD")
    assert store.state.outcomes["o-1"].reason is OrderReason.UNKNOWN_CODE
    assert published[2] == []
    assert store.state.deals["deal-1"].version == 2


def test_a_fee_only_amendment_is_announced_and_a_cancellation_drops_later_orders() -> None:
    late = order_event("o-late", amount="70.00", occurred_at=T0 + timedelta(days=5))
    store, published = run(
        [deal_event("deal-1"), order_event("o-1", amount="30.00"), late],
        [cancellation_event("deal-1", time=T0 + timedelta(days=4))],
        [
            post_event(
                "p-late",
                posted_at=T0 + timedelta(days=4, hours=1),
                observed_at=T0 + timedelta(days=5),
            )
        ],
    )
    [after] = published[1]
    assert (after.orders, after.revenue) == (1, Money.of("30.00", "USD"))
    assert store.state.outcomes["o-late"].reason is OrderReason.OUTSIDE_WINDOW
    # A post after the cancellation counts for nothing, and confirms nothing.
    assert ("deal-1", "p-late") not in store.state.memberships
    assert not [e for e in store.state.outbox if e.type == EventType.DELIVERABLE_CONFIRMED]


def test_a_cancellation_dated_before_it_arrived_ends_the_deal_from_its_arrival() -> None:
    # Dated day 4, it reached the broker on day 6 (its record's time less the clock skew):
    # the order of day 5 already counted and keeps counting; one of day 7 does not.
    store = MemoryTrackingStore()
    orders = [
        order_event("o-5", amount="70.00", occurred_at=T0 + timedelta(days=5)),
        order_event("o-7", amount="20.00", occurred_at=T0 + timedelta(days=7)),
    ]
    cancelled = cancellation_event("deal-1", time=T0 + timedelta(days=4))
    arrived = Delivery("campaign.deals", 0, 9, None, b"", (), not_before=T0 + timedelta(days=6))

    async def main() -> None:
        async with store.transaction() as tx:
            await apply_batch(tx, delivered([deal_event("deal-1"), *orders]), now=NOW)
        async with store.transaction() as tx:
            await apply_batch(tx, [(cancelled, arrived)], now=NOW)

    asyncio.run(main())
    assert store.state.deals["deal-1"].cancelled_at == T0 + timedelta(days=6)
    assert store.state.outcomes["o-5"].deal_id == "deal-1"
    assert store.state.outcomes["o-7"].reason is OrderReason.OUTSIDE_WINDOW


def test_changes_sent_before_their_deal_apply_when_it_arrives() -> None:
    store, _ = run(
        [
            amendment_event("deal-1", 3, promo_codes=("LATER",)),
            amendment_event("deal-1", 2, promo_codes=("EARLIER",)),
            cancellation_event("deal-1", brand_id="br-2", time=T0),  # not the deal's brand
        ],
        [deal_event("deal-1")],
    )
    terms = store.state.deals["deal-1"]
    assert (terms.version, terms.promo_codes, terms.cancelled_at) == (3, ("LATER",), None)


def test_a_stale_amendment_is_counted() -> None:
    stale = STALE_AMENDMENTS.labels(service="tracking")
    before = stale._value.get()
    run(
        [deal_event("deal-1"), amendment_event("deal-1", 3)],
        [amendment_event("deal-1", 2, fee="1.00")],
        [
            cancellation_event("deal-1", time=T0),
            amendment_event("deal-1", 4, time=T0 + timedelta(days=1)),
        ],
    )
    assert stale._value.get() == before + 2


def test_another_amendment_under_the_version_in_force_is_counted_as_stale() -> None:
    stale = STALE_AMENDMENTS.labels(service="tracking")
    before = stale._value.get()
    store, _ = run(
        [deal_event("deal-1"), amendment_event("deal-1", 2, fee="600.00")],
        [amendment_event("deal-1", 2, fee="999.00", time=T0 + timedelta(hours=1))],
    )
    assert store.state.deals["deal-1"].fee == Money.of("600.00", "USD")
    assert stale._value.get() == before + 1


@pytest.mark.parametrize(
    ("change", "error", "field"),
    [
        (amendment_event("deal-1", 2, brand_id="br-2"), Untrusted, "data.brand_id"),
        (amendment_event("deal-1", 2, currency="EUR"), EventRejected, "data.fee.currency"),
        (amendment_event("deal-1", 2, creator_id="cr-9"), EventRejected, "data.creator_id"),
        (cancellation_event("deal-1", brand_id="br-2"), Untrusted, "data.brand_id"),
    ],
)
def test_a_change_by_another_brand_or_of_the_parties_is_refused(
    change: CloudEvent[Any], error: type[Exception], field: str
) -> None:
    with pytest.raises(error) as refused:
        run([deal_event("deal-1")], [change])
    assert field in str(refused.value)


def test_a_confirmation_of_a_deliverable_the_deal_does_not_have_is_rejected() -> None:
    """As payouts rejects it: each service dead-letters its own copy."""
    with pytest.raises(EventRejected) as refused:
        run([deal_event("deal-1")], [confirmation_event("deal-1", "dl-nope")])
    assert "'dl-nope' is not a deliverable of deal deal-1" in str(refused.value)
    run([deal_event("deal-1")], [confirmation_event("deal-1", "dl-1")])
