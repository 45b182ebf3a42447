"""Leaked codes through the tracking use case (services.tracking.handlers) on the in-memory
store: one alert per code and rule, none on a replay, the flag in attribution.updated, and
a campaign's withhold policy taking suspected orders out of the commissionable revenue."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from services.tracking.store.memory import MemoryTrackingStore
from shared.contract.events import CloudEvent, EventType
from shared.contract.money import Money
from tests.unit.tracking.builders import (
    INSTAGRAM,
    T0,
    applied,
    coupon_site_orders,
    deal_event,
    follower_orders,
    model_event,
    order_event,
    post_event,
)

NOW = T0 + timedelta(days=100)


def deal() -> CloudEvent[Any]:
    return deal_event(
        "deal-j",
        creator_id="cr-j",
        promo_codes=("JANE10",),
        commission_rate="0.10",
        fee="100.00",
        audience_countries=("US", "CA"),
    )


def organic(n: int) -> list[CloudEvent[Any]]:
    """`n` orders of $10.00 from the creator's followers, one every 3 hours from day 2."""
    return follower_orders("JANE10", [f"ord-{i:02d}" for i in range(n)])


def leaked(n: int, *, start: int = 50, day: int = 4) -> list[CloudEvent[Any]]:
    """`n` orders of $20.00 from a coupon site, shipped to Germany, one every 10 minutes on
    `day`."""
    return coupon_site_orders("JANE10", [f"ord-{start + i:02d}" for i in range(n)], day=day)


def apply(store: MemoryTrackingStore, *batches: list[CloudEvent[Any]]) -> list[CloudEvent[Any]]:
    """Apply `batches` in turn at NOW; return everything they published, checked by the codec."""
    return applied(store, *batches, now=NOW)


def of_type(events: list[CloudEvent[Any]], kind: EventType) -> list[Any]:
    return [e.data for e in events if e.type == kind]


def test_a_code_on_a_coupon_site_is_flagged_once_with_its_evidence() -> None:
    store = MemoryTrackingStore()
    first = apply(store, [deal(), *organic(10)])
    assert of_type(first, EventType.PROMO_CODE_LEAK_SUSPECTED) == []
    assert of_type(first, EventType.ATTRIBUTION_UPDATED)[-1].leak_suspected is False

    published = apply(store, leaked(5))
    [alert] = of_type(published, EventType.PROMO_CODE_LEAK_SUSPECTED)
    assert (alert.deal_id, alert.creator_id, alert.promo_code) == ("deal-j", "cr-j", "JANE10")
    assert (alert.rule, alert.rules, alert.leaked_orders) == (
        "coupon_site",
        ("coupon_site",),
        "credit",
    )
    [evidence] = alert.evidence
    # 5 coupon-site orders of the 15 with a referrer in the last 7 days: 0.3333 > 0.3.
    assert (evidence.orders, evidence.considered, evidence.share) == (5, 15, Decimal("0.3333"))
    assert evidence.order_id == "ord-54"
    assert alert.suspected_since == T0 + timedelta(days=4, minutes=40)
    [update] = of_type(published, EventType.ATTRIBUTION_UPDATED)
    assert (update.leak_suspected, update.suspected_orders, update.withheld_orders) == (True, 1, 0)
    # Credited as any order by default: 10 x $10 + 5 x $20.
    assert (update.orders, update.revenue) == (15, Money.of("200.00", "USD"))
    assert update.withheld_revenue == Money.of("0.00", "USD")


def test_a_replay_or_the_same_rule_firing_again_sends_no_second_alert() -> None:
    store = MemoryTrackingStore()
    events = [deal(), *organic(10), *leaked(5)]
    assert len(of_type(apply(store, events), EventType.PROMO_CODE_LEAK_SUSPECTED)) == 1
    assert apply(store, events) == []
    # Eleven more leaked orders the next day tip the shipping rule (16 abroad of 26 is
    # 0.615 > 0.6): its own alert, and nothing more for the coupon rule.
    later = apply(store, leaked(11, start=60, day=5))
    [alert] = of_type(later, EventType.PROMO_CODE_LEAK_SUSPECTED)
    assert alert.rule == "outside_audience"
    assert alert.rules == ("outside_audience", "coupon_site")
    assert alert.suspected_since == T0 + timedelta(days=4, minutes=40)
    assert len(store.state.leak_alerts) == 2


