"""From a brand's request to our answer: business checks and the `match.suggested` payload."""

from __future__ import annotations

from services.matching.domain.niche_terms import content_words
from services.matching.domain.scoring import MatchResult
from shared.contract.errors import EventRejected
from shared.contract.events import MatchRequested, MatchSuggested, Suggestion


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


def suggestion_payload(request: MatchRequested, result: MatchResult) -> MatchSuggested:
    """The answer to `request`: ranked creators (best first) and the filtered counts."""
    return MatchSuggested(
        request_id=request.request_id,
        brand_id=request.brand_id,
        campaign_id=request.campaign_id,
        model_version=result.model_version,
        suggestions=tuple(
            Suggestion(
                rank=c.rank,
                creator_id=c.creator_id,
                handle=c.handle,
                score=c.score,
                tier=c.tier,
                engagement_rate=c.engagement_rate,
                estimated_cost=c.estimated_cost,
                explanation=c.explanation,
                flags=c.flags,
                flag_reasons=c.flag_reasons,
                matched_terms=c.matched_terms,
                exploration=c.exploration,
                platforms=c.platforms,
            )
            for c in result.creators
        ),
        filtered=result.filtered,
    )
