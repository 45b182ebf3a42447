"""A campaign's attribution: its deals' figures per currency and in its reporting currency,
its ratios, its brand's unattributed orders, and when `campaign.attribution.updated` leaves.

The figures are checked against a campaign worked out by hand: a USD deal and a EUR deal,
reported in USD with EUR at 0.9215 per USD (so 1 EUR = 1/0.9215 USD, 34 digits):

  EUR revenue 1000.00 -> 1085.19 USD, spend 450.00 -> 488.33, fees 300.00 -> 325.56
  revenue 2000.00 + 1085.19 = 3085.19   spend 650.00 + 488.33 = 1138.33
  fees 450.00 + 325.56 = 775.56         orders 30 + 12 = 42
  impressions 91,000, engagements 7,360 (likes + comments + shares)
  CPM 1138.33 x 1000 / 91000 = 12.50912... -> 12.5091
  CPE 1138.33 / 7360 = 0.15466... -> 0.1547
  CPA 1138.33 / 42 = 27.10309... -> 27.1031
  ROAS 3085.19 / 1138.33 = 2.71026... -> 2.7103
  ROI (3085.19 - 1138.33) x 100 / 1138.33 = 171.0294... -> 171.03
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.tracking.domain.attribution import Engagement, Performance
from services.tracking.domain.campaigns import (
    CampaignFacts,
    CurrencyTotals,
    Unattributed,
    UnattributedChange,
    campaign_attribution,
    unattributed_changes,
)
from services.tracking.domain.orders import Order, OrderOutcome, OrderReason, OrderStatus
from services.tracking.store.memory import MemoryTrackingStore
from services.tracking.translate import campaign_attribution_event
from shared.contract.events import CloudEvent, EventType, decode, encode, spec_for_type
from shared.contract.events.examples import usd, valid_example
from shared.contract.money import FxSnapshot, Money
from tests.unit.tracking.builders import (
    T0,
    deal_event,
    fx_event,
    order_event,
    post_event,
    published_by_batch,
)

NOW = T0 + timedelta(days=60)


def eur(amount: str) -> Money:
    return Money(Decimal(amount), "EUR")


def totals(
    fee: Money,
    revenue: Money,
    spend: Money,
    orders: int,
    engagement: Engagement,
    *,
    deals: int = 1,
    pending: int = 0,
    days: int = 9,
) -> CurrencyTotals:
    return CurrencyTotals(
        deals,
        fee,
        Performance(engagement, orders, revenue, spend, pending, T0 + timedelta(days=days)),
    )


US_POSTS = Engagement(
    posts=4, likes=4000, comments=200, shares=100, saves=500, views=40_000,
    impressions=60_000, reach=40_000, rate_sum=Decimal("0.2"), rated_posts=4,
)  # fmt: skip
EU_POSTS = Engagement(
    posts=2, likes=2900, comments=110, shares=50, saves=380, views=24_000,
    impressions=31_000, reach=15_000, rate_sum=Decimal("0.1072"), rated_posts=2,
)  # fmt: skip
SNAPSHOT = FxSnapshot(base="USD", rates={"EUR": Decimal("0.9215")}, as_of=T0, source="ecb")


def two_currencies(snapshot: FxSnapshot | None = SNAPSHOT) -> CampaignFacts:
    return CampaignFacts(
        "cmp-3",
        "br-12",
        "USD",
        (
            totals(usd("450.00"), usd("2000.00"), usd("650.00"), 30, US_POSTS),
            totals(eur("300.00"), eur("1000.00"), eur("450.00"), 12, EU_POSTS, days=8),
        ),
        snapshot,
        Unattributed(3, (usd("129.80"),)),
    )


def test_the_hand_worked_campaign() -> None:
    c = campaign_attribution(two_currencies())
    assert c.reporting is not None and c.fx is not None
    assert [t.currency for t in c.totals] == ["EUR", "USD"]
    assert c.deals == 2
    assert c.reporting.revenue == usd("3085.19")
    assert c.reporting.spend == usd("1138.33")
    assert c.reporting_fees == usd("775.56")
    assert c.reporting.orders == 42
    assert (c.engagement.impressions, c.engagement.engagements, c.engagement.reach) == (
        91_000,
        7_360,
        55_000,
    )
    r = c.ratios
    assert (r.cpm, r.cpe, r.cpa, r.roas, r.roi_pct) == (
        Decimal("12.5091"),
        Decimal("0.1547"),
        Decimal("27.1031"),
        Decimal("2.7103"),
        Decimal("171.03"),
    )
    # (0.2 + 0.1072) / 6 posts = 0.0512
    assert r.engagement_rate == Decimal("0.051200")
    assert (c.fx.as_of, c.fx.source) == (T0, "ecb")
    assert c.fx.rates == (("EUR", Decimal("1.085187194791101465002712967986978")),)
    assert c.as_of == T0 + timedelta(days=9)
    assert c.unattributed == Unattributed(3, (usd("129.80"),))


def test_the_contract_example_is_the_hand_worked_campaign() -> None:
    c = replace(campaign_attribution(two_currencies()), sequence=7)
    published = campaign_attribution_event(c, now=NOW).data
    example = valid_example(EventType.CAMPAIGN_ATTRIBUTION_UPDATED).data
    dated = {"as_of", "fx"}  # the example's dates differ
    assert published.model_dump(exclude=dated) == example.model_dump(exclude=dated)
    assert published.fx is not None and example.fx is not None
    assert published.fx.rates == example.fx.rates


def test_without_a_snapshot_the_reporting_totals_wait() -> None:
    c = campaign_attribution(two_currencies(snapshot=None))
    assert c.fx_pending and c.reporting is None and c.reporting_fees is None and c.fx is None
    r = c.ratios
    assert (r.cpm, r.cpe, r.cpa, r.roas, r.roi_pct) == (None,) * 5
    assert r.engagement_rate == Decimal("0.051200")  # needs no money
    # A snapshot without a rate for EUR converts nothing either.
    no_eur = FxSnapshot(base="USD", rates={"JPY": Decimal("151")}, as_of=T0, source="ecb")
    assert campaign_attribution(two_currencies(no_eur)).fx_pending
    data = campaign_attribution_event(replace(c, sequence=1), now=NOW).data
    assert data.fx_pending and data.revenue is None and data.spend is None and data.cpa is None


def test_one_currency_needs_no_snapshot_and_zero_denominators_give_none() -> None:
    facts = CampaignFacts(
        "cmp-1",
        "br-1",
        "EUR",
        (totals(eur("300.00"), eur("0.00"), eur("0.00"), 0, Engagement(), deals=2),),
    )
    c = campaign_attribution(facts)
    assert c.fx is None and not c.fx_pending and not c.converted
    assert c.reporting is not None and c.reporting.spend == eur("0.00")
    r = c.ratios
    assert (r.engagement_rate, r.cpm, r.cpe, r.cpa, r.roas, r.roi_pct) == (None,) * 6
    with pytest.raises(ValueError, match="no deals"):
        campaign_attribution(CampaignFacts("cmp-1", "br-1", "EUR", ()))


def outcome(status: OrderStatus, reason: OrderReason | None) -> OrderOutcome:
    return OrderOutcome("ord-1", status, reason, None, None, None, usd("0.00"), False, None, None)


def test_an_order_enters_and_leaves_its_brands_unattributed_orders() -> None:
    order = Order("ord-1", "NOPE", usd("64.90"), T0, brand_id="br-1")
    unknown = outcome(OrderStatus.UNATTRIBUTED, OrderReason.UNKNOWN_CODE)
    outside = outcome(OrderStatus.UNATTRIBUTED, OrderReason.OUTSIDE_WINDOW)
    entered = UnattributedChange("br-1", 1, usd("64.90"))
    left = UnattributedChange("br-1", -1, usd("-64.90"))
    assert unattributed_changes(order, None, unknown) == [entered]
    assert unattributed_changes(order, unknown, unknown) == []
    assert unattributed_changes(order, unknown, outside) == [left]
    assert unattributed_changes(order, outside, unknown) == [entered]
    # An order naming no brand is nobody's: no campaign can count it.
    anonymous = Order("ord-1", "NOPE", usd("64.90"), T0)
    assert unattributed_changes(anonymous, None, unknown) == []


def run(batches: list[list[CloudEvent[Any]]]) -> tuple[MemoryTrackingStore, list[list[Any]]]:
    """Apply each batch; returns the store and the campaign events each batch published."""
    store = MemoryTrackingStore()
    published = [
        [e for e in new if e.type == EventType.CAMPAIGN_ATTRIBUTION_UPDATED]
        for new in published_by_batch(store, batches, now=NOW)
    ]
    return store, published


DEALS = [
    deal_event("deal-1", creator_id="cr-a", promo_codes=("ANNA",)),
    deal_event("deal-2", creator_id="cr-b", promo_codes=("BEN",), fee="300.00", currency="EUR"),
    deal_event("deal-3", creator_id="cr-c", promo_codes=("CAT",), fee="100.00"),
]


def test_one_event_per_campaign_per_batch_and_none_when_nothing_changed() -> None:
    posts = [post_event(f"post-{c}", creator_id=f"cr-{c}") for c in "abc"]
    orders = [
        order_event("ord-1", promo_code="ANNA", amount="100.00"),
        order_event("ord-2", promo_code="CAT", amount="50.00"),
    ]
    _, published = run([DEALS + posts + orders, DEALS + orders])
    [first], again = published
    assert again == []  # redelivered: nothing changed, nothing published
    data = first.data
    # Wire-valid, keyed by campaign.
    assert decode(spec_for_type(first.type).topic, encode(first)) == first
    assert (data.campaign_id, data.brand_id, data.sequence, data.deals) == ("cmp-1", "br-1", 1, 3)
    assert [(t.revenue, t.fees, t.spend, t.orders) for t in data.totals] == [
        (eur("0.00"), eur("300.00"), eur("300.00"), 0),
        (usd("150.00"), usd("600.00"), usd("615.00"), 2),
    ]
    # The EUR deal waits for a rate; the ratios with it.
    assert data.fx_pending and data.revenue is None and data.cpa is None
    assert data.posts == 3 and data.impressions == 9000 and data.engagements == 3 * 115


def test_unattributed_orders_are_counted_for_their_brand_until_a_deal_takes_them() -> None:
    first = [*DEALS, fx_event({"EUR": "0.9215"}, as_of=T0)]
    lost = [
        order_event("ord-x", promo_code="NOPE", amount="20.00", brand_id="br-1"),
        order_event("ord-y", promo_code="NOPE", amount="5.00", currency="EUR", brand_id="br-1"),
        order_event("ord-z", promo_code="NOPE", amount="7.00", brand_id="br-2"),
        order_event("ord-w", promo_code="NOPE", amount="9.00"),
    ]
    late_deal = deal_event("deal-4", creator_id="cr-d", promo_codes=("NOPE",), fee="0.00")
    store, published = run([first, lost, [late_deal]])
    [v1], [v2], [v3] = published
    assert (v1.data.sequence, v1.data.unattributed_orders) == (1, 0)
    # Orders alone, touching no deal, still change the campaign.
    assert v2.data.sequence == 2
    assert v2.data.unattributed_orders == 2  # br-2's and the unbranded one are not br-1's
    assert v2.data.unattributed_revenue == (eur("5.00"), usd("20.00"))
    assert v2.data.revenue == v1.data.revenue  # unattributed orders are not revenue
    # A deal carrying the code takes br-1's orders: they leave the unattributed ones.
    assert v3.data.sequence == 3
    assert (v3.data.unattributed_orders, v3.data.unattributed_revenue) == (0, ())
    # The unbranded order counts for the deal holding its code, too.
    assert v3.data.orders == 3 and v3.data.deals == 4
    assert store.state.unattributed == {("br-2", "USD"): (1, Decimal("7.00"))}


def test_a_late_snapshot_alone_converts_the_campaign() -> None:
    orders = [order_event("ord-1", promo_code="ANNA", amount="100.00")]
    late = fx_event({"EUR": "0.9215"}, as_of=T0)
    _, published = run([DEALS + orders, [late]])
    [pending], [converted] = published
    assert pending.data.fx_pending and pending.data.sequence == 1
    # The snapshot changes no order and no deal: the campaign is converted all the same.
    data = converted.data
    assert not data.fx_pending and data.sequence == 2
    assert data.fx is not None and (data.fx.as_of, data.fx.source) == (T0, "ecb")
    # USD: fees 600.00, spend 500 + 10 % of 100 + 100 = 610.00; EUR 300.00 -> 325.56 USD.
    assert data.revenue == usd("100.00")
    assert data.fees == usd("925.56")
    assert data.spend == usd("935.56")
    assert data.cpa == Decimal("935.5600")
    assert data.roas == Decimal("0.1069")  # 100 / 935.56 = 0.10688...
