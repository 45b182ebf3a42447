"""A complete, valid example event for every registered v1 event type.

Used by tests, the smoke check and the demo: `valid_example(type)` returns a fresh CloudEvent
with a fixed id and time; the builders below return just the `data` payloads.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from pydantic import BaseModel, SecretStr

from shared.contract.events.brands import BrandFunded
from shared.contract.events.codec import make_event
from shared.contract.events.creators import (
    Audience,
    CreatorProfileUpserted,
    GenderSplit,
    PayoutAccountUpserted,
    TaxForm,
)
from shared.contract.events.deals import (
    AttributionModelSet,
    DealAmended,
    DealCancelled,
    DealSigned,
    Deliverable,
)
from shared.contract.events.envelope import CloudEvent
from shared.contract.events.fx import FxRatesPublished
from shared.contract.events.keys import SigningKeyRegistered, SigningKeyRevoked
from shared.contract.events.matching import (
    EngagementRange,
    FollowerRange,
    MatchFeedback,
    MatchFilters,
    MatchRequested,
    MatchSuggested,
    Niche,
    Suggestion,
    TargetAudience,
)
from shared.contract.events.payouts import PayoutStatusChanged
from shared.contract.events.registry import EventType
from shared.contract.events.tracking import (
    AttributionUpdated,
    CampaignAttributionUpdated,
    CampaignCurrencyTotals,
    CampaignFx,
    DeliverableConfirmed,
    LeakEvidence,
    LinkClicked,
    OrderRedeemed,
    OrderRefunded,
    PostMetricsObserved,
    PromoCodeLeakSuspected,
    Utm,
)
from shared.contract.events.vocabulary import PayoutStatus
from shared.contract.money import Money
from shared.contract.signing import Party, key_id

EXAMPLE_TIME = datetime(2025, 4, 1, 12, 0, tzinfo=UTC)
EXAMPLE_SOURCE = "tests/examples"


EXAMPLE_VISITOR: Final = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def usd(amount: str) -> Money:
    """`amount` (a decimal string) in US dollars."""
    return Money(Decimal(amount), "USD")


def creator_profile() -> CreatorProfileUpserted:
    return CreatorProfileUpserted(
        creator_id="cr-1001",
        handle="@jane.bakes",
        platform="instagram",
        followers=48_200,
        avg_likes=2150.5,
        avg_comments=87.0,
        avg_shares=41.25,
        avg_views=19_400.0,
        posts_last_30d=14,
        bio="Sourdough every Sunday.\nRecipes below.",
        topics=("baking", "food"),
        country="US",
        language="en",
        audience=Audience(
            countries={"US": 0.55, "CA": 0.12, "GB": 0.08},
            age={"18-24": 0.41, "25-34": 0.37, "35-44": 0.12},
            gender=GenderSplit(female=0.62, male=0.35, other=0.03),
        ),
        rate_card={"post": usd("450.00"), "reel": usd("600.00")},
        payout_currency="EUR",
    )


def payout_account() -> PayoutAccountUpserted:
    return PayoutAccountUpserted(
        creator_id="cr-1001",
        method="wise",
        destination=SecretStr("tok_wise_8f2c1a"),
        currency="EUR",
        tax_form=TaxForm(type="W-8BEN", status="verified", verified_at=EXAMPLE_TIME),
    )


def match_request() -> MatchRequested:
    return MatchRequested(
        request_id="req-7",
        brand_id="br-12",
        campaign_id="cmp-3",
        niche=Niche(description="Home baking gear for beginners", keywords=("baking", "bread")),
        target_audience=TargetAudience(countries=("US", "CA"), age=("18-24",), gender="any"),
        platforms=("instagram", "tiktok"),
        tiers=("nano", "micro"),
        budget_per_creator=usd("500.00"),
        limit=10,
        exclude_creator_ids=("cr-9",),
        filters=MatchFilters(
            followers=FollowerRange(min=5_000, max=250_000),
            engagement_rate=EngagementRange(min=0.02),
            min_audience_age_share=0.3,
        ),
    )


def match_suggestions() -> MatchSuggested:
    return MatchSuggested(
        request_id="req-7",
        brand_id="br-12",
        campaign_id="cmp-3",
        model_version="lr-2025.03",
        suggestions=(
            Suggestion(
                rank=1,
                creator_id="cr-1001",
                handle="@jane.bakes",
                score=0.87,
                tier="micro",
                engagement_rate=0.047,
                estimated_cost=usd("450.00"),
                explanation={"niche": 0.41, "audience_country": 0.22},
                flags=(),
            ),
            Suggestion(
                rank=2,
                creator_id="cr-1002",
                handle="@crumb.club",
                score=0.71,
                tier="nano",
                engagement_rate=0.081,
                estimated_cost=usd("120.00"),
                explanation={"niche": 0.30},
                flags=("low_post_frequency", "follower_spike"),
                flag_reasons={
                    "low_post_frequency": "3 posts in the last 30 days (fewer than 4)",
                    "follower_spike": "followers grew 4.2x (9,800 to 41,200) within 6 days",
                },
            ),
        ),
        filtered={"excluded": 1, "over_budget": 14},
    )


def match_feedback() -> MatchFeedback:
    return MatchFeedback(
        campaign_id="cmp-3", creator_id="cr-1001", decision="hired", reason="Great audience fit"
    )


def deal() -> DealSigned:
    return DealSigned(
        deal_id="deal-42",
        campaign_id="cmp-3",
        brand_id="br-12",
        creator_id="cr-1001",
        fee=usd("450.00"),
        commission_rate=Decimal("0.10"),
        promo_codes=("JANE10", "jane-bread"),
        deliverables=(
            Deliverable(
                deliverable_id="dl-1",
                kind="reel",
                count=1,
                due_by=EXAMPLE_TIME + timedelta(days=10),
            ),
            Deliverable(
                deliverable_id="dl-2",
                kind="story",
                count=3,
                due_by=EXAMPLE_TIME + timedelta(days=20),
            ),
        ),
        required_tags=("#ad",),
        starts_at=EXAMPLE_TIME,
        ends_at=EXAMPLE_TIME + timedelta(days=30),
        attribution_window_days=30,
    )


def deal_amended() -> DealAmended:
    """The example deal's second version: a higher fee and one code more."""
    signed = deal()
    return DealAmended(
        **{
            **signed.model_dump(),
            "fee": usd("600.00"),
            "promo_codes": (*signed.promo_codes, "JANE15"),
            "version": 2,
        }
    )


