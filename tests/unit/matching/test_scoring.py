"""Filters, features, explanations and diversity of one ranking (matching's domain.scoring)."""

from __future__ import annotations

import dataclasses
import math
from decimal import Decimal

import numpy as np
import pytest

from services.matching.domain.features import BASELINE, FEATURES
from services.matching.domain.follower_history import FollowerJump
from services.matching.domain.index import CreatorIndex
from services.matching.domain.ranker import HAND_RANKER
from services.matching.domain.scoring import (
    FILTER_REASONS,
    MatchQuery,
    ScoringSettings,
    match,
    match_many,
)
from services.matching.translate import match_query
from shared.contract.events.vocabulary import TIERS
from shared.contract.money import FxSnapshot, Money
from shared.tools.synthetic.population import Population, niche_request

SETTINGS = ScoringSettings()


def query(niche: str = "fitness", **changes: object) -> MatchQuery:
    request = niche_request(niche, request_id="r", campaign_id="c", seed=4, limit=20)
    return dataclasses.replace(match_query(request), **changes)  # type: ignore[arg-type]


def test_explanations_sum_to_the_score_and_name_every_feature(
    index: CreatorIndex, fx: FxSnapshot
) -> None:
    result = match(index, query(), HAND_RANKER, fx, SETTINGS)
    assert len(result.creators) == 20
    for creator in result.creators:
        assert set(creator.explanation) == {BASELINE, *FEATURES}
        assert math.isclose(sum(creator.explanation.values()), creator.score, abs_tol=1e-12)
        for feature in FEATURES:
            assert 0.0 <= creator.features[feature] <= 1.0
    assert result.model_version == HAND_RANKER.version


def test_every_creator_is_either_a_candidate_or_counted_under_one_reason(
    index: CreatorIndex, population: Population, fx: FxSnapshot
) -> None:
    ids = population.profiles.creator_id
    wanted = query(
        tiers=("micro",),
        platforms=("instagram",),
        countries=("US", "GB"),
        exclude=frozenset(ids[:5]),
        hired=frozenset(ids[5:8]),
        languages=("en",),
        budget=Money(Decimal("400.00"), "EUR"),
        limit=500,
    )
    result = match(index, wanted, HAND_RANKER, fx, dataclasses.replace(SETTINGS, min_pool=10_000))
    assert set(result.filtered) <= set(FILTER_REASONS)
    assert result.filtered["excluded"] == 5
    assert result.filtered["already_hired"] == 3
    for reason in ("outside_tier", "outside_platform", "audience_mismatch", "likely_fake",
                   "over_budget", "language_mismatch", "off_niche"):  # fmt: skip
        assert result.filtered.get(reason, 0) > 0, reason
    assert sum(result.filtered.values()) + len(result.creators) <= len(index)
    c = index.columns
    for creator in result.creators:
        row = creator.row
        assert creator.creator_id not in wanted.exclude | wanted.hired
        assert TIERS[c.tier[row]] == "micro"
        assert index.platforms.names[c.platform[row]] == "instagram"
        assert index.languages.names[c.language[row]] == "en"
        assert creator.features["audience_country"] >= SETTINGS.min_audience_share
        assert creator.estimated_cost.currency == "EUR"
        assert creator.estimated_cost <= wanted.budget
        assert not population.is_fake[row]


def test_without_fx_rates_only_creators_priced_in_the_budget_currency_remain(
    index: CreatorIndex,
) -> None:
    result = match(index, query(limit=100), HAND_RANKER, None, SETTINGS)
    assert result.filtered["no_fx_rate"] > 0
    assert {c.estimated_cost.currency for c in result.creators} == {"USD"}
    assert result.fx is None


def test_a_zero_candidate_request_explains_itself(index: CreatorIndex, fx: FxSnapshot) -> None:
    result = match(index, query(budget=Money(Decimal("1"), "JPY")), HAND_RANKER, fx, SETTINGS)
    assert result.creators == []
    assert result.filtered["over_budget"] > 0


@pytest.mark.parametrize("niche", ["baking", "tech"])
def test_diversity_lowers_the_similarity_among_the_top_k(
    index: CreatorIndex, fx: FxSnapshot, niche: str
) -> None:
    def mean_similarity(trade_off: float) -> float:
        settings = dataclasses.replace(SETTINGS, diversity_trade_off=trade_off)
        rows = np.array(
            [c.row for c in match(index, query(niche), HAND_RANKER, fx, settings).creators]
        )
        vectors = index.niche.rows(rows)
        similarity = (vectors @ vectors.T).toarray()
        return float(similarity[np.triu_indices(len(rows), 1)].mean())

    assert mean_similarity(0.3) < mean_similarity(1.0)


