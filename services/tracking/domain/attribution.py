"""Attribution arithmetic (docs/architecture.md §3): totals, spend and the published ratios.

Totals are additive (`Performance.__add__`), so a campaign's figures are the sum of its
deals' totals and its ratios are computed from that sum, never averaged from deal ratios.

Published ratios are exact quotients rounded once, half-even, to a fixed number of decimals:

============================  ==========================================  ========
ratio                         definition                                  decimals
============================  ==========================================  ========
engagement_rate               mean over posts of (likes+comments+shares)  6
                              / followers (each post rounded to 12)
cpm                           spend / impressions x 1000                  4
cpe                           spend / (likes + comments + shares)         4
cpa                           spend / orders                              4
roas                          revenue / spend                             4
roi_pct                       (revenue - spend) / spend x 100             2
============================  ==========================================  ========

A ratio is None when its denominator is zero (no impressions, engagements, orders or spend;
no post with followers for the engagement rate). Money ratios are in the deal's currency.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Final

from services.tracking.domain.credit import Model
from services.tracking.domain.leaks import NO_LEAKS, LeakTotals
from services.tracking.domain.posts import PostSnapshot
from services.tracking.domain.quotient import rounded_quotient
from shared.contract.money import Money

ENGAGEMENT_RATE_PLACES: Final = 6
COST_PLACES: Final = 4
ROAS_PLACES: Final = 4
ROI_PLACES: Final = 2

# Sums of per-post rates (12 decimals, possibly > 1) must stay exact whatever their number.
_EXACT: Final = decimal.Context(prec=60, traps=[decimal.Inexact, decimal.InvalidOperation])


@dataclass(frozen=True, slots=True)
class Engagement:
    """Summed post metrics; `rate_sum` adds the per-post engagement rates of the
    `rated_posts` posts that had followers."""

    posts: int = 0
    likes: int = 0
    comments: int = 0
    shares: int = 0
    saves: int = 0
    views: int = 0
    impressions: int = 0
    reach: int = 0
    rate_sum: Decimal = Decimal(0)
    rated_posts: int = 0

    @classmethod
    def of_post(cls, post: PostSnapshot) -> Engagement:
        rate = post.engagement_rate
        return cls(
            posts=1,
            likes=post.likes,
            comments=post.comments,
            shares=post.shares,
            saves=post.saves,
            views=post.views,
            impressions=post.impressions,
            reach=post.reach,
            rate_sum=rate if rate is not None else Decimal(0),
            rated_posts=0 if rate is None else 1,
        )

    def __add__(self, other: Engagement) -> Engagement:
        return Engagement(
            posts=self.posts + other.posts,
            likes=self.likes + other.likes,
            comments=self.comments + other.comments,
            shares=self.shares + other.shares,
            saves=self.saves + other.saves,
            views=self.views + other.views,
            impressions=self.impressions + other.impressions,
            reach=self.reach + other.reach,
            rate_sum=_EXACT.add(self.rate_sum, other.rate_sum),
            rated_posts=self.rated_posts + other.rated_posts,
        )

    @property
    def engagements(self) -> int:
        """likes + comments + shares: the denominator of CPE."""
        return self.likes + self.comments + self.shares

    @property
    def engagement_rate(self) -> Decimal | None:
        """Mean per-post engagement rate, ENGAGEMENT_RATE_PLACES decimals; None without posts."""
        if self.rated_posts == 0:
            return None
        return rounded_quotient(self.rate_sum, self.rated_posts, ENGAGEMENT_RATE_PLACES)


def commission_due(revenue: Money, commission_rate: Decimal) -> Money:
    """commission_rate x attributed revenue, in the revenue's currency, rounded half-even to
    the minor unit (shared.contract.money); zero when there is no positive revenue."""
    if revenue.amount <= 0:
        return Money.zero(revenue.currency)
    return revenue.times(commission_rate)


def deal_spend(fee: Money, revenue: Money, commission_rate: Decimal) -> Money:
    """What the deal costs the brand so far: the fee plus commission due on `revenue`."""
    return fee + commission_due(revenue, commission_rate)


@dataclass(frozen=True, slots=True)
class Ratios:
    engagement_rate: Decimal | None
    cpm: Decimal | None
    cpe: Decimal | None
    cpa: Decimal | None
    roas: Decimal | None
    roi_pct: Decimal | None


def _ratio(numerator: Decimal | int, denominator: Decimal | int, places: int) -> Decimal | None:
    if denominator == 0:
        return None
    return rounded_quotient(numerator, denominator, places)


@dataclass(frozen=True, slots=True)
class Performance:
    """Additive running totals of one deal or a sum of deals in one currency.

    `revenue` is the deal's credit of attributed revenue net of refunds; `orders` counts the
    attributed orders not fully refunded that credit the deal (an order split between deals
    counts once for each); orders still waiting for an FX rate are only in
    `pending_fx_orders`.
    `as_of` is the latest input time reflected (None for an empty sum).
    """

    engagement: Engagement
    orders: int
    revenue: Money
    spend: Money
    pending_fx_orders: int
    as_of: datetime | None

    @classmethod
    def zero(cls, currency: str) -> Performance:
        nothing = Money.zero(currency)
        return cls(Engagement(), 0, nothing, nothing, 0, None)

    def __add__(self, other: Performance) -> Performance:
        as_of = max((t for t in (self.as_of, other.as_of) if t is not None), default=None)
        return Performance(
            engagement=self.engagement + other.engagement,
            orders=self.orders + other.orders,
            revenue=self.revenue + other.revenue,
            spend=self.spend + other.spend,
            pending_fx_orders=self.pending_fx_orders + other.pending_fx_orders,
            as_of=as_of,
        )

    def ratios(self) -> Ratios:
        """The published ratios, rounded as the module docstring says."""
        spend, revenue = self.spend.amount, self.revenue.amount
        impressions = self.engagement.impressions
        return Ratios(
            engagement_rate=self.engagement.engagement_rate,
            cpm=_ratio(spend * 1000, impressions, COST_PLACES),
            cpe=_ratio(spend, self.engagement.engagements, COST_PLACES),
            cpa=_ratio(spend, self.orders, COST_PLACES),
            roas=_ratio(revenue, spend, ROAS_PLACES),
            roi_pct=_ratio((revenue - spend) * 100, spend, ROI_PLACES),
        )


@dataclass(frozen=True, slots=True)
class DealFacts:
    """What the store knows about one deal, before spend and ratios are derived."""

    deal_id: str
    campaign_id: str
    creator_id: str
    fee: Money
    commission_rate: Decimal
    engagement: Engagement
    orders: int
    revenue: Money
    pending_fx_orders: int
    as_of: datetime
    # The campaign's model in force for the deal, and the event that set it ('' if none).
    model: Model = Model.PROMO_CODE
    setting_id: str = ""
    # Suspected (leaked-code) orders crediting the deal; `orders` and `revenue` are net of
    # those withheld (`with_leaks`).
    leaks: LeakTotals = NO_LEAKS


@dataclass(frozen=True, slots=True)
class DealAttribution:
    """A deal's running attribution: totals and the ratios derived from them, and the
    model that credited its orders (`setting_id`: the event that chose it, '' if none), so
    a new choice publishes every deal of the campaign once, even with the same figures."""

    deal_id: str
    campaign_id: str
    creator_id: str
    performance: Performance
    ratios: Ratios
    model: Model = Model.PROMO_CODE
    setting_id: str = ""
    leaks: LeakTotals = NO_LEAKS
    # Set as it is published: 1 for the deal's first update, then one more for each.
    sequence: int | None = None


def as_published(
    attribution: DealAttribution, last: datetime | None, sequence: int
) -> DealAttribution:
    """`attribution` as published as its deal's `sequence`-th update, with an `as_of` no
    earlier than `last`, the one published last for its deal: figures worked out again under
    a new model or new terms may reflect older inputs of their own, yet they account for
    everything up to `last` and replace what it dated."""
    as_of = attribution.performance.as_of
    if last is not None and (as_of is None or as_of < last):
        attribution = replace(attribution, performance=replace(attribution.performance, as_of=last))
    return replace(attribution, sequence=sequence)


def with_leaks(facts: DealFacts, leaks: LeakTotals) -> DealFacts:
    """`facts` with its suspected orders: those withheld leave `orders` and `revenue`, so
    neither the commission (in `spend`) nor the ratios count them."""
    withheld = Money(leaks.withheld_revenue, facts.revenue.currency)
    return replace(
        facts,
        orders=facts.orders - leaks.withheld_orders,
        revenue=facts.revenue - withheld,
        leaks=leaks,
    )


def attribute(facts: DealFacts) -> DealAttribution:
    """Spend (fee + commission on net revenue) and ratios of one deal."""
    performance = Performance(
        engagement=facts.engagement,
        orders=facts.orders,
        revenue=facts.revenue,
        spend=deal_spend(facts.fee, facts.revenue, facts.commission_rate),
        pending_fx_orders=facts.pending_fx_orders,
        as_of=facts.as_of,
    )
    return DealAttribution(
        facts.deal_id,
        facts.campaign_id,
        facts.creator_id,
        performance,
        performance.ratios(),
        facts.model,
        facts.setting_id,
        facts.leaks,
    )
