"""Tracking events: post metrics and orders in, attribution and confirmations out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, ValidationInfo, field_validator, model_validator

from shared.contract.events.payload import ExternalPayload, InternalPayload
from shared.contract.events.types import (
    Count,
    CountryCode,
    CurrencyCode,
    Id,
    LongText,
    Name,
    PositiveDecimal,
    PromoCode,
    Ratio,
    Referrer,
    ShortText,
    SignedRatio,
    Tags,
    UtcDatetime,
    VisitorId,
)
from shared.contract.events.vocabulary import (
    AttributionModel,
    DeliverableKind,
    LeakedOrdersPolicy,
    LeakRule,
    Platform,
)
from shared.contract.money import Money, NonNegativeMoney

# Figures a deal's attribution and its campaign's define alike, declared once so that
# the two reports keep describing them the same way.
_EngagementRate = Annotated[
    Ratio | None,
    Field(
        description="(likes + comments + shares) / followers, averaged per post; 6 decimals.",
        examples=["0.051200"],
    ),
]
_NetRevenue = Annotated[
    Money,
    Field(
        description="Attributed revenue net of refunds.",
        examples=[{"amount": "2661.90", "currency": "USD"}],
    ),
]
_Cpm = Annotated[
    Ratio | None,
    Field(description="spend / impressions x 1000; 4 decimals.", examples=["7.8702"]),
]
_Cpe = Annotated[
    Ratio | None, Field(description="spend / engagements; 4 decimals.", examples=["0.0973"])
]
_Cpa = Annotated[
    Ratio | None, Field(description="spend / orders; 4 decimals.", examples=["17.4680"])
]
_Roas = Annotated[
    Ratio | None, Field(description="revenue / spend; 4 decimals.", examples=["3.7167"])
]
_RoiPct = Annotated[
    SignedRatio | None,
    Field(description="(revenue - spend) / spend x 100; 2 decimals.", examples=["271.67"]),
]


class PostMetricsObserved(ExternalPayload):
    """`post.metrics.observed`: a cumulative snapshot of one post's metrics.

    Snapshots are not deltas: consumers keep the one with the latest `observed_at` per post.
    """

    post_id: Id = Field(description="Post id; the Kafka key.", examples=["ig-post-9001"])
    creator_id: Id = Field(description="Creator who posted.", examples=["cr-1001"])
    platform: Platform = Field(description="Where it was posted.", examples=["instagram"])
    kind: DeliverableKind = Field(description="What kind of post.", examples=["reel"])
    deal_id: Id | None = Field(
        default=None, description="Deal the post is for, if known.", examples=["deal-42"]
    )
    caption: LongText | None = Field(
        default=None, description="Caption text, if collected.", examples=["New loaf! #ad"]
    )
    tags: Tags = Field(
        default=(), description="Hashtags and mentions on the post.", examples=[["#ad"]]
    )
    posted_at: UtcDatetime = Field(
        description="When the post went live.", examples=["2025-04-03T17:00:00Z"]
    )
    observed_at: UtcDatetime = Field(
        description="When these numbers were read; not before posted_at.",
        examples=["2025-04-04T17:00:00Z"],
    )
    likes: Count = Field(description="Likes so far.", examples=[2_310])
    comments: Count = Field(description="Comments so far.", examples=[95])
    shares: Count = Field(description="Shares so far.", examples=[40])
    saves: Count = Field(description="Saves so far.", examples=[120])
    views: Count = Field(description="Views so far.", examples=[21_000])
    impressions: Count = Field(description="Impressions so far.", examples=[30_500])
    reach: Count = Field(description="Unique accounts reached so far.", examples=[18_700])
    followers: Count = Field(description="Creator followers when observed.", examples=[48_300])

    @field_validator("observed_at")
    @classmethod
    def _observed_after_posting(cls, observed_at: datetime, info: ValidationInfo) -> datetime:
        posted_at = info.data.get("posted_at")
        if posted_at is not None and observed_at < posted_at:
            raise ValueError(f"must not be before posted_at ({posted_at.isoformat()})")
        return observed_at


class Utm(ExternalPayload):
    """UTM parameters of a landing URL, as sent (at least one)."""

    source: ShortText | None = Field(default=None, description="utm_source.", examples=["ig"])
    medium: ShortText | None = Field(
        default=None, description="utm_medium.", examples=["influencer"]
    )
    campaign: ShortText | None = Field(
        default=None, description="utm_campaign.", examples=["cmp-3"]
    )
    content: ShortText | None = Field(
        default=None, description="utm_content.", examples=["deal-42"]
    )
    term: ShortText | None = Field(default=None, description="utm_term.", examples=["bread"])

    @model_validator(mode="after")
    def _not_empty(self) -> Utm:
        if all(
            v is None for v in (self.source, self.medium, self.campaign, self.content, self.term)
        ):
            raise ValueError("give at least one UTM parameter")
        return self


class LinkClicked(ExternalPayload):
    """`link.clicked`: a visitor followed a creator's tracked link (or a UTM-tagged URL) to
    the brand's shop. Keyed by `deal_id`, like `deal.signed` (docs/architecture.md §10)."""

    click_id: Id = Field(
        description="Click id: a business key across every shop (prefix yours, e.g. with your "
        "shop id); the same id with another deal, visitor or time is refused.",
        examples=["clk-7781"],
    )
    deal_id: Id = Field(
        description="The deal whose link was followed; the Kafka key.", examples=["deal-42"]
    )
    visitor_id: VisitorId = Field(
        description=(
            "The visitor, hashed by the sender (64 lower-case hex digits); orders name the "
            "same hash."
        ),
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )
    clicked_at: UtcDatetime = Field(
        description="When the link was followed.", examples=["2025-04-04T09:30:00Z"]
    )
    link_id: Id | None = Field(
        default=None,
        description="The tracked link, if one was used. A click gives link_id, utm or both.",
        examples=["lnk-jane-1"],
    )
    utm: Utm | None = Field(
        default=None,
        description=(
            "The landing URL's UTM parameters, at least one of them. A click gives link_id, "
            "utm or both."
        ),
    )
    # Optional since v1.9: what binds a click to the shop's brand.
    brand_id: Id | None = Field(
        default=None,
        description=(
            "The brand whose shop the visitor reached. When given, the click counts only if "
            "its deal is that brand's."
        ),
        examples=["br-12"],
    )

    @model_validator(mode="after")
    def _link_or_utm(self) -> LinkClicked:
        if self.link_id is None and self.utm is None:
            raise ValueError("give the tracked link_id, the utm parameters, or both")
        return self


