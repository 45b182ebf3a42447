"""A creator with accounts on several platforms: one index row per account, one suggestion per
creator naming the platforms it passed on, with its best account's figures."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from services.matching.domain.index import CreatorIndex
from services.matching.domain.ranker import HAND_RANKER
from services.matching.domain.scoring import (
    MatchQuery,
    MatchResult,
    RankedCreator,
    ScoringSettings,
    match,
)
from services.matching.translate import match_query, profile_columns, profile_payload
from shared.contract.events import CreatorProfileUpserted
from shared.contract.events.vocabulary import PLATFORMS, Platform
from shared.contract.money import FxSnapshot
from shared.tools.synthetic.population import (
    NICHE_NAMES,
    Population,
    generate_population,
    niche_request,
    reference_fx,
)

SETTINGS = ScoringSettings(diversity_trade_off=1.0)


class TwoAccounts:
    def __init__(self, index: CreatorIndex, first: CreatorProfileUpserted) -> None:
        self.index = index
        self.first = first
        self.creator_id = first.creator_id
        self.platforms: tuple[Platform, Platform] = (
            first.platform,
            next(p for p in PLATFORMS if p != first.platform),
        )
        # The same creator on another platform: other handle, somewhat fewer likes.
        self.second = first.model_copy(
            update={
                "platform": self.platforms[1],
                "handle": f"{first.handle}.{self.platforms[1]}",
                "avg_likes": first.avg_likes * 0.8,
            }
        )
        index.upsert(profile_columns([self.second]))


@pytest.fixture(scope="module")
def accounts() -> tuple[Population, TwoAccounts]:
    population = generate_population(800, seed=7)
    index = CreatorIndex.build(population.profiles, seed=7)
    baking = np.flatnonzero((population.niche == NICHE_NAMES.index("baking")) & ~population.is_fake)
    answer = ask(index, population_fx(), platforms=())
    shown = {c.creator_id for c in answer.creators}
    i = next(int(i) for i in baking if population.profiles.creator_id[i] in shown)
    return population, TwoAccounts(index, profile_payload(population.profiles, i))


def population_fx() -> FxSnapshot:
    return reference_fx(datetime(2025, 1, 1, tzinfo=UTC))


def ask(
    index: CreatorIndex,
    fx: FxSnapshot,
    *,
    platforms: tuple[Platform, ...],
    exclude: tuple[str, ...] = (),
    followers: tuple[int | None, int | None] = (None, None),
) -> MatchResult:
    request = niche_request(
        "baking", request_id="r-acc", campaign_id="c-acc", seed=4, limit=200,
        platforms=platforms, exclude=exclude,
    )  # fmt: skip
    query = match_query(request)
    query = MatchQuery(**{**vars(query), "follower_range": followers})
    return match(index, query, HAND_RANKER, fx, SETTINGS)


def shown(result: MatchResult, creator_id: str) -> RankedCreator:
    return {c.creator_id: c for c in result.creators}[creator_id]


def test_both_accounts_are_kept_and_the_creator_is_suggested_once_with_the_best(
    accounts: tuple[Population, TwoAccounts],
) -> None:
    population, two = accounts
    index, fx = two.index, population_fx()
    assert len(index) == len(population) + 1 and len(index.creators) == len(population)
    assert set(index.accounts_of(two.creator_id)) == set(two.platforms)

    both = ask(index, fx, platforms=())
    ids = [c.creator_id for c in both.creators]
    assert len(ids) == len(set(ids))
    each = {p: shown(ask(index, fx, platforms=(p,)), two.creator_id) for p in two.platforms}
    best = max(two.platforms, key=lambda p: each[p].score)
    creator = shown(both, two.creator_id)
    assert creator.platforms == (best, *(p for p in two.platforms if p != best))
    assert creator.score == each[best].score and creator.handle == each[best].handle
    assert creator.engagement_rate == each[best].engagement_rate
    # A brand asking for one platform gets that account's figures, and only its name.
    for platform in two.platforms:
        assert each[platform].platforms == (platform,)
    assert each[two.platforms[1]].handle == two.second.handle


def test_a_filtered_creator_is_counted_once_whatever_its_accounts(
    accounts: tuple[Population, TwoAccounts],
) -> None:
    _, two = accounts
    index, fx = two.index, population_fx()
    excluded = ask(index, fx, platforms=(), exclude=(two.creator_id,))
    assert excluded.filtered["excluded"] == 1
    assert two.creator_id not in {c.creator_id for c in excluded.creators}
    # A follower range only the first account is inside: the creator passes on that one.
    followers = two.first.followers
    index.upsert(profile_columns([two.second.model_copy(update={"followers": followers * 3})]))
    inside = ask(index, fx, platforms=(), followers=(followers, followers))
    assert shown(inside, two.creator_id).platforms == (two.platforms[0],)
    assert shown(inside, two.creator_id).handle == two.first.handle
    # Asked for the second platform only, neither account passes: the creator is counted
    # once, under the reason of the account that came furthest (its followers, not the
    # platform of its first account).
    second = (two.platforms[1],)
    left_out = ask(index, fx, platforms=second, followers=(followers, followers))
    assert two.creator_id not in {c.creator_id for c in left_out.creators}
    without = ask(index, fx, platforms=second, followers=(followers, followers),
                  exclude=(two.creator_id,))  # fmt: skip
    assert without.filtered["excluded"] == 1
    assert left_out.filtered["outside_follower_range"] == (
        without.filtered.get("outside_follower_range", 0) + 1
    )
    assert left_out.filtered["outside_platform"] == without.filtered["outside_platform"]


def test_a_creator_s_deals_count_for_every_account(
    accounts: tuple[Population, TwoAccounts],
) -> None:
    _, two = accounts
    index = two.index
    index.record_performance(two.creator_id, 9.0, 3)
    rows = list(index.accounts_of(two.creator_id).values())
    assert index.columns.roas_sum[rows].tolist() == [9.0, 9.0]
    assert index.columns.roas_count[rows].tolist() == [3, 3]


def test_accounts_arriving_together_each_get_their_row() -> None:
    population = generate_population(300, seed=9)
    index = CreatorIndex.build(population.profiles, seed=9)
    new = profile_payload(population.profiles, 0).model_copy(update={"creator_id": "cr-everywhere"})
    profiles = [
        new.model_copy(update={"platform": platform, "handle": f"@{platform}"})
        for platform in PLATFORMS[:3]
    ]
    rows, _ = index.upsert(profile_columns(profiles))
    accounts = index.accounts_of("cr-everywhere")
    assert accounts == dict(zip(PLATFORMS[:3], rows.tolist(), strict=True))
    assert [index.platform_of(row) for row in rows.tolist()] == list(PLATFORMS[:3])
    assert [index.handles[row] for row in rows.tolist()] == [f"@{p}" for p in PLATFORMS[:3]]
    assert len(set(index.columns.owner[rows].tolist())) == 1
    assert index.columns.several[rows].all() and not index.columns.several[:300].any()
