"""Matching events: a brand's request, our ranked suggestions, the brand's feedback."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Self

from pydantic import Field, field_validator, model_validator

from shared.contract.events.payload import ExternalPayload, InternalPayload
from shared.contract.events.types import (
    MAX_MAP_ENTRIES,
    MAX_SUGGESTIONS,
    MAX_TAGS,
    MAX_TARGET_COUNTRIES,
    Count,
    CountryCode,
    Estimate,
    ExcludedCreatorIds,
    Flags,
    Id,
    Keywords,
    LanguageCode,
    LongText,
    Name,
    Score,
    Share,
    ShortText,
    Tag,
)
from shared.contract.events.vocabulary import (
    AGE_BUCKETS,
    PLATFORMS,
    TIERS,
    AgeBucket,
    MatchDecision,
    Platform,
    TargetGender,
    Tier,
)
from shared.contract.money import NonNegativeMoney

DEFAULT_MATCH_LIMIT = 20
MAX_MATCH_LIMIT = MAX_SUGGESTIONS


class Niche(ExternalPayload):
    """What the campaign is about, in the brand's words."""

    description: LongText = Field(
        description="Free-text description of the campaign niche.",
        examples=["Home baking gear for beginners"],
    )
    keywords: Keywords = Field(
        description="Keywords (at most 100).", examples=[["baking", "sourdough"]]
    )


class TargetAudience(ExternalPayload):
    """The audience a brand wants to reach; an empty list means any value is fine."""

    countries: Annotated[tuple[CountryCode, ...], Field(max_length=MAX_TARGET_COUNTRIES)] = Field(
        description="Target countries (ISO 3166-1 alpha-2); empty = any.", examples=[["US"]]
    )
    age: Annotated[tuple[AgeBucket, ...], Field(max_length=len(AGE_BUCKETS))] = Field(
        description="Target age buckets; empty = any.", examples=[["18-24", "25-34"]]
    )
    gender: TargetGender = Field(description="Target audience gender.", examples=["any"])


class _Range(ExternalPayload):
    """Optional `min` and `max` bounds (declared by each range, with their own documentation)
    that, when both are given, are in order."""

    if TYPE_CHECKING:
        min: float | None
        max: float | None

    @model_validator(mode="after")
    def _min_not_above_max(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}; swap them")
        return self


class EngagementRange(_Range):
    """Bounds on a creator's engagement rate, (likes + comments + shares) / followers."""

    min: Estimate | None = Field(
        default=None, description="Least engagement rate; null = no floor.", examples=[0.02]
    )
    max: Estimate | None = Field(
        default=None, description="Most engagement rate; null = no ceiling.", examples=[0.12]
    )


class FollowerRange(_Range):
    """Bounds on a creator's follower count, both inclusive."""

    min: Count | None = Field(
        default=None, description="Fewest followers; null = no floor.", examples=[10_000]
    )
    max: Count | None = Field(
        default=None, description="Most followers; null = no ceiling.", examples=[250_000]
    )


class MatchFilters(ExternalPayload):
    """Hard filters: a creator outside any of them is left out and counted in `filtered`."""

    engagement_rate: EngagementRange | None = Field(
        default=None,
        description="Engagement rate range (outside_engagement_range); null = any.",
        examples=[{"min": 0.02, "max": 0.12}],
    )
    followers: FollowerRange | None = Field(
        default=None,
        description="Follower count range (outside_follower_range); null = any.",
        examples=[{"min": 10_000, "max": 250_000}],
    )
    creator_countries: Annotated[
        tuple[CountryCode, ...], Field(max_length=MAX_TARGET_COUNTRIES)
    ] = Field(
        default=(),
        description="Countries the creator must be based in (outside_creator_country); "
        "empty = any.",
        examples=[["US", "CA"]],
    )
    min_audience_age_share: Share | None = Field(
        default=None,
        description="Least share of the audience in target_audience.age "
        "(audience_age_mismatch); null = a soft preference only.",
        examples=[0.5],
    )
    min_audience_gender_share: Share | None = Field(
        default=None,
        description="Least share of the audience of target_audience.gender "
        "(audience_gender_mismatch); null = a soft preference only.",
        examples=[0.6],
    )