class OrderRedeemed(ExternalPayload):
    """`order.redeemed`: a shop order paid with a promo code."""

    order_id: Id = Field(description="Shop order id.", examples=["ord-5531"])
    promo_code: PromoCode = Field(description="Code used; the Kafka key.", examples=["JANE10"])
    amount: NonNegativeMoney = Field(
        description="Order revenue attributed to the code.",
        examples=[{"amount": "64.90", "currency": "USD"}],
    )
    occurred_at: UtcDatetime = Field(
        description="When the order was placed.", examples=["2025-04-05T10:12:00Z"]
    )
    brand_id: Id | None = Field(
        default=None,
        description=(
            "The brand whose shop sold the order. When given, or implied by a shop key "
            "registered for one brand, the order counts only for that brand's deals; without "
            "it, for the deal holding the code (a code belongs to one brand at a time)."
        ),
        examples=["br-12"],
    )
    # Optional since v1.5: what click-based attribution models join on.
    visitor_id: VisitorId | None = Field(
        default=None,
        description="The buyer's visitor hash, as in `link.clicked`.",
        examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"],
    )
    click_id: Id | None = Field(
        default=None,
        description="The click that led to the order, if known.",
        examples=["clk-7781"],
    )
    landing_utm: Utm | None = Field(
        default=None, description="UTM parameters of the session's landing URL."
    )
    shipping_country: CountryCode | None = Field(
        default=None, description="Where the order ships (ISO 3166-1 alpha-2).", examples=["US"]
    )
    referrer: Referrer | None = Field(
        default=None,
        description="The page the buyer came from (tracking keeps only its host).",
        examples=["https://www.instagram.com/"],
    )


class OrderRefunded(ExternalPayload):
    """`order.refunded`: money returned on an order placed with a promo code."""

    order_id: Id = Field(description="Shop order id of the original order.", examples=["ord-5531"])
    promo_code: PromoCode = Field(description="Code used; the Kafka key.", examples=["JANE10"])
    amount: NonNegativeMoney = Field(
        description="Amount refunded (positive).",
        examples=[{"amount": "64.90", "currency": "USD"}],
    )
    occurred_at: UtcDatetime = Field(
        description="When the refund happened.", examples=["2025-04-09T08:00:00Z"]
    )
    # Optional since v1.9: what binds a refund to the shop's brand.
    brand_id: Id | None = Field(
        default=None,
        description=(
            "The brand whose shop sold the order. When given, the refund counts only for an "
            "order of that brand: one naming it, or naming none and counted for its deal."
        ),
        examples=["br-12"],
    )


