"""Per-brand learning: bounded residuals, unseen negatives and the promotion gate.

The hidden-preference story: one brand hires only creators with a high engagement rate and
declines the rest, round after round. Its own suggestions should move towards that taste
while staying in niche, and no other brand's ranking may change.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from services.matching.domain.features import FEATURES, HAND_WEIGHTS, TIER_CODES
from services.matching.domain.index import CreatorIndex
from services.matching.domain.learning import (
    LearningSettings,
    judge,
    learn_brand,
    niche_precision,
    ranking_quality,
    split_by_time,
    unseen_negatives,
)
from services.matching.domain.ranker import (
    HAND_RANKER,
    LABELS,
    NEVER_AGAINST,
    NEVER_LOWER,
    LinearRanker,
    TrainingSet,
    train_ranker,
)
from services.matching.domain.scoring import MatchQuery, ScoringSettings, match
from services.matching.translate import match_query
from shared.tools.synthetic.population import NICHE_NAMES, Population, niche_request, reference_fx

FX = reference_fx(datetime(2025, 1, 1, tzinfo=UTC))
SETTINGS = ScoringSettings()
HIGH_ENGAGEMENT = 0.045
"""The feedback brand's hidden taste: an engagement rate of at least 4.5 %."""
FEEDBACK_BRAND = "brand-engaged"
OTHER_BRANDS = ("brand-quiet-1", "brand-quiet-2")


def query(niche: int, seed: int, brand: str) -> MatchQuery:
    request = niche_request(
        NICHE_NAMES[niche], request_id=f"req-{brand}-{seed}", campaign_id=f"cmp-{brand}-{seed}",
        seed=seed, tiers=("micro",), brand_id=brand,
    )  # fmt: skip
    return match_query(request)


def story_figures(
    index: CreatorIndex, population: Population, ranker: LinearRanker, niches: list[int], seed: int
) -> tuple[float, float, int]:
    """(preference share, worst precision@20, fakes) over requests for `niches`.

    Precision counts a suggestion when it is in the requested niche, micro tier, not fake.
    """
    rate = index.columns.engagement_rate
    shares, precisions, fakes = [], [], 0
    for k, niche in enumerate(niches):
        rows = [c.row for c in match(index, query(niche, seed + k, "probe"), ranker, FX, SETTINGS)
                .creators[:20]]  # fmt: skip
        relevant = (
            (population.niche[rows] == niche)
            & ~population.is_fake[rows]
            & (index.columns.tier[rows] == TIER_CODES["micro"])
        )
        precisions.append(float(relevant.sum()) / 20)
        shares.append(float(np.mean(rate[rows] >= HIGH_ENGAGEMENT)))
        fakes += int(population.is_fake[rows].sum())
    return float(np.mean(shares)), min(precisions), fakes


def test_a_brand_s_feedback_moves_its_own_ranking_towards_its_taste_and_nobody_leaves_the_niche(
    population: Population, index: CreatorIndex
) -> None:
    own_niches, all_niches = [0, 3, 6], list(range(len(NICHE_NAMES)))
    rate = index.columns.engagement_rate
    live: dict[str, LinearRanker] = {}
    labelled: list[tuple[list[float], int, float]] = []
    queries: list[MatchQuery] = []
    shown: set[str] = set()
    before = story_figures(index, population, HAND_RANKER, own_niches, seed=1000)
    verdicts = []
    for round_ in range(6):
        for k, niche in enumerate(own_niches):
            asked = query(niche, 100 * round_ + k, FEEDBACK_BRAND)
            queries.append(asked)
            ranker = live.get(FEEDBACK_BRAND, HAND_RANKER)
            for creator in match(index, asked, ranker, FX, SETTINGS).creators[:20]:
                shown.add(creator.creator_id)
                decision = "hired" if rate[creator.row] >= HIGH_ENGAGEMENT else "declined"
                label, weight = LABELS[decision]
                labelled.append(([creator.features[f] for f in FEATURES], label, weight))
        labels = TrainingSet(
            np.array([r[0] for r in labelled], dtype=np.float32),
            np.array([r[1] for r in labelled], dtype=np.int8),
            np.array([r[2] for r in labelled], dtype=np.float32),
        )
        current = live.get(FEEDBACK_BRAND, HAND_RANKER)
        learned = learn_brand(
            labels, queries, frozenset(shown), current, index, FX, SETTINGS, LearningSettings(),
            version=f"test-{round_}",
        )  # fmt: skip
        if learned is not None:
            candidate, verdict = learned
            verdicts.append(verdict)
            if verdict.promote:
                live[FEEDBACK_BRAND] = candidate
    after = story_figures(index, population, live.get(FEEDBACK_BRAND, HAND_RANKER), own_niches,
                          seed=1000)  # fmt: skip
    own_everywhere = story_figures(
        index, population, live.get(FEEDBACK_BRAND, HAND_RANKER), all_niches, seed=2000
    )
    others = [
        story_figures(index, population, live.get(brand, HAND_RANKER), all_niches, seed=3000)
        for brand in OTHER_BRANDS
    ]
    print(
        f"feedback brand: preference share {before[0]:.2f} -> {after[0]:.2f}, "
        f"worst precision@20 {before[1]:.2f} -> {after[1]:.2f} (all niches "
        f"{own_everywhere[1]:.2f}), fakes in top-20 {before[2]} -> {after[2] + own_everywhere[2]}"
        f"; other brands: worst precision@20 {min(o[1] for o in others):.2f}, fakes "
        f"{sum(o[2] for o in others)}; gate: {[v.promote for v in verdicts]}"
    )
    assert FEEDBACK_BRAND in live, [v.reason for v in verdicts]
    assert after[0] >= before[0] + 0.15
    assert after[1] >= 0.95 and own_everywhere[1] >= 0.95
    assert all(precision >= 0.95 for _, precision, _ in others)
    assert after[2] == own_everywhere[2] == 0 and all(o[2] == 0 for o in others)
    assert set(live) == {FEEDBACK_BRAND}