def deal_cancelled() -> DealCancelled:
    return DealCancelled(deal_id="deal-42", brand_id="br-12", reason="Campaign withdrawn")


def brand_funded() -> BrandFunded:
    return BrandFunded(
        brand_id="br-12",
        funding_id="fund-2025-04-0001",
        amount=usd("5000.00"),
        funded_at=EXAMPLE_TIME,
    )


def post_metrics() -> PostMetricsObserved:
    return PostMetricsObserved(
        post_id="ig-post-9001",
        creator_id="cr-1001",
        platform="instagram",
        kind="reel",
        deal_id="deal-42",
        caption="New loaf! #ad",
        tags=("#ad",),
        posted_at=EXAMPLE_TIME + timedelta(days=2),
        observed_at=EXAMPLE_TIME + timedelta(days=3),
        likes=2310,
        comments=95,
        shares=40,
        saves=120,
        views=21_000,
        impressions=30_500,
        reach=18_700,
        followers=48_300,
    )


def order_redeemed() -> OrderRedeemed:
    return OrderRedeemed(
        order_id="ord-5531",
        promo_code="JANE10",
        amount=usd("64.90"),
        occurred_at=EXAMPLE_TIME + timedelta(days=4),
        brand_id="br-12",
        visitor_id=EXAMPLE_VISITOR,
        click_id="clk-7781",
        landing_utm=Utm(source="ig", medium="influencer", campaign="cmp-3"),
        shipping_country="US",
        referrer="https://www.instagram.com/",
    )


def link_clicked() -> LinkClicked:
    return LinkClicked(
        click_id="clk-7781",
        deal_id="deal-42",
        visitor_id=EXAMPLE_VISITOR,
        clicked_at=EXAMPLE_TIME + timedelta(days=3, hours=21),
        link_id="lnk-jane-1",
        utm=Utm(source="ig", medium="influencer", campaign="cmp-3", content="deal-42"),
    )