class AttributionUpdated(InternalPayload):
    """`attribution.updated`: running totals and ratios for one deal.

    A ratio is null when it is undefined (e.g. `cpa` with no orders, `roas` with zero spend);
    every ratio is rounded half-even to the decimals it states (the engagement rate is the
    mean of per-post rates, each rounded to 12 decimals first; the others are exact until
    rounded).
    """

    deal_id: Id = Field(description="Deal; the Kafka key.", examples=["deal-42"])
    campaign_id: Id = Field(description="Campaign of the deal.", examples=["cmp-3"])
    creator_id: Id = Field(description="Creator of the deal.", examples=["cr-1001"])
    posts: Count = Field(description="Posts attributed.", examples=[3])
    likes: Count = Field(description="Likes on those posts.", examples=[6_900])
    comments: Count = Field(description="Comments on those posts.", examples=[310])
    shares: Count = Field(description="Shares of those posts.", examples=[150])
    views: Count = Field(description="Views of those posts.", examples=[64_000])
    impressions: Count = Field(description="Impressions of those posts.", examples=[91_000])
    reach: Count = Field(description="Accounts reached.", examples=[55_000])
    engagement_rate: _EngagementRate
    orders: Count = Field(description="Net orders attributed.", examples=[41])
    revenue: _NetRevenue
    spend: NonNegativeMoney = Field(
        description=(
            "The deal's agreed fee (in force now, whatever part of it is paid yet) plus "
            "commission on the revenue so far."
        ),
        examples=[{"amount": "716.19", "currency": "USD"}],
    )
    cpm: _Cpm
    cpe: _Cpe
    cpa: _Cpa
    roas: _Roas
    roi_pct: _RoiPct
    # Optional since v1.1.
    saves: Count | None = Field(default=None, description="Saves of those posts.", examples=[880])
    as_of: UtcDatetime = Field(
        description=(
            "Latest input reflected in these numbers; never earlier than the `as_of` of the "
            "deal's update before. Several updates of a deal often share one `as_of` (figures "
            "worked out again, inputs dated before it arriving late): keep the update with "
            "the greatest `sequence` (v1.10); before it, the one read last of the deal's "
            "partition, keyed by `deal_id`."
        ),
        examples=["2025-04-10T00:00:00Z"],
    )
    # Optional since v1.5.
    attribution_model: AttributionModel | None = Field(
        default=None,
        description="The campaign's attribution model that produced `orders` and `revenue`.",
        examples=["position_based"],
    )
    # Optional since v1.6: leaked promo codes (`promo-code.leak-suspected`).
    leak_suspected: bool | None = Field(
        default=None,
        description="One of the deal's promo codes is suspected leaked.",
        examples=[True],
    )
    suspected_orders: Count | None = Field(
        default=None,
        description=(
            "Orders crediting the deal placed with a code once it was suspected leaked (not "
            "fully refunded); counted in `orders` unless withheld."
        ),
        examples=[14],
    )
    withheld_orders: Count | None = Field(
        default=None,
        description=(
            "Of the suspected orders, those the campaign's `leaked_orders: withhold` policy "
            "keeps out of `orders` and `revenue`."
        ),
        examples=[14],
    )
    withheld_revenue: Money | None = Field(
        default=None,
        description=(
            "Revenue of the withheld orders, net of refunds: not in `revenue`, so no "
            "commission is paid on it."
        ),
        examples=[{"amount": "908.60", "currency": "USD"}],
    )
    # Optional since v1.10.
    sequence: int | None = Field(
        default=None,
        ge=1,
        description=(
            "1 for the deal's first numbered update, then one more for each: keep the "
            "greatest. The event id derives from (deal, sequence), so an update published "
            "again has its id. Updates published before v1.10 carry none."
        ),
        examples=[12],
    )


