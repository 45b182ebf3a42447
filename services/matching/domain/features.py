"""The ranking features, their tier benchmarks and the documented hand weights.

Every feature is a number in [0, 1] per creator, higher meaning a better match:

==================  ==========================================================================
niche               cosine similarity of the creator's TF-IDF vector (bio + topics) and the
                    brand's (niche description + keywords)
audience_country    share of the creator's audience in the brand's target countries (1 if any)
audience_age        share of the audience in the target age buckets (1 if any)
audience_gender     share of the audience of the target gender (1 if any)
engagement          engagement rate over the top of its tier's benchmark, capped at 1
authenticity        1 - the anomaly score of the account (IsolationForest), in [0, 1]
budget_fit          share of the budget left after the estimated cost: 1 - cost / budget
past_performance    realised ROAS shrunk towards the prior, as r / (r + prior): 0.5 = prior
==================  ==========================================================================

A ranker scores a creator as ``baseline + sum(weight[f] * x[f])``; the explanation of a
suggestion is exactly those terms (``baseline`` plus one contribution per feature), so the
contributions always add up to the score. See `services.matching.domain.ranker`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Final

import numpy as np
import numpy.typing as npt

from shared.contract.events.vocabulary import TIERS, Tier

FEATURES: Final[tuple[str, ...]] = (
    "niche",
    "audience_country",
    "audience_age",
    "audience_gender",
    "engagement",
    "authenticity",
    "budget_fit",
    "past_performance",
)
BASELINE: Final = "baseline"
"""Explanation key of the ranker's constant term (its intercept)."""

# Hand weights: the ranking before any feedback. Niche relevance dominates because a brand
# that asks for sourdough creators wants sourdough creators first; audience fit comes next
# (countries matter more than age or gender, which are already a softer target); engagement
# and authenticity separate good accounts among relevant ones; cost and track record only
# break ties. They add up to 1, so a hand-weighted score lies in [0, 1].
HAND_WEIGHTS: Final[dict[str, float]] = {
    "niche": 0.45,
    "audience_country": 0.15,
    "audience_age": 0.08,
    "audience_gender": 0.05,
    "engagement": 0.12,
    "authenticity": 0.07,
    "budget_fit": 0.03,
    "past_performance": 0.05,
}
HAND_MODEL_VERSION: Final = "hand-v1"

# Engagement rate benchmarks per tier, (low, high) of a healthy account: nano 5-10 %,
# micro 3-5 %, macro 1-3 %, mega < 1 % (we take 0.5-1 %).
ENGAGEMENT_BENCHMARK: Final[dict[Tier, tuple[float, float]]] = {
    "nano": (0.05, 0.10),
    "micro": (0.03, 0.05),
    "macro": (0.01, 0.03),
    "mega": (0.005, 0.01),
}

# Price of one post per 1000 followers when a creator has no rate card, in BENCHMARK_CURRENCY.
# Smaller accounts charge more per follower; these are common market figures for a feed post.
COST_PER_THOUSAND_FOLLOWERS: Final[dict[Tier, Decimal]] = {
    "nano": Decimal("20"),
    "micro": Decimal("12"),
    "macro": Decimal("9"),
    "mega": Decimal("7"),
}
MINIMUM_BENCHMARK_COST: Final = Decimal("25")
BENCHMARK_CURRENCY: Final = "USD"

# The deliverable a suggestion's cost is quoted for: one feed post. A creator whose rate card
# lacks "post" is quoted its cheapest listed deliverable.
QUOTED_DELIVERABLE: Final = "post"

TIER_CODES: Final[dict[Tier, int]] = {tier: code for code, tier in enumerate(TIERS)}
_ENGAGEMENT_HIGH: Final = np.array([ENGAGEMENT_BENCHMARK[t][1] for t in TIERS], dtype=np.float32)
_ENGAGEMENT_LOW: Final = np.array([ENGAGEMENT_BENCHMARK[t][0] for t in TIERS], dtype=np.float32)

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.integer]


def tier_codes(followers: npt.NDArray[np.integer] | npt.NDArray[np.floating]) -> IntArray:
    """Tier code (index into TIERS) per creator from its follower count (tiers as defined in
    docs/architecture.md §3)."""
    return np.searchsorted(
        np.array([10_000, 100_000, 1_000_000]), np.asarray(followers), side="right"
    ).astype(np.int8)


def engagement_rates(
    followers: npt.NDArray[np.floating],
    likes: npt.NDArray[np.floating],
    comments: npt.NDArray[np.floating],
    shares: npt.NDArray[np.floating],
) -> FloatArray:
    """(likes + comments + shares) / followers per creator; 0 for an account without followers."""
    engagements = likes + comments + shares
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.where(followers > 0, engagements / np.maximum(followers, 1), 0.0)
    return rate.astype(np.float32)


def engagement_quality(rate: FloatArray, tiers: IntArray) -> FloatArray:
    """Engagement rate over the top of its tier's benchmark range, capped at 1."""
    quality: FloatArray = np.minimum(rate / _ENGAGEMENT_HIGH[tiers], np.float32(1.0))
    return quality.astype(np.float32)


def engagement_floor(tiers: IntArray) -> FloatArray:
    """Bottom of each creator's tier benchmark range (the healthy minimum)."""
    return _ENGAGEMENT_LOW[tiers]


def engagement_ceiling(tiers: IntArray) -> FloatArray:
    """Top of each creator's tier benchmark range."""
    return _ENGAGEMENT_HIGH[tiers]


def benchmark_post_cost(followers: int, tier: Tier) -> Decimal:
    """Estimated price of one post in BENCHMARK_CURRENCY for a creator without a rate card.

    followers / 1000 x the tier's price per thousand, at least MINIMUM_BENCHMARK_COST, rounded
    to whole units (an estimate, not a quote).
    """
    estimate = Decimal(followers) / 1000 * COST_PER_THOUSAND_FOLLOWERS[tier]
    return max(MINIMUM_BENCHMARK_COST, estimate.quantize(Decimal(1)))


def shrunk_roas(
    roas_sum: npt.NDArray[np.floating],
    observations: npt.NDArray[np.integer],
    *,
    prior: float,
    k: float,
) -> npt.NDArray[np.float64]:
    """Mean realised ROAS per creator shrunk towards `prior` with `k` pseudo-observations.

    (sum + k * prior) / (n + k): with no deals it is the prior; with many, the creator's mean.
    """
    return (roas_sum + k * prior) / (observations + k)


def past_performance(shrunk: npt.NDArray[np.floating], *, prior: float) -> FloatArray:
    """Shrunk ROAS mapped to [0, 1) as r / (r + prior): 0.5 at the prior, rising with ROAS."""
    return (shrunk / (shrunk + prior)).astype(np.float32)