def attribution_model_set() -> AttributionModelSet:
    return AttributionModelSet(
        campaign_id="cmp-3", brand_id="br-12", model="position_based", lookback_days=30
    )


def order_refunded() -> OrderRefunded:
    return OrderRefunded(
        order_id="ord-5531",
        promo_code="JANE10",
        amount=usd("64.90"),
        occurred_at=EXAMPLE_TIME + timedelta(days=8),
    )


def attribution() -> AttributionUpdated:
    return AttributionUpdated(
        deal_id="deal-42",
        campaign_id="cmp-3",
        creator_id="cr-1001",
        posts=1,
        likes=2310,
        comments=95,
        shares=40,
        views=21_000,
        impressions=30_500,
        reach=18_700,
        engagement_rate=Decimal("0.050600"),
        orders=0,
        revenue=usd("0.00"),
        spend=usd("450.00"),
        cpm=Decimal("14.7541"),
        cpe=Decimal("0.1840"),
        cpa=None,
        roas=Decimal("0.0000"),
        roi_pct=Decimal("-100.00"),
        as_of=EXAMPLE_TIME + timedelta(days=3),
        attribution_model="promo_code",
        sequence=4,
    )


def campaign_attribution() -> CampaignAttributionUpdated:
    """A campaign with a USD deal and a EUR deal, reported in USD at EUR 0.9215 per USD."""
    eur = Money(Decimal("1000.00"), "EUR")
    return CampaignAttributionUpdated(
        campaign_id="cmp-3",
        brand_id="br-12",
        sequence=7,
        deals=2,
        posts=6,
        likes=6_900,
        comments=310,
        shares=150,
        saves=880,
        engagements=7_360,
        views=64_000,
        impressions=91_000,
        reach=55_000,
        engagement_rate=Decimal("0.051200"),
        orders=42,
        pending_fx_orders=0,
        totals=(
            CampaignCurrencyTotals(
                deals=1,
                orders=12,
                pending_fx_orders=0,
                revenue=eur,
                fees=Money(Decimal("300.00"), "EUR"),
                spend=Money(Decimal("450.00"), "EUR"),
            ),
            CampaignCurrencyTotals(
                deals=1,
                orders=30,
                pending_fx_orders=0,
                revenue=usd("2000.00"),
                fees=usd("450.00"),
                spend=usd("650.00"),
            ),
        ),
        reporting_currency="USD",
        fx_pending=False,
        revenue=usd("3085.19"),
        fees=usd("775.56"),
        spend=usd("1138.33"),
        fx=CampaignFx(
            as_of=EXAMPLE_TIME,
            source="ecb",
            rates={"EUR": Decimal("1.085187194791101465002712967986978")},
        ),
        cpm=Decimal("12.5091"),
        cpe=Decimal("0.1547"),
        cpa=Decimal("27.1031"),
        roas=Decimal("2.7103"),
        roi_pct=Decimal("171.03"),
        unattributed_orders=3,
        unattributed_revenue=(usd("129.80"),),
        as_of=EXAMPLE_TIME + timedelta(days=9),
    )


def promo_code_leak_suspected() -> PromoCodeLeakSuspected:
    return PromoCodeLeakSuspected(
        deal_id="deal-42",
        campaign_id="cmp-3",
        brand_id="br-12",
        creator_id="cr-1001",
        promo_code="JANE10",
        rule="coupon_site",
        rules=("coupon_site",),
        evidence=(
            LeakEvidence(
                rule="coupon_site",
                order_id="ord-9120",
                window_start=EXAMPLE_TIME + timedelta(days=5),
                window_end=EXAMPLE_TIME + timedelta(days=6, hours=9),
                orders=6,
                considered=15,
                share=Decimal("0.4000"),
                threshold=Decimal("0.3"),
            ),
        ),
        suspected_since=EXAMPLE_TIME + timedelta(days=6, hours=9),
        leaked_orders="credit",
        window_days=7,
    )