class CampaignCurrencyTotals(InternalPayload):
    """A campaign's deals in one currency, summed (amounts in the deals' currency)."""

    deals: Count = Field(description="Deals in this currency.", examples=[2])
    orders: Count = Field(
        description=(
            "Net orders attributed to them, summed over the deals: an order a multi-touch "
            "model credits to several deals counts once for each."
        ),
        examples=[41],
    )
    pending_fx_orders: Count = Field(
        description="Orders attributed to them still waiting for an FX rate (not in `orders`).",
        examples=[0],
    )
    revenue: _NetRevenue
    fees: NonNegativeMoney = Field(
        description="The deals' fees.", examples=[{"amount": "450.00", "currency": "USD"}]
    )
    spend: NonNegativeMoney = Field(
        description=(
            "The deals' agreed fees (whatever part of them is paid yet) plus commission on "
            "the revenue so far."
        ),
        examples=[{"amount": "716.19", "currency": "USD"}],
    )


class CampaignFx(InternalPayload):
    """The FX snapshot a campaign's totals were converted with."""

    as_of: UtcDatetime = Field(
        description="The snapshot's as_of: the trusted one in force at the campaign's as_of.",
        examples=["2025-04-09T16:00:00Z"],
    )
    source: Name = Field(description="The feed that published it.", examples=["ecb"])
    rates: dict[CurrencyCode, PositiveDecimal] = Field(
        description=(
            "Units of the reporting currency per unit of each converted currency, unrounded."
        ),
        examples=[{"EUR": "1.085187194791101465002712968"}],
    )


class CampaignAttributionUpdated(InternalPayload):
    """`campaign.attribution.updated` (since v1.7): one campaign's running totals, per currency
    and in its reporting currency, its ratios and its brand's unattributed orders.

    Published at most once per campaign per applied batch, when its figures changed. Keep
    the one with the greatest `sequence` per (campaign_id, brand_id). A ratio is null when
    its denominator is zero, and every money figure in the reporting currency is null while
    no FX snapshot converts every currency (`fx_pending`).
    """

    campaign_id: Id = Field(description="Campaign; the Kafka key.", examples=["cmp-3"])
    brand_id: Id = Field(description="Brand of the campaign's deals.", examples=["br-12"])
    sequence: int = Field(
        ge=1,
        description="1 for the campaign's first update, then one more for each: keep the greatest.",
        examples=[7],
    )
    deals: Count = Field(description="Deals of the campaign.", examples=[25])
    posts: Count = Field(description="Posts attributed to them.", examples=[75])
    likes: Count = Field(description="Likes on those posts.", examples=[6_900])
    comments: Count = Field(description="Comments on those posts.", examples=[310])
    shares: Count = Field(description="Shares of those posts.", examples=[150])
    saves: Count = Field(description="Saves of those posts.", examples=[880])
    engagements: Count = Field(
        description="likes + comments + shares: what CPE divides by.", examples=[7_360]
    )
    views: Count = Field(description="Views of those posts.", examples=[64_000])
    impressions: Count = Field(description="Impressions of those posts.", examples=[91_000])
    reach: Count = Field(description="Accounts reached, summed over the posts.", examples=[55_000])
    engagement_rate: _EngagementRate
    orders: Count = Field(
        description=(
            "Net orders attributed to the deals, every currency, summed over the deals: an "
            "order a multi-touch model credits to several deals counts once for each (and "
            "`cpa` divides by this count)."
        ),
        examples=[41],
    )
    pending_fx_orders: Count = Field(
        description="Orders attributed to the deals still waiting for an FX rate.", examples=[0]
    )
    totals: tuple[CampaignCurrencyTotals, ...] = Field(
        description="One entry per currency of the deals, by currency code."
    )
    reporting_currency: CurrencyCode = Field(
        description="The currency of the campaign's first signed deal.", examples=["USD"]
    )
    fx_pending: bool = Field(
        description="No trusted FX snapshot converts every currency yet.", examples=[False]
    )
    revenue: Money | None = Field(
        description="Revenue in the reporting currency (each currency converted, then summed).",
        examples=[{"amount": "2661.90", "currency": "USD"}],
    )
    fees: NonNegativeMoney | None = Field(
        description="Fees in the reporting currency.",
        examples=[{"amount": "450.00", "currency": "USD"}],
    )
    spend: NonNegativeMoney | None = Field(
        description="Fees plus commission in the reporting currency.",
        examples=[{"amount": "716.19", "currency": "USD"}],
    )
    fx: CampaignFx | None = Field(
        default=None,
        description="The snapshot used; null when every deal is in the reporting currency.",
    )
    cpm: _Cpm
    cpe: _Cpe
    cpa: _Cpa
    roas: _Roas
    roi_pct: _RoiPct
    unattributed_orders: Count = Field(
        description=(
            "Orders naming the campaign's brand whose promo code no deal of the brand "
            "carries: counted per brand, the same in each of its campaigns."
        ),
        examples=[3],
    )
    unattributed_revenue: tuple[Money, ...] = Field(
        description="Their amounts as ordered, one per currency.",
        examples=[[{"amount": "129.80", "currency": "USD"}]],
    )
    as_of: UtcDatetime = Field(
        description="Latest input reflected in these numbers.", examples=["2025-04-10T00:00:00Z"]
    )