def test_pure_relevance_order_is_by_descending_score(index: CreatorIndex, fx: FxSnapshot) -> None:
    settings = dataclasses.replace(SETTINGS, diversity_trade_off=1.0)
    scores = [c.score for c in match(index, query(), HAND_RANKER, fx, settings).creators]
    assert scores == sorted(scores, reverse=True)


def test_a_request_can_set_its_own_diversity(index: CreatorIndex, fx: FxSnapshot) -> None:
    relevance_only = dataclasses.replace(SETTINGS, diversity_trade_off=1.0)
    request = niche_request("baking", request_id="r", campaign_id="c", seed=1).model_copy(
        update={"diversity": 0.3}
    )
    diversified = match(index, match_query(request), HAND_RANKER, fx, relevance_only)
    by_score = match(
        index,
        match_query(request.model_copy(update={"diversity": 1.0})),
        HAND_RANKER,
        fx,
        relevance_only,
    )
    scores = [c.score for c in diversified.creators]
    assert scores != sorted(scores, reverse=True), "the request's 0.3 overrides the setting's 1.0"
    assert [c.score for c in by_score.creators] == sorted(
        (c.score for c in by_score.creators), reverse=True
    )


def test_a_request_can_require_languages(index: CreatorIndex, fx: FxSnapshot) -> None:
    request = niche_request("baking", request_id="r", campaign_id="c", seed=1)
    only_german = match_query(request.model_copy(update={"languages": ("de",)}))
    result = match(index, only_german, HAND_RANKER, fx, SETTINGS)
    assert result.filtered["language_mismatch"] > 0
    assert result.creators, "German-speaking bakers exist in the population"
    assert {int(index.columns.language[c.row]) for c in result.creators} == {
        index.languages.code("de")
    }


def test_requests_scored_together_get_the_answers_they_would_get_alone(
    index: CreatorIndex, fx: FxSnapshot
) -> None:
    # Different niches, budget currencies and target countries: the shared work must keep
    # each query's own.
    asked = [
        (query("fitness"), HAND_RANKER),
        (query("baking", budget=Money(Decimal("90000"), "EUR")), HAND_RANKER),
        (query("pets", countries=("BR", "MX")), HAND_RANKER),
        (query("fitness", countries=("US",), tiers=("micro",)), HAND_RANKER),
        (query("gaming", niche_text="Speedrn gamming on consolas"), HAND_RANKER),
    ]
    together = match_many(index, asked, fx, SETTINGS)
    for (one, ranker), result in zip(asked, together, strict=True):
        alone = match(index, one, ranker, fx, SETTINGS)
        assert result.filtered == alone.filtered
        assert [
            (c.creator_id, c.score, c.estimated_cost, c.matched_terms) for c in result.creators
        ] == [(c.creator_id, c.score, c.estimated_cost, c.matched_terms) for c in alone.creators]
    assert len({tuple(c.creator_id for c in r.creators) for r in together}) == len(asked)


def test_what_scoring_keeps_between_requests_follows_every_change_to_the_index(
    population: Population, fx: FxSnapshot
) -> None:
    index = CreatorIndex.build(population.profiles, seed=5)  # changed below: not the shared one
    asked = query("fitness", budget=Money(Decimal("90000"), "EUR"))

    def answer(rates: FxSnapshot) -> tuple[object, ...]:
        result = match(index, asked, HAND_RANKER, rates, SETTINGS)
        shown = [(c.creator_id, c.score, c.estimated_cost, c.flags) for c in result.creators]
        return tuple(shown), tuple(sorted(result.filtered.items()))

    def recomputed(rates: FxSnapshot) -> tuple[object, ...]:
        index.derived = {}
        return answer(rates)

    before = answer(fx)
    top = before[0][0][0]
    index.record_performance(top, 0.0, 20)  # twenty deals that returned nothing
    after_deals = answer(fx)
    assert after_deals != before
    assert after_deals == recomputed(fx)

    second = after_deals[0][0][0]
    platform = index.platform_of(index.accounts_of(second).popitem()[1])
    index.record_follower_jumps({(second, platform): FollowerJump(8.0, 1_000, 8_000, 2.0)})
    after_jump = answer(fx)
    assert after_jump != after_deals
    assert after_jump == recomputed(fx)

    dearer = dataclasses.replace(
        fx, rates={code: rate * Decimal("1.3") for code, rate in fx.rates.items()}
    )
    after_fx = answer(dearer)
    assert after_fx != after_jump
    assert after_fx == recomputed(dearer)