class MatchRequested(ExternalPayload):
    """`match.requested`: a brand asks for creators for one campaign.

    Empty `platforms` or `tiers` mean "any platform" / "any tier".
    """

    request_id: Id = Field(
        description="Request id, echoed in the answer. It names one request: the same "
        "request sent again is a repeat (answered once); an id already answered for another "
        "brand, campaign or other details is refused.",
        examples=["req-7"],
    )
    brand_id: Id = Field(description="Brand asking.", examples=["br-12"])
    campaign_id: Id = Field(description="Campaign; the Kafka key.", examples=["cmp-3"])
    niche: Niche = Field(description="What the campaign is about.")
    target_audience: TargetAudience = Field(description="Who the brand wants to reach.")
    platforms: Annotated[tuple[Platform, ...], Field(max_length=len(PLATFORMS))] = Field(
        description="Acceptable platforms; empty = any.", examples=[["instagram", "tiktok"]]
    )
    tiers: Annotated[tuple[Tier, ...], Field(max_length=len(TIERS))] = Field(
        description="Acceptable creator tiers by followers: nano under 10,000, micro 10,000 to "
        "99,999, macro 100,000 to 999,999, mega 1,000,000 or more; empty = any.",
        examples=[["nano", "micro"]],
    )
    budget_per_creator: NonNegativeMoney = Field(
        description="Most the brand pays one creator; above zero (matching refuses a zero budget).",
        examples=[{"amount": "500.00", "currency": "USD"}],
    )
    limit: Annotated[int, Field(strict=True, ge=1, le=MAX_MATCH_LIMIT)] = Field(
        default=DEFAULT_MATCH_LIMIT,
        description="How many suggestions to return (1-500).",
        examples=[DEFAULT_MATCH_LIMIT],
    )
    exclude_creator_ids: ExcludedCreatorIds = Field(
        description="Creators never to suggest (already hired, blocked); at most 10 000.",
        examples=[["cr-1", "cr-9"]],
    )
    # Optional since v1.1.
    languages: Annotated[tuple[LanguageCode, ...], Field(max_length=20)] = Field(
        default=(),
        description="Languages a creator must post in (ISO 639-1); empty = any.",
        examples=[["en", "es"]],
    )
    diversity: Share | None = Field(
        default=None,
        description="Relevance vs variety of the shortlist: 1 ranks by relevance only, lower "
        "values favour creators unlike those already picked; null = the service's default.",
        examples=[0.7],
    )
    # Optional since v1.2.
    filters: MatchFilters | None = Field(
        default=None,
        description="Hard filters on engagement, followers, creator country and audience "
        "age and gender; null = none beyond the fields above.",
    )

    @model_validator(mode="after")
    def _audience_filters_name_their_target(self) -> MatchRequested:
        filters = self.filters
        if filters is None:
            return self
        if filters.min_audience_age_share is not None and not self.target_audience.age:
            raise ValueError(
                "filters.min_audience_age_share needs the age buckets it applies to in "
                "target_audience.age"
            )
        if filters.min_audience_gender_share is not None and self.target_audience.gender == "any":
            raise ValueError(
                "filters.min_audience_gender_share needs target_audience.gender female or male"
            )
        return self


