"""Hard filters a brand may add to `match.requested`: engagement and follower ranges, creator
country, audience age and gender shares. Each is counted in `filtered` under its own reason."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from services.matching.domain.index import CreatorIndex
from services.matching.domain.ranker import HAND_RANKER
from services.matching.domain.scoring import ScoringSettings, match
from services.matching.translate import match_query
from shared.contract.events import MatchRequested
from shared.contract.events.vocabulary import AGE_BUCKETS
from shared.contract.money import FxSnapshot
from shared.tools.synthetic.population import Population, niche_request

SETTINGS = ScoringSettings()


def request_with(filters: dict[str, Any] | None, **audience: Any) -> MatchRequested:
    """The baking request, as a brand would send it in JSON, with `filters` and audience."""
    base = niche_request("baking", request_id="r-f", campaign_id="c-f", seed=2, limit=50)
    data = base.model_dump(mode="json")
    data["target_audience"].update(audience)
    if filters is not None:
        data["filters"] = filters
    return MatchRequested.model_validate(data)


def answer(index: CreatorIndex, fx: FxSnapshot, request: MatchRequested) -> Any:
    return match(index, match_query(request), HAND_RANKER, fx, SETTINGS)


def test_a_request_without_filters_is_still_valid_and_filters_nothing_new(
    index: CreatorIndex, fx: FxSnapshot
) -> None:
    old = request_with(None)
    assert old.filters is None
    result = answer(index, fx, old)
    new_reasons = {
        "outside_follower_range", "outside_creator_country", "audience_age_mismatch",
        "audience_gender_mismatch", "outside_engagement_range",
    }  # fmt: skip
    assert result.creators and not new_reasons & set(result.filtered)


def test_a_follower_range_keeps_only_creators_inside_it_and_counts_the_rest(
    index: CreatorIndex, fx: FxSnapshot
) -> None:
    result = answer(index, fx, request_with({"followers": {"min": 20_000, "max": 80_000}}))
    followers = index.columns.followers[: index.size]
    assert result.creators
    assert all(20_000 <= followers[c.row] <= 80_000 for c in result.creators)
    # No filter comes before it in this request, so every creator outside is counted there.
    outside = int(((followers < 20_000) | (followers > 80_000)).sum())
    assert result.filtered["outside_follower_range"] == outside


def test_an_engagement_range_keeps_only_creators_inside_it(
    index: CreatorIndex, fx: FxSnapshot
) -> None:
    result = answer(index, fx, request_with({"engagement_rate": {"min": 0.04}}))
    rates = index.columns.engagement_rate[: index.size]
    assert result.creators
    assert all(c.engagement_rate >= np.float32(0.04) for c in result.creators)
    assert result.filtered["outside_engagement_range"] == int((rates < np.float32(0.04)).sum())


def test_creator_countries_keep_only_creators_based_there(
    index: CreatorIndex, population: Population, fx: FxSnapshot
) -> None:
    result = answer(index, fx, request_with({"creator_countries": ["DE", "FR"]}))
    assert result.creators
    assert {population.profiles.country[c.row] for c in result.creators} <= {"DE", "FR"}
    elsewhere = sum(country not in ("DE", "FR") for country in population.profiles.country)
    assert result.filtered["outside_creator_country"] == elsewhere


def test_audience_age_and_gender_floors_are_hard_when_asked(
    index: CreatorIndex, population: Population, fx: FxSnapshot
) -> None:
    young = ("18-24", "25-34")
    filters = {"min_audience_age_share": 0.6, "min_audience_gender_share": 0.7}
    result = answer(index, fx, request_with(filters, age=list(young), gender="female"))
    columns = [AGE_BUCKETS.index(bucket) for bucket in young]
    assert result.creators
    for creator in result.creators:
        assert population.profiles.audience_age[creator.row, columns].sum() >= np.float32(0.6)
        assert population.profiles.audience_gender[creator.row, 0] >= np.float32(0.7)
    assert result.filtered["audience_age_mismatch"] > 0
    assert result.filtered["audience_gender_mismatch"] > 0
    # Without the floors the same targets are only a preference: nobody is left out for them.
    soft = answer(index, fx, request_with(None, age=list(young), gender="female"))
    assert "audience_age_mismatch" not in soft.filtered
    assert "audience_gender_mismatch" not in soft.filtered


V1_REQUEST = {  # a request as v1 of the contract had it: no languages, diversity, filters
    "request_id": "req-v1",
    "brand_id": "br-1",
    "campaign_id": "cmp-v1",
    "niche": {"description": "Home baking gear", "keywords": ["baking", "sourdough"]},
    "target_audience": {"countries": ["US"], "age": ["25-34"], "gender": "female"},
    "platforms": ["instagram"],
    "tiers": ["micro"],
    "budget_per_creator": {"amount": "500.00", "currency": "USD"},
    "limit": 20,
    "exclude_creator_ids": [],
}


def test_a_v1_request_still_validates_and_asks_for_no_hard_filter() -> None:
    request = MatchRequested.model_validate_json(json.dumps(V1_REQUEST))
    assert request.filters is None and request.languages == () and request.diversity is None
    query = match_query(request)
    assert query.follower_range == (None, None) == query.engagement_range
    assert query.creator_countries == ()
    assert query.min_audience_age_share is None and query.min_audience_gender_share is None


@pytest.mark.parametrize(
    ("filters", "audience", "message"),
    [
        ({"followers": {"min": 5000, "max": 100}}, {}, "min 5000 is above max 100"),
        ({"engagement_rate": {"min": 0.2, "max": 0.1}}, {}, "above max"),
        ({"min_audience_age_share": 0.5}, {}, "target_audience.age"),
        ({"min_audience_gender_share": 0.5}, {}, "target_audience.gender"),
        ({"followers": {"least": 10}}, {}, "least"),
        ({"creator_countries": ["XX"]}, {}, "creator_countries"),
        ({"creator_countries": ["usa"]}, {}, "creator_countries"),
        ({"min_audience_age_share": 0.5}, {"age": ["13-15"]}, "target_audience.age"),
    ],
)
def test_filters_that_cannot_be_meant_are_refused_with_the_field(
    filters: dict[str, Any], audience: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        request_with(filters, **audience)
