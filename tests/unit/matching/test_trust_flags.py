"""Engagement pods and follower spikes are flagged with reasons and never rewarded; a clean
population is not flagged at any fixed rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import permutations

import numpy as np
import pytest

from services.matching.domain.engagement_pods import EngagementMix, suspected_pods
from services.matching.domain.features import FEATURES, tier_codes
from services.matching.domain.follower_history import largest_jump
from services.matching.domain.index import CreatorIndex
from services.matching.domain.ranker import HAND_RANKER
from services.matching.domain.scoring import ScoringSettings, candidates, match
from services.matching.translate import match_query, profile_columns, profile_payload
from shared.contract.money import FxSnapshot
from shared.tools.synthetic.population import (
    NICHE_NAMES,
    Population,
    generate_population,
    niche_request,
)

T0 = datetime(2025, 3, 1, tzinfo=UTC)
RELEVANCE_ONLY = ScoringSettings(diversity_trade_off=1.0)


def with_history(population: Population, *, seed: int) -> CreatorIndex:
    """The population's index, with each creator's count two weeks earlier as its history."""
    index = CreatorIndex.build(population.profiles, seed=seed)
    index.record_follower_jumps(
        {
            (cid, population.profiles.platform[i]): largest_jump(
                [
                    (T0, int(population.earlier_followers[i])),
                    (T0 + timedelta(days=14), int(population.profiles.followers[i])),
                ]
            )
            for i, cid in enumerate(population.profiles.creator_id)
        }
    )
    return index


@pytest.fixture(scope="module")
def suspicious() -> tuple[Population, CreatorIndex]:
    population = generate_population(3000, seed=21, pod_share=0.06, spike_share=0.06)
    return population, with_history(population, seed=21)


def mix(likes: float, comments: float, shares: float, followers: float) -> EngagementMix:
    f = np.array([followers])
    rate = np.array([(likes + comments + shares) / followers], dtype=np.float32)
    return EngagementMix(
        np.array([likes]), np.array([comments]), np.array([shares]), rate, tier_codes(f)
    )


def test_a_pod_needs_two_signs_and_a_great_creator_alone_is_not_one() -> None:
    assert not suspected_pods(mix(1_600, 50, 30, 40_000))[0]  # healthy micro, 4.2 %
    assert not suspected_pods(mix(3_600, 110, 60, 40_000))[0]  # 9.4 %: high, nothing else
    assert suspected_pods(mix(2_000, 600, 2, 40_000))[0]  # comments, no shares, 6.5 %
    assert suspected_pods(mix(2_400, 250, 1, 40_000))[0]  # 0.1 comments, no shares per like


def test_a_follower_spike_is_a_fast_large_jump_in_any_arrival_order() -> None:
    points = [(T0, 11_000), (T0 + timedelta(days=12), 12_000), (T0 + timedelta(days=19), 52_000)]
    for order in permutations(points):
        jump = largest_jump(order)
        assert jump.is_spike and jump.before == 11_000 and jump.after == 52_000
    assert "4.7x (11,000 to 52,000) within 19 days" in largest_jump(points).reason()
    slow = [(T0, 11_000), (T0 + timedelta(days=60), 52_000)]
    assert not largest_jump(slow).is_spike  # years of work, not a purchase
    assert not largest_jump([(T0, 800), (T0 + timedelta(days=3), 2_400)]).is_spike  # tiny
    assert not largest_jump([(T0, 50_000)]).is_spike


def test_pods_and_spikes_are_flagged_and_honest_creators_are_not(
    suspicious: tuple[Population, CreatorIndex],
) -> None:
    population, index = suspicious
    flags = index.columns.trust_flags[: index.size]
    honest = ~population.is_fake
    assert (flags[population.is_pod] & 1).mean() >= 0.95
    assert (flags[population.is_spike] & 2).all()
    assert not flags[honest].any()


@pytest.mark.parametrize("fake_share", [0.0, 0.1, 0.3])
def test_the_share_flagged_follows_the_population_not_a_fixed_rate(fake_share: float) -> None:
    population = generate_population(2000, seed=9, fake_share=fake_share)
    index = CreatorIndex.build(population.profiles, seed=9)
    likely_fake = index.columns.likely_fake[: index.size]
    assert likely_fake.mean() == pytest.approx(fake_share, abs=0.01)
    assert not likely_fake[~population.is_fake].any()
    assert not index.columns.trust_flags[: index.size][~population.is_fake].any()


def test_suggested_pods_and_spikes_carry_their_flag_and_reason_and_gain_nothing_from_it(
    suspicious: tuple[Population, CreatorIndex], fx: FxSnapshot
) -> None:
    population, index = suspicious
    seen = {"suspected_engagement_pod": 0, "follower_spike": 0}
    suspects: list[bool] = []
    for k, niche in enumerate(NICHE_NAMES):
        request = niche_request(niche, request_id=f"r{k}", campaign_id="c", seed=k, limit=200)
        result = match(index, match_query(request), HAND_RANKER, fx, RELEVANCE_ONLY)
        for creator in result.creators:
            row = creator.row
            expected = {
                "suspected_engagement_pod": bool(index.columns.trust_flags[row] & 1),
                "follower_spike": bool(index.columns.trust_flags[row] & 2),
            }
            for flag, raised in expected.items():
                assert (flag in creator.flags) == raised
                if raised:
                    seen[flag] += 1
                    assert creator.flag_reasons[flag]
                    assert creator.explanation["engagement"] == 0.0
                    assert creator.explanation["authenticity"] == 0.0
            assert set(creator.flag_reasons) == set(creator.flags)
            if population.is_pod[row] or population.is_spike[row]:
                suspects.append(any(expected.values()))
    assert all(seen.values()), seen
    assert np.mean(suspects) >= 0.95  # a nano pod with a few dozen likes can pass unseen


def test_a_pod_ranks_below_its_honest_twin_despite_its_higher_engagement(
    fx: FxSnapshot,
) -> None:
    population = generate_population(600, seed=22, pod_share=0.05)
    index = CreatorIndex.build(population.profiles, seed=22)
    pod = int(np.flatnonzero(population.is_pod & (population.profiles.followers > 20_000))[0])
    profile = profile_payload(population.profiles, pod)
    likes = profile.followers * 0.04 / 1.05  # a healthy micro mix at 4 %
    honest = profile.model_copy(
        update={"creator_id": "twin-honest", "avg_likes": likes, "avg_comments": likes * 0.03,
                "avg_shares": likes * 0.02}
    )  # fmt: skip
    rows, _ = index.upsert(profile_columns([honest]))
    twin, pod_row = int(rows[0]), index.row_of[profile.creator_id]
    assert index.columns.trust_flags[pod_row] & 1 and not index.columns.trust_flags[twin]
    assert index.columns.engagement_rate[pod_row] > index.columns.engagement_rate[twin]

    niche = NICHE_NAMES[int(population.niche[pod])]
    query = match_query(niche_request(niche, request_id="r", campaign_id="c", seed=1))
    found = candidates(index, query, fx, RELEVANCE_ONLY)
    at = {row: k for k, row in enumerate(found.rows.tolist())}
    pod_features, twin_features = found.features[at[pod_row]], found.features[at[twin]]
    for feature in ("engagement", "authenticity"):  # the pod's higher rate earns it nothing
        k = FEATURES.index(feature)
        assert pod_features[k] == 0.0 < twin_features[k], feature
    scores = HAND_RANKER.scores(found.features)
    assert scores[at[pod_row]] < scores[at[twin]]
