"""Red flags, the anomaly model, MMR and the linear rankers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.matching.domain.authenticity import AccountNumbers, flag_names, red_flags
from services.matching.domain.diversity import mmr
from services.matching.domain.features import BASELINE, FEATURES, HAND_WEIGHTS, tier_codes
from services.matching.domain.ranker import HAND_RANKER, LinearRanker, TrainingSet, train_ranker


def numbers(
    followers: float, likes: float, comments: float, views: float, posts: float
) -> AccountNumbers:
    f = np.array([followers])
    rate = ((likes + comments) / followers) * np.ones(1, dtype=np.float32)
    return AccountNumbers(
        f, rate.astype(np.float32), np.array([likes]), np.array([comments]), np.array([views]),
        np.array([posts]), tier_codes(f),
    )  # fmt: skip


def test_fifty_thousand_followers_and_a_dozen_likes_is_a_red_flag() -> None:
    mask = red_flags(numbers(50_000, 12, 1, 20_000, 10))
    assert "engagement_far_below_tier" in flag_names(int(mask[0]))


def test_a_healthy_micro_creator_raises_no_flag() -> None:
    assert red_flags(numbers(40_000, 1_500, 60, 15_000, 12))[0] == 0


def test_comment_farms_and_silent_likes_are_flagged() -> None:
    assert "comments_exceed_likes" in flag_names(
        int(red_flags(numbers(5_000, 300, 400, 2_000, 10))[0])
    )
    assert "comments_missing" in flag_names(int(red_flags(numbers(5_000, 600, 0, 2_000, 10))[0]))


def test_hand_weights_are_documented_and_sum_to_one() -> None:
    assert set(HAND_WEIGHTS) == set(FEATURES)
    assert sum(HAND_WEIGHTS.values()) == pytest.approx(1.0)


@given(st.lists(st.floats(0, 1), min_size=len(FEATURES), max_size=len(FEATURES)))
def test_an_explanation_sums_to_the_score(values: list[float]) -> None:
    features = np.array([values], dtype=np.float32)
    explanation = HAND_RANKER.explain(features[0])
    assert explanation[BASELINE] == 0.0
    assert sum(explanation.values()) == pytest.approx(
        float(HAND_RANKER.scores(features)[0]), abs=1e-6
    )


@given(
    st.lists(
        st.lists(st.floats(0, 1, width=32), min_size=len(FEATURES), max_size=len(FEATURES)),
        min_size=1,
        max_size=6,
    ),
    st.floats(-1, 1),
)
def test_a_shortlist_explained_at_once_is_each_creator_explained_alone(
    rows: list[list[float]], baseline: float
) -> None:
    ranker = LinearRanker("v", {f: 0.1 * (i + 1) for i, f in enumerate(FEATURES)}, baseline)
    features = np.array(rows, dtype=np.float32)
    assert ranker.explain_rows(features) == [ranker.explain(row) for row in features]


def test_a_ranker_round_trips_through_json_and_refuses_unknown_features() -> None:
    assert LinearRanker.from_json(HAND_RANKER.to_json()) == HAND_RANKER
    with pytest.raises(ValueError):
        LinearRanker("x", {"niche": 1.0})


def test_training_needs_both_outcomes_and_learns_the_signal() -> None:
    rng = np.random.default_rng(0)
    features = rng.random((400, len(FEATURES))).astype(np.float32)
    labels = (features[:, 4] > 0.5).astype(np.int8)
    weights = np.ones(400, dtype=np.float32)
    with pytest.raises(ValueError):
        train_ranker(TrainingSet(features, np.zeros(400, np.int8), weights), version="v")
    learned = train_ranker(TrainingSet(features, labels, weights), version="lr-test")
    assert max(learned.weights, key=lambda f: learned.weights[f]) == FEATURES[4]


@given(st.integers(1, 30), st.floats(0, 1), st.integers(0, 2**32 - 1))
def test_mmr_picks_distinct_items_and_keeps_the_order_at_trade_off_one(
    k: int, trade_off: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    relevance = rng.random(20)
    vectors = rng.random((20, 4))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    picked = mmr(relevance, vectors @ vectors.T, k, trade_off)
    assert len(picked) == len(set(picked)) == min(k, 20)
    assert picked[0] == int(np.argmax(relevance)) or trade_off < 1e-9
    if trade_off == 1.0:
        assert picked == list(np.argsort(-relevance, kind="stable")[: len(picked)])
