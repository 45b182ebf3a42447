"""Requests answered or refused consistently: a budget currency without a rate, empty niches."""

from __future__ import annotations

from decimal import Decimal

import pytest

from services.matching.domain.index import CreatorIndex
from services.matching.domain.ranker import HAND_RANKER
from services.matching.domain.scoring import ScoringSettings, match
from services.matching.translate import check_request, match_query, suggestion_payload
from shared.contract.errors import EventRejected
from shared.contract.events import MatchRequested
from shared.contract.money import FxSnapshot, Money
from shared.tools.synthetic.population import niche_request


def with_niche(description: str, keywords: tuple[str, ...]) -> MatchRequested:
    request = niche_request("baking", request_id="req-n", campaign_id="cmp-n", seed=1)
    niche = request.niche.model_copy(update={"description": description, "keywords": keywords})
    return request.model_copy(update={"niche": niche})


@pytest.mark.parametrize(
    ("description", "keywords"),
    [("", ()), ("!!! 42 ...", ()), ("the and of with", ()), ("For those who", ("it", "we"))],
)
def test_a_niche_without_a_content_word_is_refused(
    description: str, keywords: tuple[str, ...]
) -> None:
    with pytest.raises(EventRejected, match=r"^niche: .*content word"):
        check_request(with_niche(description, keywords))


def test_a_niche_with_one_content_word_among_stop_words_is_accepted() -> None:
    check_request(with_niche("for the love of sourdough", ()))
    check_request(with_niche("", ("the", "croissant")))


def test_a_budget_currency_without_a_rate_is_answered_with_no_fx_rate_counts(
    index: CreatorIndex, fx: FxSnapshot
) -> None:
    assert "CHF" not in fx.rates
    request = niche_request(
        "baking", request_id="req-chf", campaign_id="cmp-chf", seed=2,
        budget=Money(Decimal("900.00"), "CHF"),
    )  # fmt: skip
    result = match(index, match_query(request), HAND_RANKER, fx, ScoringSettings())
    assert result.creators == []
    assert result.filtered["no_fx_rate"] > 0
    assert sum(result.filtered.values()) == index.size


def test_each_suggestion_names_the_brief_words_it_matched(
    index: CreatorIndex, fx: FxSnapshot
) -> None:
    request = with_niche("Sourdugh breads for bakers", ())
    result = match(index, match_query(request), HAND_RANKER, fx, ScoringSettings())
    payload = suggestion_payload(request, result)
    assert payload.suggestions
    for suggestion in payload.suggestions:
        assert suggestion.matched_terms
        assert set(suggestion.matched_terms) <= {
            "sourdugh ~ sourdough",
            "breads ~ bread",
            "bakers ~ baking",
        }
