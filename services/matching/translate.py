"""Contract <-> domain for matching: wire payloads to domain values (a request to a
`MatchQuery`, profiles to the index's columns), and domain results to what is stored and
published (`match.suggested`). Also the business checks of a request (-> DLQ)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from services.matching.domain.features import FEATURES
from services.matching.domain.niche_terms import content_words
from services.matching.domain.profiles import GENDERS, ProfileColumns
from services.matching.domain.scoring import MatchQuery, MatchResult
from services.matching.store.port import Answer, Feedback, FollowerCount, StoredProfile
from shared.contract.errors import EventRejected
from shared.contract.events import (
    Audience,
    CloudEvent,
    CreatorProfileUpserted,
    GenderSplit,
    MatchFeedback,
    MatchRequested,
    MatchSuggested,
    Suggestion,
)
from shared.contract.events.matching import EngagementRange, FollowerRange, MatchFilters
from shared.contract.events.vocabulary import AGE_BUCKETS, AgeBucket


def check_request(request: MatchRequested) -> None:
    """Raise EventRejected (-> DLQ) for a request no ranking can answer sensibly."""
    if request.budget_per_creator.amount <= 0:
        raise EventRejected(
            f"budget_per_creator: {request.budget_per_creator} leaves nothing to pay a creator; "
            "send a budget above zero"
        )
    niche_text = f"{request.niche.description} {' '.join(request.niche.keywords)}"
    if not content_words(niche_text):
        # Stop words alone ("for the", "it") match nobody: answering would only say that
        # every creator is off_niche, so the request is refused like an empty niche.
        raise EventRejected(
            f"niche: description and keywords {niche_text.strip()[:80]!r} hold no content word "
            "to match creators on (stop words such as 'the' or 'for' do not count); describe "
            "the campaign niche or give keywords"
        )


# Read once: `model_fields` on the class costs more than the getattr of every field.
_SUGGESTION_FIELDS: Final = tuple(Suggestion.model_fields)


def suggestion_payload(request: MatchRequested, result: MatchResult) -> MatchSuggested:
    """The answer to `request`: ranked creators (best first) and the filtered counts."""
    return MatchSuggested(
        request_id=request.request_id,
        brand_id=request.brand_id,
        campaign_id=request.campaign_id,
        model_version=result.model_version,
        # A ranked creator carries every field of the wire suggestion, by the same name.
        suggestions=tuple(
            Suggestion(**{name: getattr(c, name) for name in _SUGGESTION_FIELDS})
            for c in result.creators
        ),
        filtered=result.filtered,
    )


def match_query(
    request: MatchRequested,
    *,
    hired: frozenset[str] = frozenset(),
    exploration_seed: int | None = None,
) -> MatchQuery:
    """What the ranking reads of a brand's request."""
    niche = request.niche
    filters = request.filters or MatchFilters()
    engagement = filters.engagement_rate or EngagementRange()
    followers = filters.followers or FollowerRange()
    return MatchQuery(
        niche_text=f"{niche.description} {' '.join(niche.keywords)}",
        countries=tuple(request.target_audience.countries),
        ages=tuple(request.target_audience.age),
        gender=request.target_audience.gender,
        platforms=tuple(request.platforms),
        tiers=tuple(request.tiers),
        budget=request.budget_per_creator,
        limit=request.limit,
        exclude=frozenset(request.exclude_creator_ids),
        hired=hired,
        languages=tuple(request.languages),
        diversity_trade_off=request.diversity,
        engagement_range=(engagement.min, engagement.max),
        follower_range=(followers.min, followers.max),
        creator_countries=tuple(filters.creator_countries),
        min_audience_age_share=filters.min_audience_age_share,
        min_audience_gender_share=filters.min_audience_gender_share,
        exploration_seed=exploration_seed,
    )


def exploration_seed(event_id: str) -> int:
    """The exploration draw's seed for a request event: the same for every replay of it."""
    return int.from_bytes(hashlib.sha256(event_id.encode()).digest()[:8], "big")


