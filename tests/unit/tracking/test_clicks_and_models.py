"""Clicks and campaign models through the tracking handler (services.tracking.handlers) on the
in-memory store: a late click or a new model recomputes from stored facts, a model change
publishes every deal of the campaign once, and another brand cannot set the model."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from services.tracking.domain.credit import Model
from services.tracking.store.memory import MemoryTrackingStore
from shared.contract.events import CloudEvent, EventType
from shared.contract.money import Money
from shared.contract.signing import RejectReason
from shared.runtime.trust import Untrusted
from tests.unit.tracking.builders import (
    T0,
    applied,
    click_event,
    deal_event,
    model_event,
    order_event,
    visitor,
)

NOW = T0 + timedelta(days=100)
DAY = timedelta(days=1)


def campaign() -> list[CloudEvent[Any]]:
    return [
        deal_event("deal-a", creator_id="cr-a", promo_codes=("ANNA",), commission_rate="0.10"),
        deal_event("deal-b", creator_id="cr-b", promo_codes=("BEN",), commission_rate="0.10"),
        deal_event("deal-c", creator_id="cr-c", promo_codes=("CY",), commission_rate="0.10"),
        deal_event("deal-x", campaign_id="cmp-2", creator_id="cr-x", promo_codes=("XAVI",)),
    ]


def journey() -> list[CloudEvent[Any]]:
    """One visitor clicks b, then c, then a; buys $100.00 with a's code; a second visitor
    buys $10.00 with b's code without clicking anything."""
    return [
        click_event("clk-1", "deal-b", visitor_id=visitor(1), clicked_at=T0 + 2 * DAY),
        click_event("clk-2", "deal-c", visitor_id=visitor(1), clicked_at=T0 + 3 * DAY),
        click_event("clk-3", "deal-a", visitor_id=visitor(1), clicked_at=T0 + 4 * DAY),
        order_event(
            "ord-1",
            promo_code="ANNA",
            amount="100.00",
            occurred_at=T0 + 5 * DAY,
            visitor_id=visitor(1),
        ),
        order_event("ord-2", promo_code="BEN", amount="10.00", occurred_at=T0 + 5 * DAY),
    ]