class Suggestion(InternalPayload):
    """One suggested creator with the reasons for its score."""

    rank: Annotated[int, Field(strict=True, ge=1, le=MAX_SUGGESTIONS)] = Field(
        description="Position in the ranking, 1 = best.", examples=[1]
    )
    creator_id: Id = Field(description="Suggested creator.", examples=["cr-1001"])
    handle: Name = Field(description="Creator handle.", examples=["@jane.bakes"])
    score: Score = Field(description="Match score; higher is better.", examples=[0.87])
    tier: Tier = Field(description="Creator tier by followers.", examples=["micro"])
    engagement_rate: Estimate = Field(
        description="(likes + comments + shares) / followers, averaged per post.",
        examples=[0.047],
    )
    estimated_cost: NonNegativeMoney = Field(
        description="Expected fee for the campaign's deliverables.",
        examples=[{"amount": "450.00", "currency": "USD"}],
    )
    explanation: Annotated[dict[Tag, Score], Field(max_length=MAX_MAP_ENTRIES)] = Field(
        description="Contribution of each feature to the score.",
        examples=[{"niche": 0.41, "audience_country": 0.22}],
    )
    flags: Flags = Field(
        default=(),
        description="Warnings for the brand (e.g. suspected_engagement_pod, follower_spike, "
        "low_post_frequency).",
        examples=[["suspected_engagement_pod"]],
    )
    # Optional since v1.2.
    flag_reasons: Annotated[dict[Tag, ShortText], Field(max_length=MAX_MAP_ENTRIES)] = Field(
        default_factory=dict,
        description="Why each flag was raised, with the numbers behind it.",
        examples=[
            {
                "suspected_engagement_pod": "0.31 comments per like (real audiences 0.01-0.06); "
                "0.001 shares per like (real audiences 0.005+)"
            }
        ],
    )
    # Optional since v1.3.
    matched_terms: Annotated[tuple[ShortText, ...], Field(max_length=MAX_TAGS)] = Field(
        default=(),
        description="The brief's words the creator's niche matched on, strongest first; a "
        "word read as a synonym, a translation or a typo of a creator's term shows it after "
        "'~'.",
        examples=[["pups ~ puppy", "doggies ~ dog"]],
    )
    # Optional since v1.4.
    exploration: bool = Field(
        default=False,
        description="True for an exploration slot: a creator drawn at random among eligible "
        "ones beyond the ranked shortlist (same filters, budget included), shown in the last "
        "places so feedback also covers creators the ranking would not show. Its rank is its "
        "place in the list, not a judgement of its score.",
        examples=[False],
    )
    # Optional since v1.5.
    platforms: Annotated[tuple[Platform, ...], Field(max_length=len(PLATFORMS))] = Field(
        default=(),
        description="The platforms of the creator's accounts that passed every filter (one "
        "creator may have several accounts: one suggestion names them all). The first is the "
        "account whose handle, tier, engagement rate, cost and score are shown: the best one.",
        examples=[["tiktok", "instagram"]],
    )


class MatchSuggested(InternalPayload):
    """`match.suggested`: ranked, explained creators answering one `match.requested`."""

    request_id: Id = Field(description="The request answered.", examples=["req-7"])
    brand_id: Id = Field(description="Brand that asked.", examples=["br-12"])
    campaign_id: Id = Field(description="Campaign; the Kafka key.", examples=["cmp-3"])
    model_version: Name = Field(description="Matching model that ranked.", examples=["lr-2025.03"])
    suggestions: Annotated[tuple[Suggestion, ...], Field(max_length=MAX_SUGGESTIONS)] = Field(
        description="Creators, best first (at most 500)."
    )
    filtered: Annotated[dict[Tag, Count], Field(max_length=MAX_MAP_ENTRIES)] = Field(
        description="Creators left out, counted by reason.",
        examples=[{"excluded": 2, "over_budget": 14}],
    )

    @field_validator("suggestions")
    @classmethod
    def _one_rank_and_one_entry_per_creator(
        cls, suggestions: tuple[Suggestion, ...]
    ) -> tuple[Suggestion, ...]:
        ranks = [suggestion.rank for suggestion in suggestions]
        if len(set(ranks)) != len(ranks):
            raise ValueError("ranks must be unique")
        creators = [suggestion.creator_id for suggestion in suggestions]
        if len(set(creators)) != len(creators):
            raise ValueError("each creator_id may be suggested once")
        return suggestions


class MatchFeedback(ExternalPayload):
    """`match.feedback`: what a brand did with one suggested creator."""

    campaign_id: Id = Field(description="Campaign; the Kafka key.", examples=["cmp-3"])
    creator_id: Id = Field(description="The suggested creator.", examples=["cr-1001"])
    decision: MatchDecision = Field(description="The brand's decision.", examples=["hired"])
    reason: ShortText = Field(
        description="Why, in the brand's words; may be empty.", examples=["Great audience fit"]
    )
    request_id: Id | None = Field(
        default=None,
        description="The request the suggestion answered, if known; one answered for "
        "another campaign is refused.",
        examples=["req-7"],
    )