def answer_record(event_id: str, request: MatchRequested, result: MatchResult) -> Answer:
    """The answer to `request` as recorded for learning and audit."""
    return Answer(
        request_id=request.request_id,
        campaign_id=request.campaign_id,
        brand_id=request.brand_id,
        model_version=result.model_version,
        fx_as_of=None if result.fx is None else result.fx.as_of,
        fx_source=None if result.fx is None else result.fx.source,
        filtered=result.filtered,
        event_id=event_id,
        suggestions=[
            (c.creator_id, c.rank, c.score, [c.features[f] for f in FEATURES])
            for c in result.creators
        ],
        request=request,
    )


def stored_profile(event: CloudEvent[CreatorProfileUpserted]) -> StoredProfile:
    data = event.data
    return StoredProfile(data.creator_id, data, event.time, event.id)


def feedback_record(event: CloudEvent[MatchFeedback], signer: str | None) -> Feedback:
    """A brand's feedback as kept, with the brand that signed it (None: unsigned)."""
    data = event.data
    return Feedback(
        event.identity, data.campaign_id, data.creator_id, data.decision, data.request_id,
        signer or "",
    )  # fmt: skip


def follower_count(event: CloudEvent[CreatorProfileUpserted]) -> FollowerCount:
    data = event.data
    return FollowerCount(data.creator_id, data.platform, event.time, data.followers)


def profile_columns(profiles: Sequence[CreatorProfileUpserted]) -> ProfileColumns:
    """Profile payloads as the index's columns."""

    def floats(name: str) -> npt.NDArray[np.float64]:
        return np.array([getattr(p, name) for p in profiles], dtype=np.float64)

    return ProfileColumns(
        creator_id=[p.creator_id for p in profiles],
        handle=[p.handle for p in profiles],
        platform=[p.platform for p in profiles],
        followers=np.array([p.followers for p in profiles], dtype=np.int64),
        avg_likes=floats("avg_likes"),
        avg_comments=floats("avg_comments"),
        avg_shares=floats("avg_shares"),
        avg_views=floats("avg_views"),
        posts_last_30d=np.array([p.posts_last_30d for p in profiles], dtype=np.int64),
        bio=[p.bio for p in profiles],
        topics=[tuple(p.topics) for p in profiles],
        country=[p.country for p in profiles],
        language=[p.language for p in profiles],
        audience_countries=[dict(p.audience.countries) for p in profiles],
        audience_age=np.array(
            [[p.audience.age.get(b, 0.0) for b in AGE_BUCKETS] for p in profiles],
            dtype=np.float32,
        ).reshape(len(profiles), len(AGE_BUCKETS)),
        audience_gender=np.array(
            [
                [p.audience.gender.female, p.audience.gender.male, p.audience.gender.other]
                for p in profiles
            ],
            dtype=np.float32,
        ).reshape(len(profiles), len(GENDERS)),
        rate_card=[dict(p.rate_card) for p in profiles],
        payout_currency=[p.payout_currency for p in profiles],
    )


def profile_payload(columns: ProfileColumns, i: int) -> CreatorProfileUpserted:
    """Creator `i` of `columns` as the event payload (validated)."""
    ages: dict[AgeBucket, float] = {
        bucket: float(share)
        for bucket, share in zip(AGE_BUCKETS, columns.audience_age[i], strict=True)
        if share > 0
    }
    female, male, other = (float(v) for v in columns.audience_gender[i])
    return CreatorProfileUpserted(
        creator_id=columns.creator_id[i],
        handle=columns.handle[i],
        platform=columns.platform[i],
        followers=int(columns.followers[i]),
        avg_likes=float(columns.avg_likes[i]),
        avg_comments=float(columns.avg_comments[i]),
        avg_shares=float(columns.avg_shares[i]),
        avg_views=float(columns.avg_views[i]),
        posts_last_30d=int(columns.posts_last_30d[i]),
        bio=columns.bio[i],
        topics=columns.topics[i],
        country=columns.country[i],
        language=columns.language[i],
        audience=Audience(
            countries=columns.audience_countries[i],
            age=ages,
            gender=GenderSplit(female=female, male=male, other=other),
        ),
        rate_card=columns.rate_card[i],
        payout_currency=columns.payout_currency[i],
    )
