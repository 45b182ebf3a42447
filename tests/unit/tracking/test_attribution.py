"""Attribution arithmetic of docs/architecture.md §3 on exact decimals."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from services.tracking.domain.attribution import (
    DealFacts,
    Engagement,
    Performance,
    attribute,
    commission_due,
    deal_spend,
)
from services.tracking.domain.quotient import rounded_quotient
from services.tracking.translate import post_snapshot
from shared.contract.events.examples import usd
from shared.contract.money import Money
from tests.unit.tracking.builders import T0, post_event


def facts(
    *,
    fee: str = "5000.00",
    rate: str = "0",
    revenue: str = "20000.00",
    orders: int = 400,
    engagement: Engagement | None = None,
) -> DealFacts:
    return DealFacts(
        deal_id="d",
        campaign_id="c",
        creator_id="cr",
        fee=usd(fee),
        commission_rate=Decimal(rate),
        engagement=engagement or Engagement(),
        orders=orders,
        revenue=usd(revenue),
        pending_fx_orders=0,
        as_of=T0,
    )


def test_seed_arithmetic_roas_4_and_roi_300_percent() -> None:
    result = attribute(facts())
    assert result.performance.spend == usd("5000.00")
    assert result.ratios.roas == Decimal("4")
    assert result.ratios.roi_pct == Decimal("300")
    assert result.ratios.cpa == Decimal("12.5")
    assert str(result.ratios.roas) == "4.0000"
    assert str(result.ratios.roi_pct) == "300.00"


def test_spend_is_fee_plus_commission_on_net_revenue_rounded_half_even() -> None:
    assert commission_due(usd("100.05"), Decimal("0.10")) == usd("10.00")  # 10.005 -> 10.00
    assert commission_due(usd("100.15"), Decimal("0.10")) == usd("10.02")  # 10.015 -> 10.02
    assert deal_spend(usd("450.00"), usd("2661.90"), Decimal("0.10")) == usd("716.19")
    assert commission_due(Money.of("1001", "JPY"), Decimal("0.5")) == Money.of("500", "JPY")
    assert commission_due(usd("0.00"), Decimal("0.2")) == usd("0.00")


def test_commission_counts_in_spend_and_ratios() -> None:
    result = attribute(facts(fee="4000.00", rate="0.05", revenue="20000.00"))
    assert result.performance.spend == usd("5000.00")
    assert result.ratios.roas == Decimal("4.0000")


def test_ratios_are_null_when_their_denominator_is_zero() -> None:
    result = attribute(facts(fee="0.00", revenue="0.00", orders=0))
    assert result.ratios == type(result.ratios)(None, None, None, None, None, None)


def test_cost_ratios_from_design_definitions() -> None:
    engagement = Engagement(
        posts=1, likes=2310, comments=95, shares=40, impressions=30_500, views=21_000
    )
    result = attribute(facts(fee="450.00", revenue="0.00", orders=0, engagement=engagement))
    # 450 / 30500 x 1000 = 14.7540983..., 450 / 2445 = 0.18404907...
    assert result.ratios.cpm == Decimal("14.7541")
    assert result.ratios.cpe == Decimal("0.1840")
    assert result.ratios.cpa is None
    assert result.ratios.roas == Decimal("0")
    assert result.ratios.roi_pct == Decimal("-100.00")


def test_engagement_rate_is_the_mean_of_post_rates() -> None:
    a = post_snapshot(post_event("p1", likes=90, comments=5, shares=5, followers=1000))
    b = post_snapshot(post_event("p2", likes=10, comments=0, shares=0, followers=3000))
    none = post_snapshot(post_event("p3", followers=0))
    total = Engagement.of_post(a) + Engagement.of_post(b) + Engagement.of_post(none)
    # (0.1 + 0.003333333333) / 2 = 0.0516666666665 -> 0.051667
    assert total.engagement_rate == Decimal("0.051667")
    assert total.posts == 3
    assert total.rated_posts == 2
    assert Engagement().engagement_rate is None


counts = st.integers(min_value=0, max_value=10**9)


@given(st.lists(st.tuples(counts, counts, counts, st.integers(0, 10**7)), max_size=20))
def test_engagement_sum_is_order_independent(rows: list[tuple[int, int, int, int]]) -> None:
    parts = [
        Engagement.of_post(
            post_snapshot(
                post_event(
                    f"p{i}",
                    likes=likes,
                    comments=comments,
                    shares=shares,
                    followers=followers,
                )
            )
        )
        for i, (likes, comments, shares, followers) in enumerate(rows)
    ]
    forward = sum(parts, Engagement())
    backward = sum(reversed(parts), Engagement())
    assert forward == backward
    assert forward.engagement_rate == backward.engagement_rate


def test_performance_sums_deals_and_keeps_the_latest_as_of() -> None:
    one = attribute(facts(fee="100.00", revenue="300.00", orders=3)).performance
    two = attribute(
        DealFacts(
            deal_id="d2",
            campaign_id="c",
            creator_id="cr2",
            fee=usd("100.00"),
            commission_rate=Decimal(0),
            engagement=Engagement(),
            orders=1,
            revenue=usd("100.00"),
            pending_fx_orders=2,
            as_of=T0 + timedelta(days=1),
        )
    ).performance
    total = one + two
    assert total.spend == usd("200.00")
    assert total.revenue == usd("400.00")
    assert total.orders == 4
    assert total.pending_fx_orders == 2
    assert total.as_of == T0 + timedelta(days=1)
    assert total.ratios().roas == Decimal("2")
    assert (Performance.zero("USD") + one) == one


decimals = st.decimals(min_value=-(10**12), max_value=10**12, places=6, allow_nan=False)


@given(decimals, decimals.filter(lambda d: d != 0), st.integers(0, 8))
def test_rounded_quotient_is_the_exact_quotient_rounded_half_even(
    numerator: Decimal, denominator: Decimal, places: int
) -> None:
    exact = Fraction(numerator) / Fraction(denominator)
    expected = Decimal(round(exact * 10**places)).scaleb(-places)  # Fraction rounds half-even
    assert rounded_quotient(numerator, denominator, places) == expected


def test_rounded_quotient_ties_go_to_even() -> None:
    assert rounded_quotient(1, 8, 2) == Decimal("0.12")  # 0.125
    assert rounded_quotient(3, 8, 2) == Decimal("0.38")  # 0.375
    assert rounded_quotient(-1, 8, 2) == Decimal("-0.12")
