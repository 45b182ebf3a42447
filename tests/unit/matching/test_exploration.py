"""Exploration slots: the last places of a shortlist go to eligible creators beyond it, drawn
with the request's own seed, marked as such, and their feedback trains the brand's ranker."""

from __future__ import annotations

import dataclasses

import numpy as np

from services.matching.domain.features import FEATURES
from services.matching.domain.index import CreatorIndex
from services.matching.domain.ranker import HAND_RANKER
from services.matching.domain.scoring import MatchResult, ScoringSettings, match
from services.matching.store.memory import MemoryMatchingStore
from services.matching.store.port import Feedback
from services.matching.translate import (
    answer_record,
    exploration_seed,
    match_query,
    suggestion_payload,
)
from shared.contract.events import MatchSuggested
from shared.contract.money import FxSnapshot
from shared.tools.synthetic.population import niche_request

EXPLORING = ScoringSettings(exploration_slots=2)
REQUEST = niche_request("baking", request_id="req-x", campaign_id="cmp-x", seed=4, limit=20)


def ranked(index: CreatorIndex, fx: FxSnapshot, seed: int | None, **knobs: int) -> MatchResult:
    query = match_query(REQUEST, exploration_seed=seed)
    return match(index, query, HAND_RANKER, fx, dataclasses.replace(EXPLORING, **knobs))


def test_the_last_places_are_marked_and_hold_creators_the_ranking_left_out(
    index: CreatorIndex, fx: FxSnapshot
) -> None:
    result = ranked(index, fx, seed=exploration_seed("event-1"))
    plain = ranked(index, fx, seed=None)
    marked = [c.exploration for c in result.creators]
    assert len(result.creators) == REQUEST.limit
    assert marked == [False] * (REQUEST.limit - 2) + [True] * 2
    assert [c.rank for c in result.creators] == list(range(1, REQUEST.limit + 1))
    # The ranked part is the shortlist of the places left; the explored are not in it.
    shortlist = match(
        index,
        dataclasses.replace(match_query(REQUEST), limit=REQUEST.limit - 2),
        HAND_RANKER,
        fx,
        EXPLORING,
    )
    ranked_ids = [c.creator_id for c in result.creators if not c.exploration]
    assert ranked_ids == [c.creator_id for c in shortlist.creators]
    explored = [c for c in result.creators if c.exploration]
    assert not {c.creator_id for c in explored} & {c.creator_id for c in plain.creators[:18]}
    for creator in explored:  # the request's filters hold for them too
        assert creator.estimated_cost <= REQUEST.budget_per_creator
        assert creator.explanation["niche"] > 0  # from the pool of the best, in the niche
    assert result.filtered == plain.filtered


def test_the_draw_is_the_request_s_own_and_can_be_turned_off(
    index: CreatorIndex, fx: FxSnapshot
) -> None:
    draws = {
        tuple(c.creator_id for c in ranked(index, fx, exploration_seed(f"event-{n}")).creators)
        for n in range(6)
    }
    assert len(draws) > 1  # other requests explore other creators
    again = ranked(index, fx, exploration_seed("event-1"))
    assert again == ranked(index, fx, exploration_seed("event-1"))  # a replay answers the same
    off = ranked(index, fx, exploration_seed("event-1"), exploration_slots=0)
    assert not any(c.exploration for c in off.creators)
    assert off == ranked(index, fx, seed=None)
    small = match_query(REQUEST.model_copy(update={"limit": 4}), exploration_seed=1)
    assert not any(c.exploration for c in match(index, small, HAND_RANKER, fx, EXPLORING).creators)


async def test_the_answer_marks_them_and_their_feedback_is_a_label(
    index: CreatorIndex, fx: FxSnapshot
) -> None:
    result = ranked(index, fx, seed=exploration_seed("event-7"))
    answer = suggestion_payload(REQUEST, result)
    assert [s.exploration for s in answer.suggestions][-2:] == [True, True]
    decoded = MatchSuggested.model_validate_json(answer.model_dump_json())
    assert decoded == answer
    old = MatchSuggested.model_validate_json(  # a v1 answer without the field is still valid
        answer.model_dump_json(exclude={"suggestions": {0: {"exploration"}}})
    )
    assert old.suggestions[0].exploration is False

    store = MemoryMatchingStore()
    explored = result.creators[-1]
    async with store.transaction() as tx:
        await tx.save_answers([answer_record("event-7", REQUEST, result)])
        await tx.record_feedback(
            Feedback(("brand", "fb-1"), REQUEST.campaign_id, explored.creator_id, "hired", None)
        )
    data = await store.training_set(REQUEST.brand_id)
    assert len(data) == 1 and data.labels.tolist() == [1]
    expected = np.array([explored.features[f] for f in FEATURES], dtype=np.float32)
    assert np.allclose(data.features[0], expected)