def deliverable_confirmed() -> DeliverableConfirmed:
    return DeliverableConfirmed(
        deal_id="deal-42",
        deliverable_id="dl-1",
        post_id="ig-post-9001",
        confirmed_by="auto",
        confirmed_at=EXAMPLE_TIME + timedelta(days=3),
    )


def fx_rates() -> FxRatesPublished:
    return FxRatesPublished(
        base="USD",
        rates={"EUR": Decimal("0.9215"), "JPY": Decimal("151.32"), "KWD": Decimal("0.3071")},
        as_of=EXAMPLE_TIME,
        source="ecb",
    )


# A fixed example key: never registered anywhere, so it signs nothing that counts.
EXAMPLE_PUBLIC_KEY: Final = "A6EHv_POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg"


def signing_key_registered() -> SigningKeyRegistered:
    return SigningKeyRegistered(
        key_id=key_id(EXAMPLE_PUBLIC_KEY),
        party=Party.BRAND,
        owner_id="br-12",
        public_key=EXAMPLE_PUBLIC_KEY,
    )


def signing_key_revoked() -> SigningKeyRevoked:
    return SigningKeyRevoked(key_id=key_id(EXAMPLE_PUBLIC_KEY), reason="rotated")


def payout(status: PayoutStatus) -> PayoutStatusChanged:
    return PayoutStatusChanged(
        payout_id="po_5b1e0c9a7d2f4e6b8a3c1d0e9f8a7b6c",
        deal_id="deal-42",
        creator_id="cr-1001",
        gross=usd("450.00"),
        fx_rate=Decimal("0.9215"),
        net=Money(Decimal("414.68"), "EUR"),
        status=status,
        reason="tax form not verified" if status in {"held", "failed"} else None,
        hold_code="tax_form" if status == "held" else None,
        provider_ref="tr_91ab" if status in {"sent", "settled"} else None,
    )


_DATA_BUILDERS: dict[str, Callable[[], BaseModel]] = {
    EventType.CREATOR_PROFILE_UPSERTED: creator_profile,
    EventType.CREATOR_PAYOUT_ACCOUNT_UPSERTED: payout_account,
    EventType.MATCH_REQUESTED: match_request,
    EventType.MATCH_SUGGESTED: match_suggestions,
    EventType.MATCH_FEEDBACK: match_feedback,
    EventType.DEAL_SIGNED: deal,
    EventType.DEAL_AMENDED: deal_amended,
    EventType.DEAL_CANCELLED: deal_cancelled,
    EventType.ATTRIBUTION_MODEL_SET: attribution_model_set,
    EventType.BRAND_FUNDED: brand_funded,
    EventType.POST_METRICS_OBSERVED: post_metrics,
    EventType.ORDER_REDEEMED: order_redeemed,
    EventType.ORDER_REFUNDED: order_refunded,
    EventType.LINK_CLICKED: link_clicked,
    EventType.ATTRIBUTION_UPDATED: attribution,
    EventType.PROMO_CODE_LEAK_SUSPECTED: promo_code_leak_suspected,
    EventType.CAMPAIGN_ATTRIBUTION_UPDATED: campaign_attribution,
    EventType.DELIVERABLE_CONFIRMED: deliverable_confirmed,
    EventType.FX_RATES_PUBLISHED: fx_rates,
    EventType.PAYOUT_SCHEDULED: lambda: payout("scheduled"),
    EventType.PAYOUT_HELD: lambda: payout("held"),
    EventType.PAYOUT_SENT: lambda: payout("sent"),
    EventType.PAYOUT_FAILED: lambda: payout("failed"),
    EventType.PAYOUT_SETTLED: lambda: payout("settled"),
    EventType.SIGNING_KEY_REGISTERED: signing_key_registered,
    EventType.SIGNING_KEY_REVOKED: signing_key_revoked,
}


def valid_example(event_type: str) -> CloudEvent[Any]:
    """A complete valid event of `event_type` with a fixed id and time."""
    return make_event(
        _DATA_BUILDERS[event_type](),
        type=event_type,
        source=EXAMPLE_SOURCE,
        id=f"example-{event_type}",
        time=EXAMPLE_TIME,
    )