def test_the_domain_features_never_end_up_counting_against_a_creator() -> None:
    # Labels that reward off-niche, foreign-audience, suspicious accounts: the fit may lower
    # those weights, never below zero.
    rng = np.random.default_rng(1)
    features = rng.random((300, len(FEATURES))).astype(np.float32)
    labels = (features[:, 0] + features[:, 5] < 0.8).astype(np.int8)
    learned = train_ranker(
        TrainingSet(features, labels, np.ones(300, np.float32)), version="perverse", l2=1e-4
    )
    for feature in NEVER_AGAINST:
        assert learned.weights[feature] >= -1e-9, feature
    for feature in NEVER_LOWER:
        assert learned.weights[feature] >= HAND_WEIGHTS[feature] - 1e-9, feature
    assert learned.weights["authenticity"] < HAND_WEIGHTS["authenticity"]


def test_without_signal_the_learned_ranker_stays_the_hand_ranker() -> None:
    rng = np.random.default_rng(2)
    features = rng.random((400, len(FEATURES))).astype(np.float32)
    labels = (rng.random(400) < 0.5).astype(np.int8)
    learned = train_ranker(TrainingSet(features, labels, np.ones(400, np.float32)), version="n")
    for feature in FEATURES:
        assert learned.weights[feature] == pytest.approx(HAND_WEIGHTS[feature], abs=0.05)


def test_unseen_negatives_come_from_outside_the_shortlists_and_weigh_less(
    index: CreatorIndex,
) -> None:
    asked = query(2, 7, "brand")
    shown = frozenset(c.creator_id for c in match(index, asked, HAND_RANKER, FX, SETTINGS).creators)
    unseen = unseen_negatives(index, [asked], shown, FX, SETTINGS, per_query=30, seed=0)
    assert len(unseen) == 30 and not unseen.labels.any()
    assert (unseen.weights < LABELS["declined"][1]).all()
    top = match(index, asked, HAND_RANKER, FX, SETTINGS).creators
    assert np.median(unseen.features[:, 0]) < min(c.features["niche"] for c in top)


def test_the_newest_labels_are_held_out() -> None:
    data = TrainingSet(
        np.arange(8 * len(FEATURES), dtype=np.float32).reshape(8, len(FEATURES)),
        np.array([0, 1] * 4, dtype=np.int8),
        np.ones(8, np.float32),
    )
    older, newest = split_by_time(data, 0.25)
    assert len(older) == 6 and len(newest) == 2
    assert (newest.features == data.features[6:]).all()


def test_the_gate_refuses_a_ranker_that_leaves_the_niche_and_one_that_ranks_no_better(
    index: CreatorIndex,
) -> None:
    rng = np.random.default_rng(3)
    held_out = TrainingSet(
        rng.random((40, len(FEATURES))).astype(np.float32),
        np.array([0, 1] * 20, dtype=np.int8),
        np.ones(40, np.float32),
    )
    held_out.features[:, 4] = held_out.labels * 0.5 + 0.25  # engagement decides
    probes = [query(n, 50 + n, "brand") for n in (1, 4)]
    engagement_only = LinearRanker(
        "engagement-only", {**{f: 0.0 for f in FEATURES}, "engagement": 1.0}
    )
    assert ranking_quality(engagement_only, held_out) > ranking_quality(HAND_RANKER, held_out)
    assert niche_precision(index, probes, HAND_RANKER, FX, SETTINGS) >= 0.95
    off_niche = judge(
        engagement_only, HAND_RANKER, held_out, index, probes, FX, SETTINGS, LearningSettings()
    )
    assert not off_niche.promote and "niche precision" in off_niche.reason
    same = judge(
        HAND_RANKER, HAND_RANKER, held_out, index, probes, FX, SETTINGS, LearningSettings()
    )
    assert not same.promote and "no better" in same.reason
    unprobed = judge(
        engagement_only, HAND_RANKER, held_out, index, [], FX, SETTINGS, LearningSettings()
    )
    assert not unprobed.promote and "no stored request" in unprobed.reason
