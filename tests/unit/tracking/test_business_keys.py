"""An order id names one order and a click id one click: a second one under the same id with
other details is refused with its own event, whether it comes in the same batch or later;
the same order or click sent again is a duplicate and changes nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.tracking.handlers import apply_batch
from services.tracking.store.memory import MemoryTrackingStore
from shared.contract.errors import EventRejected
from shared.contract.events import CloudEvent
from tests.unit.tracking.builders import (
    T0,
    click_event,
    deal_event,
    delivered,
    order_event,
    visitor,
)

DEALS = [
    deal_event("deal-a", creator_id="cr-a", promo_codes=("CODE-A",)),
    deal_event("deal-b", creator_id="cr-b", promo_codes=("CODE-B",)),
]


def batches(store: MemoryTrackingStore, *batches: list[CloudEvent[Any]]) -> list[str | None]:
    """Apply each batch in its own transaction; per batch, None or the reason it was refused
    (the transaction then changes nothing)."""
    outcomes: list[str | None] = []

    async def main() -> None:
        offset = 0
        for events in batches:
            try:
                async with store.transaction() as tx:
                    await apply_batch(tx, delivered(events, offset=offset), now=T0)
                outcomes.append(None)
            except EventRejected as refused:
                outcomes.append(refused.reason)
            offset += len(events)

    asyncio.run(main())
    return outcomes


@pytest.mark.parametrize("together", [True, False], ids=["same batch", "later batch"])
def test_a_second_order_under_an_id_with_other_details_is_refused(together: bool) -> None:
    store = MemoryTrackingStore()
    first = order_event("ord-1", promo_code="CODE-A", amount="11.00")
    other = order_event("ord-1", promo_code="CODE-B", amount="22.00")
    if together:
        # The refused batch changes nothing; its first order sent again alone is taken.
        _, refused, taken = batches(store, DEALS, [first, other], [first])
        assert taken is None
    else:
        _, taken, refused = batches(store, DEALS, [first], [other])
        assert taken is None
    assert refused is not None and "order.redeemed 'ord-1'" in refused
    assert store.state.outcomes["ord-1"].deal_id == "deal-a"
    assert "ord-1" in store.state.orders and store.state.orders["ord-1"].promo_code == "CODE-A"


@pytest.mark.parametrize("together", [True, False], ids=["same batch", "later batch"])
def test_a_second_click_under_an_id_with_another_deal_is_refused(together: bool) -> None:
    store = MemoryTrackingStore()
    first = click_event("clk-1", "deal-a", visitor_id=visitor(1))
    other = click_event("clk-1", "deal-b", visitor_id=visitor(2))
    if together:
        outcomes = batches(store, DEALS, [first, other])
    else:
        outcomes = batches(store, DEALS, [first], [other])
    assert outcomes[-1] is not None and "link.clicked 'clk-1'" in outcomes[-1]
    if together:
        assert "clk-1" not in store.state.clicks
    else:
        assert store.state.clicks["clk-1"].deal_id == "deal-a"


def test_the_same_order_or_click_sent_again_is_a_duplicate() -> None:
    store = MemoryTrackingStore()
    order = order_event("ord-1", promo_code="CODE-A", event_id="e-1")
    again = order_event("ord-1", promo_code="CODE-A", event_id="e-2")  # a shop's retry
    click = click_event("clk-1", "deal-a", visitor_id=visitor(1), event_id="c-1")
    click_again = click_event("clk-1", "deal-a", visitor_id=visitor(1), event_id="c-2")
    outcomes = batches(store, DEALS, [order, again, click, click_again], [again, click_again])
    assert outcomes == [None, None, None]
    assert store.state.outcomes["ord-1"].deal_id == "deal-a"
    assert store.state.clicks["clk-1"].deal_id == "deal-a"


def test_a_retry_naming_the_brand_of_one_stored_without_is_a_duplicate() -> None:
    # A shop sends without brand_id, its key is then bound to its brand, and its retries are
    # read with that brand: the same order and click, not a conflict.
    store = MemoryTrackingStore()
    order = order_event("ord-1", promo_code="CODE-A", event_id="e-1")
    click = click_event("clk-1", "deal-a", visitor_id=visitor(1), event_id="c-1")
    order_again = order_event("ord-1", promo_code="CODE-A", event_id="e-2", brand_id="br-1")
    click_again = click_event(
        "clk-1", "deal-a", visitor_id=visitor(1), event_id="c-2", brand_id="br-1"
    )
    assert batches(store, DEALS, [order, click], [order_again, click_again]) == [None] * 3
    assert store.state.orders["ord-1"].brand_id is None
    assert store.state.outcomes["ord-1"].deal_id == "deal-a"
    assert store.state.clicks["clk-1"].brand_id is None
    # And the other way: stored with its brand, sent again with none (a binding widened).
    widened = order_event("ord-2", promo_code="CODE-A", event_id="e-3", brand_id="br-1")
    again = order_event("ord-2", promo_code="CODE-A", event_id="e-4")
    assert batches(store, [widened], [again]) == [None, None]
    assert store.state.orders["ord-2"].brand_id == "br-1"


def test_one_stored_with_a_brand_is_not_the_same_as_one_naming_another() -> None:
    store = MemoryTrackingStore()
    order = order_event("ord-1", promo_code="CODE-A", event_id="e-1", brand_id="br-1")
    other = order_event("ord-1", promo_code="CODE-A", event_id="e-2", brand_id="br-2")
    _, taken, refused = batches(store, DEALS, [order], [other])
    assert taken is None
    assert refused is not None and "order.redeemed 'ord-1'" in refused


def test_an_order_keeps_only_its_referrers_host() -> None:
    # The page's path and query may name the shopper; the leak rules read only the host. So
    # the same order sent again from another page of that host is the same order.
    store = MemoryTrackingStore()
    page = "https://Deals.RetailMeNot.com:443/view?email=jane%40example.com#top"
    order = order_event("ord-1", promo_code="CODE-A", event_id="e-1", referrer=page)
    again = order_event(
        "ord-1", promo_code="CODE-A", event_id="e-2", referrer="deals.retailmenot.com/other"
    )
    no_host = order_event("ord-2", promo_code="CODE-A", event_id="e-3", referrer="?utm=x")
    assert batches(store, DEALS, [order, no_host], [again]) == [None, None, None]
    assert store.state.orders["ord-1"].referrer == "deals.retailmenot.com"
    # Named, but with no host: kept as named, so it still counts among orders with a referrer.
    assert store.state.orders["ord-2"].referrer == ""
    other_host = order_event("ord-1", promo_code="CODE-A", event_id="e-4", referrer="x.com")
    refused = batches(store, [other_host])[0]
    assert refused is not None and "order.redeemed 'ord-1'" in refused
