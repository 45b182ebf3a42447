"""CloudEvents JSON a brand, a shop or an onboarding flow writes by hand, for the e2e tests.

Nothing here imports CreatorFlow: every document is spelled out as docs/architecture.md §3
describes the contract, so the tests that send them check the contract as outsiders see it.
A population of 30 creators: six micro bakers with a US audience, 24 in other niches and tiers.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def cloud_event(event_type: str, source: str, subject: str, data: dict[str, Any]) -> dict[str, Any]:
    """A CloudEvents 1.0 structured-mode document, written out field by field."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": source,
        "type": event_type,
        "time": rfc3339(datetime.now(UTC)),
        "subject": subject,
        "datacontenttype": "application/json",
        "data": data,
    }


def money(amount: str, currency: str) -> dict[str, str]:
    return {"amount": amount, "currency": currency}


def deliverable(deliverable_id: str, kind: str, due_by: datetime) -> dict[str, Any]:
    """One item of a deal's `deliverables`: a single `kind` of post, due by `due_by`."""
    return {"deliverable_id": deliverable_id, "kind": kind, "count": 1, "due_by": rfc3339(due_by)}


def brand_funding(brand_id: str, amount: str, currency: str) -> dict[str, Any]:
    """`brand.funded`: money the brand paid in, which its creators' payouts draw on."""
    data = {
        "brand_id": brand_id,
        "funding_id": f"fund-{uuid.uuid4().hex[:10]}",
        "amount": money(amount, currency),
        "funded_at": rfc3339(datetime.now(UTC)),
    }
    return cloud_event("brand.funded", "test/brand", brand_id, data)


NOW = datetime.now(UTC)
USD_TO_EUR = "0.9215"
BAKING = [f"cr-bake-{n}" for n in range(6)]


def fx_snapshot() -> dict[str, Any]:
    data = {
        "base": "USD",
        "rates": {"EUR": USD_TO_EUR, "GBP": "0.7890", "JPY": "151.32", "CAD": "1.3650"},
        "as_of": rfc3339(NOW - timedelta(hours=1)),
        "source": "test-fx-feed",
    }
    return cloud_event("fx.rates.published", "test/fx-feed", "USD", data)


def profile(
    creator_id: str,
    *,
    followers: int,
    bio: str,
    topics: list[str],
    country: str,
    post_price: str,
    engagement: float,
    platform: str = "instagram",
) -> dict[str, Any]:
    likes = round(followers * engagement * 0.94, 1)
    comments = round(likes * 0.04, 1)
    shares = round(likes * 0.02, 1)
    home_share = 0.7 if country == "US" else 0.1
    data = {
        "creator_id": creator_id,
        "handle": f"@{creator_id.replace('-', '.')}",
        "platform": platform,
        "followers": followers,
        "avg_likes": likes,
        "avg_comments": comments,
        "avg_shares": shares,
        "avg_views": round(followers * 0.35, 1),
        "posts_last_30d": 12,
        "bio": bio,
        "topics": topics,
        "country": country,
        "language": "en",
        "audience": {
            "countries": {"US": home_share, "GB": 0.1, "CA": 0.1},
            "age": {"18-24": 0.3, "25-34": 0.45, "35-44": 0.2},
            "gender": {"female": 0.6, "male": 0.38, "other": 0.02},
        },
        "rate_card": {"post": money(post_price, "USD"), "story": money("120.00", "USD")},
        "payout_currency": "USD",
    }
    return cloud_event("creator.profile.upserted", "test/onboarding", creator_id, data)


def population() -> list[dict[str, Any]]:
    """Six micro creators in the baking niche, and 24 others in other niches and tiers."""
    bakers = [
        profile(
            creator_id,
            followers=followers,
            bio=bio,
            topics=["baking", "sourdough", "bread", "pastry"],
            country="US",
            post_price=price,
            engagement=rate,
        )
        for creator_id, followers, bio, price, rate in zip(
            BAKING,
            (18_400, 27_900, 41_300, 55_800, 73_200, 88_600),
            (
                "Sourdough bread baking every weekend, starter tips and crusty loaves",
                "Home baking for beginners: cakes, cookies and easy sourdough",
                "Pastry chef sharing croissants, laminated dough and bread baking",
                "Baking bread at home, sourdough starters and whole grain loaves",
                "Cake decorating, cookies and weekend baking with kids",
                "Artisan bread and sourdough baking, flour reviews and bakes",
            ),
            ("240.00", "310.00", "420.00", "480.00", "560.00", "640.00"),
            (0.041, 0.038, 0.044, 0.036, 0.040, 0.039),
            strict=True,
        )
    ]
    others = [
        ("fitness", "Gym workouts, strength training and running plans", ["fitness", "gym"]),
        ("gaming", "Speedruns, strategy games and esports commentary", ["gaming", "esports"]),
        ("travel", "Backpacking across Asia, hostels and budget flights", ["travel", "hiking"]),
        ("tech", "Smartphone reviews, laptops and gadget unboxings", ["tech", "gadgets"]),
        ("fashion", "Streetwear outfits, sneakers and thrift hauls", ["fashion", "style"]),
        ("finance", "Personal finance, investing and budgeting tips", ["finance", "investing"]),
    ]
    creators = []
    tiers = (
        (4_200, 0.08, "90.00"),  # nano
        (36_000, 0.04, "380.00"),  # micro
        (64_000, 0.035, "520.00"),  # micro
        (240_000, 0.02, "1900.00"),  # macro
    )
    for niche, bio, topics in others:
        for n, (followers, rate, price) in enumerate(tiers):
            creators.append(
                profile(
                    f"cr-{niche}-{n}",
                    followers=followers + 1_100 * n,
                    bio=bio,
                    topics=topics,
                    country="US" if n % 2 else "GB",
                    post_price=price,
                    engagement=rate,
                    platform="tiktok" if n == 2 else "instagram",
                )
            )
    return bakers + creators


def match_request(
    request_id: str, campaign_id: str = "cmp-outsider", brand_id: str = "brand-bakeco"
) -> dict[str, Any]:
    """Micro bakers with a US audience, up to 900.00 USD a post."""
    data = {
        "request_id": request_id,
        "brand_id": brand_id,
        "campaign_id": campaign_id,
        "niche": {
            "description": "Home baking gear: sourdough bread, cakes and pastry for beginners",
            "keywords": ["baking", "sourdough", "bread", "pastry"],
        },
        "target_audience": {"countries": ["US"], "age": [], "gender": "any"},
        "platforms": [],
        "tiers": ["micro"],
        "budget_per_creator": money("900.00", "USD"),
        "limit": 10,
        "exclude_creator_ids": [],
    }
    return cloud_event("match.requested", "test/brand", campaign_id, data)


def half_even(amount: Decimal, places: str = "0.01") -> Decimal:
    """What the contract promises for every conversion: half-even to the currency's places."""
    return amount.quantize(Decimal(places), rounding=ROUND_HALF_EVEN)
