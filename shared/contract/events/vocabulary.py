"""Closed vocabularies shared by several events (platforms, tiers, deliverable kinds, ...).

Adding a value is an additive change within v1; removing or renaming one is a new version.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

Platform = Literal[
    "instagram",
    "tiktok",
    "youtube",
    "twitch",
    "x",
    "facebook",
    "pinterest",
    "snapchat",
    "linkedin",
    "threads",
]
"""Social platforms a creator publishes on."""

Tier = Literal["nano", "micro", "macro", "mega"]
"""Creator size by followers: nano < 10k, micro 10k-100k, macro 100k-1M, mega >= 1M."""

DeliverableKind = Literal["post", "story", "reel", "video", "short"]
"""What a creator publishes: used by rate cards, deal deliverables and post metrics."""

AgeBucket = Literal["13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
"""Audience age ranges, as the platforms report them."""

TargetGender = Literal["female", "male", "any"]
"""The audience gender a brand targets."""

MatchDecision = Literal["accepted", "declined", "hired"]
"""A brand's answer to one suggested creator."""

PayoutMethod = Literal["bank_transfer", "paypal", "stripe", "wise"]
"""How a creator is paid."""

TaxFormType = Literal["W-9", "W-8BEN", "W-8BEN-E", "other"]
"""IRS form on file (W-9 for US persons, W-8BEN / W-8BEN-E for foreign individuals / entities)."""

TaxFormStatus = Literal["missing", "pending", "verified", "rejected"]
"""Where the tax form stands; payouts hold until it is verified."""

PayoutStatus = Literal["scheduled", "held", "sent", "failed", "settled"]
"""Lifecycle of one payout; each status is published as the event type `payout.<status>`."""

PayoutKind = Literal["fee", "commission", "clawback"]
"""What a payout pays: the deal's fee, commission on attributed revenue, or a clawback of
commission paid on revenue later refunded (owed back by the creator: no money moves to them)."""

PayoutHoldCode = Literal[
    "no_account",
    "tax_form",
    "fx_rate",
    "fx_suspect",
    "stale_fx",
    "amount_check",
    "destination_cooloff",
    "rail_unavailable",
    "awaiting_funds",
]
"""Why a payout is held, as a code (`payout.held`'s `hold_code`, whose description says what
each means)."""

AttributionModel = Literal[
    "promo_code", "last_click", "first_click", "linear", "position_based", "time_decay"
]
"""How a campaign splits an order's credit between its deals (docs/architecture.md §10)."""

LeakedOrdersPolicy = Literal["credit", "withhold"]
"""Whether a campaign's orders placed with a code suspected leaked still earn commission."""

LeakRule = Literal["outside_audience", "coupon_site", "burst"]
"""Why a promo code is suspected leaked (docs/architecture.md §10)."""

PLATFORMS: Final[tuple[Platform, ...]] = get_args(Platform)
TIERS: Final[tuple[Tier, ...]] = get_args(Tier)
DELIVERABLE_KINDS: Final[tuple[DeliverableKind, ...]] = get_args(DeliverableKind)
AGE_BUCKETS: Final[tuple[AgeBucket, ...]] = get_args(AgeBucket)
PAYOUT_STATUSES: Final[tuple[PayoutStatus, ...]] = get_args(PayoutStatus)
PAYOUT_HOLD_CODES: Final[tuple[PayoutHoldCode, ...]] = get_args(PayoutHoldCode)
PAYOUT_KINDS: Final[tuple[PayoutKind, ...]] = get_args(PayoutKind)
ATTRIBUTION_MODELS: Final[tuple[AttributionModel, ...]] = get_args(AttributionModel)

_MICRO_FROM: Final = 10_000
_MACRO_FROM: Final = 100_000
_MEGA_FROM: Final = 1_000_000


def tier_for_followers(followers: int) -> Tier:
    """The tier of a creator with `followers` followers (docs/architecture.md §3 definitions)."""
    if followers < _MICRO_FROM:
        return "nano"
    if followers < _MACRO_FROM:
        return "micro"
    if followers < _MEGA_FROM:
        return "macro"
    return "mega"