class LeakEvidence(InternalPayload):
    """Where one rule first fired on a promo code, and on what."""

    rule: LeakRule = Field(
        description="outside_audience, coupon_site or burst.", examples=["coupon_site"]
    )
    order_id: Id = Field(description="The order at which the rule fired.", examples=["ord-9120"])
    window_start: UtcDatetime = Field(
        description="The earliest order the rule looked at then.",
        examples=["2025-04-06T08:00:00Z"],
    )
    window_end: UtcDatetime = Field(
        description="When the order that fired it was placed.", examples=["2025-04-07T21:14:00Z"]
    )
    orders: Count = Field(
        description=(
            "Orders that looked leaked: shipped outside the audience countries, from a coupon "
            "site, or in the hour of the burst."
        ),
        examples=[6],
    )
    considered: Count = Field(
        description=(
            "Orders of the window that said where they ship (outside_audience), named a "
            "referrer (coupon_site), or were placed in the hour (burst)."
        ),
        examples=[15],
    )
    share: Ratio = Field(
        description="orders / considered (burst: orders / reach), 4 decimals, half-even.",
        examples=["0.4000"],
    )
    threshold: Ratio = Field(
        description="The share the rule must exceed (a TRACKING_LEAK_* setting).",
        examples=["0.3"],
    )
    reach: Count | None = Field(
        default=None,
        description="burst: the creator's reach on the deal it was measured against.",
        examples=[18_700],
    )


class PromoCodeLeakSuspected(InternalPayload):
    """`promo-code.leak-suspected`: a deal's promo code looks leaked beyond the creator's
    audience. Published once per code and rule, when the rule first fires; keyed by deal."""

    deal_id: Id = Field(description="Deal holding the code; the Kafka key.", examples=["deal-42"])
    campaign_id: Id = Field(description="Campaign of the deal.", examples=["cmp-3"])
    brand_id: Id = Field(description="Brand of the deal.", examples=["br-12"])
    creator_id: Id = Field(description="Creator of the deal.", examples=["cr-1001"])
    promo_code: PromoCode = Field(description="The code suspected leaked.", examples=["JANE10"])
    rule: LeakRule = Field(
        description="The rule that fired for the first time.", examples=["coupon_site"]
    )
    rules: tuple[LeakRule, ...] = Field(
        description="Every rule firing on the code now.", examples=[["coupon_site"]]
    )
    evidence: tuple[LeakEvidence, ...] = Field(description="One entry per rule in `rules`.")
    suspected_since: UtcDatetime = Field(
        description="When the first suspected order was placed: it and later ones are suspected.",
        examples=["2025-04-07T21:14:00Z"],
    )
    leaked_orders: LeakedOrdersPolicy = Field(
        description="The campaign's policy for suspected orders.", examples=["credit"]
    )
    window_days: int = Field(
        description="The window of the outside_audience and coupon_site rules, in days.",
        examples=[7],
    )


class DeliverableConfirmed(ExternalPayload):
    """`deliverable.confirmed`: a deliverable was seen published (by tracking or the brand)."""

    deal_id: Id = Field(description="Deal; the Kafka key.", examples=["deal-42"])
    deliverable_id: Id = Field(description="Deliverable confirmed.", examples=["dl-1"])
    post_id: Id | None = Field(
        default=None, description="Post that fulfils it, if known.", examples=["ig-post-9001"]
    )
    confirmed_by: Id = Field(
        description='"auto" when tracking confirmed it, otherwise the brand user id.',
        examples=["auto", "brand-user-77"],
    )
    confirmed_at: UtcDatetime = Field(
        description="When it was confirmed.", examples=["2025-04-04T18:00:00Z"]
    )
    # Optional since v1.4: the start of the post -> payout latency.
    post_received_at: UtcDatetime | None = Field(
        default=None,
        description=(
            "When CreatorFlow received the post snapshot that completed the deliverable (its "
            "Kafka record's timestamp), on an automatic confirmation made on that snapshot's "
            "arrival; null otherwise. Read only by payouts' latency metrics."
        ),
        examples=["2025-04-04T17:59:59.650Z"],
    )