def apply(store: MemoryTrackingStore, *batches: list[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
    """Apply `batches` in turn at NOW; return what they published."""
    return applied(store, *batches, now=NOW)


def revenue(store: MemoryTrackingStore) -> dict[str, str]:
    return {
        deal_id: str(a.performance.revenue.amount)
        for deal_id, a in sorted(store.state.attributions.items())
    }


def test_promo_code_is_the_default_and_clicks_change_nothing_under_it() -> None:
    store = MemoryTrackingStore()
    apply(store, campaign() + journey())
    assert revenue(store) == {
        "deal-a": "100.00",
        "deal-b": "10.00",
        "deal-c": "0.00",
        "deal-x": "0.00",
    }
    assert {a.model for a in store.state.attributions.values()} == {Model.PROMO_CODE}


def test_a_new_model_recomputes_every_deal_of_the_campaign_and_publishes_each_once() -> None:
    store = MemoryTrackingStore()
    apply(store, campaign() + journey())
    published = apply(store, [model_event("position_based", time=T0 + DAY)])
    updates = [e for e in published if e.type == EventType.ATTRIBUTION_UPDATED]
    # deal-c earned nothing under promo codes and nothing changed for deal-b's figures
    # but its model: each deal of cmp-1 is published once, cmp-2's deal not at all.
    assert sorted(e.data.deal_id for e in updates) == ["deal-a", "deal-b", "deal-c"]
    assert {e.data.attribution_model for e in updates} == {"position_based"}
    # 40 % first (b), 20 % middle (c), 40 % last (a); ord-2 had no clicks: its code's deal.
    assert revenue(store) == {
        "deal-a": "40.00",
        "deal-b": "50.00",
        "deal-c": "20.00",
        "deal-x": "0.00",
    }
    spend = store.state.attributions["deal-c"].performance.spend
    assert spend == Money.of("502.00", "USD")  # the fee + 10 % of its 20.00

    # The same model again under a newer event: published once more, figures unchanged.
    again = apply(store, [model_event("position_based", time=T0 + 2 * DAY)])
    assert len([e for e in again if e.type == EventType.ATTRIBUTION_UPDATED]) == 3
    # An older setting than the one in force changes and publishes nothing.
    assert apply(store, [model_event("linear", time=T0)]) == []
    assert revenue(store)["deal-c"] == "20.00"


def test_a_click_known_after_its_order_moves_the_credit() -> None:
    store = MemoryTrackingStore()
    clicks, orders = journey()[:3], journey()[3:]
    apply(store, [*campaign(), model_event("last_click")], orders)
    assert revenue(store)["deal-a"] == "100.00"  # no click yet: the code's deal
    late = click_event("clk-9", "deal-c", visitor_id=visitor(1), clicked_at=T0 + 5 * DAY)
    apply(store, [*clicks, late])
    assert revenue(store)["deal-a"] == "0.00"
    assert revenue(store)["deal-c"] == "100.00"


def test_a_click_from_another_brands_shop_is_no_touch() -> None:
    """A click naming a brand (or sent with the key of a shop selling for one) counts only on
    that brand's deal: another brand's shop cannot move credit between this brand's creators."""
    store = MemoryTrackingStore()
    first, forged, last, *orders = journey()
    elsewhere = click_event(
        "clk-2", "deal-c", visitor_id=visitor(1), clicked_at=T0 + 3 * DAY, brand_id="br-zest"
    )
    assert forged.data.model_copy(update={"brand_id": "br-zest"}) == elsewhere.data
    apply(store, [*campaign(), model_event("linear")], [first, elsewhere, last, *orders])
    assert revenue(store)["deal-c"] == "0.00"
    assert revenue(store)["deal-a"] == "50.00" and revenue(store)["deal-b"] == "60.00"
    # Naming the deal's own brand, it is a touch like any other.
    ours = click_event(
        "clk-4", "deal-c", visitor_id=visitor(1), clicked_at=T0 + 3 * DAY, brand_id="br-1"
    )
    apply(store, [ours])
    assert revenue(store)["deal-c"] == "33.33"


def test_clicks_before_their_deal_count_once_it_arrives() -> None:
    store = MemoryTrackingStore()
    deals = campaign()
    apply(store, [deals[0], model_event("linear"), *journey()])
    assert revenue(store)["deal-a"] == "100.00"  # b and c are not known
    apply(store, deals[1:])
    assert revenue(store) == {
        "deal-a": "33.34",
        "deal-b": "43.33",  # 33.33 of ord-1 and ord-2's 10.00
        "deal-c": "33.33",
        "deal-x": "0.00",
    }


def test_another_brand_cannot_set_a_campaign_s_model() -> None:
    store = MemoryTrackingStore()
    apply(store, campaign() + journey())
    rival = model_event("last_click", brand_id="br-rival")
    with pytest.raises(Untrusted) as refused:
        apply(store, [rival])
    assert refused.value.code is RejectReason.NOT_THE_DEAL_OWNER
    # Set before the campaign had a deal, it is kept but never applies to another brand's.
    early = MemoryTrackingStore()
    apply(early, [rival], campaign() + journey())
    assert revenue(early)["deal-a"] == "100.00"
    assert {a.model for a in early.state.attributions.values()} == {Model.PROMO_CODE}


def test_brands_sharing_a_campaign_id_each_set_the_model_of_their_own_deals() -> None:
    store = MemoryTrackingStore()
    theirs = deal_event("deal-r", brand_id="br-rival", creator_id="cr-r", promo_codes=("RIV",))
    apply(store, [*campaign(), theirs], journey())
    apply(store, [model_event("last_click", brand_id="br-rival")])
    models = {deal_id: a.model for deal_id, a in store.state.attributions.items()}
    assert models["deal-r"] is Model.LAST_CLICK
    assert models["deal-a"] is Model.PROMO_CODE  # br-1's deals keep br-1's model
    assert revenue(store)["deal-a"] == "100.00"