def test_a_burst_beyond_the_creators_reach_is_flagged() -> None:
    store = MemoryTrackingStore()
    # One post with a reach of 3,000: 0.5 % is 15, and 20 orders are the least.
    post = post_event("post-j", creator_id="cr-j", deal_id="deal-j", reach=3_000)
    burst = [
        order_event(
            f"ord-{i:02d}",
            promo_code="JANE10",
            occurred_at=T0 + timedelta(days=3, minutes=2 * i),
        )
        for i in range(21)
    ]
    assert (
        of_type(apply(store, [deal(), post, *burst[:19]]), EventType.PROMO_CODE_LEAK_SUSPECTED)
        == []
    )
    [alert] = of_type(apply(store, burst[19:]), EventType.PROMO_CODE_LEAK_SUSPECTED)
    assert alert.rule == "burst"
    assert (alert.evidence[0].orders, alert.evidence[0].reach) == (20, 3_000)


def test_under_withhold_suspected_orders_earn_no_commission() -> None:
    credit, withhold = MemoryTrackingStore(), MemoryTrackingStore()
    events = [deal(), *organic(10), *leaked(8)]
    apply(credit, events)
    apply(withhold, [model_event("promo_code", leaked_orders="withhold"), *events])
    credited = credit.state.attributions["deal-j"]
    withheld = withhold.state.attributions["deal-j"]
    # ord-54..ord-57 came from the first firing on: 4 orders of $20.00 are withheld.
    assert credited.performance.revenue == Money.of("260.00", "USD")
    assert withheld.performance.revenue == Money.of("180.00", "USD")
    assert withheld.performance.orders == credited.performance.orders - 4 == 14
    assert (withheld.leaks.suspected_orders, withheld.leaks.withheld_orders) == (4, 4)
    assert withheld.leaks.withheld_revenue == Decimal("80.00")
    # Spend is the fee plus 10 % commission on the revenue left.
    assert withheld.performance.spend == Money.of("118.00", "USD")
    assert credited.performance.spend == Money.of("126.00", "USD")


def test_switching_the_policy_publishes_the_new_commissionable_revenue() -> None:
    store = MemoryTrackingStore()
    apply(store, [deal(), *organic(10), *leaked(8)])
    published = apply(store, [model_event("promo_code", leaked_orders="withhold", time=T0)])
    [update] = of_type(published, EventType.ATTRIBUTION_UPDATED)
    assert update.revenue == Money.of("180.00", "USD")
    assert update.withheld_revenue == Money.of("80.00", "USD")
    assert of_type(published, EventType.PROMO_CODE_LEAK_SUSPECTED) == []
    back = apply(store, [model_event("promo_code", time=T0 + timedelta(hours=1))])
    [update] = of_type(back, EventType.ATTRIBUTION_UPDATED)
    assert (update.revenue, update.withheld_orders) == (Money.of("260.00", "USD"), 0)


def test_a_late_order_placed_earlier_can_clear_a_flag() -> None:
    store = MemoryTrackingStore()
    apply(store, [deal(), *organic(10), *leaked(5)])
    assert store.state.attributions["deal-j"].leaks.suspected
    # Orders from followers placed before the leak, reported late: 5 of 20 is 0.25.
    late = [
        order_event(
            f"ord-late-{i}",
            promo_code="JANE10",
            amount="10.00",
            occurred_at=T0 + timedelta(days=3, hours=i),
            shipping_country="US",
            referrer=INSTAGRAM,
        )
        for i in range(5)
    ]
    [update] = of_type(apply(store, late), EventType.ATTRIBUTION_UPDATED)
    assert (update.leak_suspected, update.suspected_orders) == (False, 0)
    assert store.state.leak_suspects == set()
    # The alert stays sent, and is not sent again.
    assert len(store.state.leak_alerts) == 1


def test_without_audience_countries_shipping_abroad_is_no_evidence() -> None:
    store = MemoryTrackingStore()
    abroad = [
        order_event(
            f"ord-{i:02d}",
            promo_code="JANE10",
            occurred_at=T0 + timedelta(days=2, hours=i),
            shipping_country="DE",
        )
        for i in range(15)
    ]
    no_audience = deal_event("deal-j", creator_id="cr-j", promo_codes=("JANE10",))
    assert of_type(apply(store, [no_audience, *abroad]), EventType.PROMO_CODE_LEAK_SUSPECTED) == []
    assert not store.state.attributions["deal-j"].leaks.suspected
