"""Answering one match request: hard filters, features, score, diversified top-k, explanations.

Everything up to the candidate pool is vectorised over the whole index (no Python loop per
creator); only the pool (a few times `limit`) is handled creator by creator, to convert costs
exactly and build explanations.

The index holds one row per platform account. Filters and features apply to each account; a
creator is shown once, with its best-scored eligible account's figures, and names every
platform on which it passed. A creator none of whose accounts passes is counted once, under
the reason of the account that came furthest (the latest in FILTER_REASONS); each account
is stopped by the first reason that applies, in that order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, TypeVar

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from services.matching.domain.authenticity import TRUST_FLAGS
from services.matching.domain.diversity import mmr
from services.matching.domain.engagement_pods import pod_reason
from services.matching.domain.features import (
    FEATURES,
    TIER_CODES,
    engagement_quality,
    past_performance,
    shrunk_roas,
)
from services.matching.domain.index import CreatorIndex
from services.matching.domain.niche_vectors import NicheQuery
from services.matching.domain.ranker import LinearRanker
from shared.contract.events.vocabulary import AGE_BUCKETS, TIERS, TargetGender, Tier
from shared.contract.money import FxRateMissing, FxSnapshot, Money, minor_unit

K = TypeVar("K")
V = TypeVar("V")

FILTER_REASONS: Final[tuple[str, ...]] = (
    "excluded",
    "already_hired",
    "outside_platform",
    "outside_tier",
    "outside_follower_range",
    "outside_creator_country",
    "language_mismatch",
    "audience_mismatch",
    "audience_age_mismatch",
    "audience_gender_mismatch",
    "outside_engagement_range",
    "likely_fake",
    "no_fx_rate",
    "over_budget",
    "off_niche",
)
_REASON: Final = {reason: code + 1 for code, reason in enumerate(FILTER_REASONS)}
_GENDER_COLUMN: Final = {"female": 0, "male": 1}
_LOW_POSTING: Final = 4
_PARTIAL_AUDIENCE: Final = 0.5
_EXACT_BUDGET_MARGIN: Final = 0.99
POD, SPIKE = TRUST_FLAGS
# What SharedWork keeps between requests is bounded: sets of target countries or ages (one
# array of the index's size each) and exact prices.
_KEPT_AUDIENCE_SETS: Final = 32
_KEPT_PRICES: Final = 100_000
# Decimals of each explained contribution in an answer: the features are single precision,
# so further digits are noise. The score is their sum, so the explanation adds up to it.
SHOWN_DECIMALS: Final = 6


@dataclass(frozen=True)
class ScoringSettings:
    """Knobs of the ranking that are not part of a request."""

    diversity_trade_off: float = 0.7
    """MMR trade-off: 1 = pure relevance order, 0 = maximal variety."""
    min_audience_share: float = 0.2
    """Least audience share in the target countries before a creator counts as a mismatch."""
    pool_factor: int = 4
    """The diversified top-k is picked from the best pool_factor x limit candidates."""
    min_pool: int = 50
    roas_prior: float = 2.0
    roas_prior_strength: float = 3.0
    exploration_slots: int = 0
    """Last positions of a shortlist given to creators drawn at random from the pool beyond
    it (at most one per five places), so feedback also covers creators the ranking would not
    show; only for a query with an `exploration_seed`. 0: none."""


@dataclass(frozen=True)
class MatchQuery:
    """A request reduced to what scoring needs (ids, not event plumbing)."""

    niche_text: str
    countries: tuple[str, ...]
    ages: tuple[str, ...]
    gender: TargetGender
    platforms: tuple[str, ...]
    tiers: tuple[Tier, ...]
    budget: Money
    limit: int
    exclude: frozenset[str] = frozenset()
    hired: frozenset[str] = frozenset()
    languages: tuple[str, ...] = ()
    diversity_trade_off: float | None = None
    """The request's own MMR trade-off; None: `ScoringSettings.diversity_trade_off`."""
    engagement_range: tuple[float | None, float | None] = (None, None)
    follower_range: tuple[int | None, int | None] = (None, None)
    """Inclusive (least, most); None leaves that side open."""
    creator_countries: tuple[str, ...] = ()
    min_audience_age_share: float | None = None
    """Hard floor on the audience share in `ages`; None: `ages` is a soft preference."""
    min_audience_gender_share: float | None = None
    """Hard floor on the audience share of `gender`; None: a soft preference."""
    exploration_seed: int | None = None
    """Seeds the exploration draw (from the request's event id, so an answer can be replayed);
    None: no exploration."""

    def without_history(self) -> MatchQuery:
        """The same brief with nobody excluded or hired: a probe of how a ranker ranks it."""
        return replace(self, exclude=frozenset(), hired=frozenset())


@dataclass(frozen=True)
class RankedCreator:
    rank: int
    row: int
    creator_id: str
    handle: str
    score: float
    tier: Tier
    engagement_rate: float
    estimated_cost: Money
    explanation: dict[str, float]
    features: dict[str, float]
    flags: tuple[str, ...]
    flag_reasons: dict[str, str]
    """Why each flag was raised, in numbers a brand can check."""
    matched_terms: tuple[str, ...] = ()
    """The brief's words this creator matched on, as read ("pups ~ puppy"), strongest first."""
    exploration: bool = False
    """Shown to learn from (an exploration slot), not placed by its score."""
    platforms: tuple[str, ...] = ()
    """The platforms of the creator's accounts that passed every filter; the first is the
    account whose figures are shown."""


@dataclass(frozen=True)
class MatchResult:
    creators: list[RankedCreator]
    filtered: dict[str, int]
    model_version: str
    fx: FxSnapshot | None


def fx_rates_to(
    fx: FxSnapshot | None, currencies: list[str], target: str
) -> npt.NDArray[np.float64]:
    """Approximate units of `target` per unit of each currency (NaN where no rate is known).

    Floats are for filtering and scoring only; the cost shown to the brand is converted
    exactly with `FxSnapshot.convert`.
    """
    rates = np.full(max(len(currencies), 1), np.nan)
    for code, currency in enumerate(currencies):
        if currency == target:
            rates[code] = 1.0
        elif fx is not None:
            try:
                rates[code] = float(fx.rate(currency, target))
            except FxRateMissing:  # counted as no_fx_rate: the answer says so, nothing to retry
                continue
    return rates


@dataclass(frozen=True)
class Candidates:
    """The creators that pass every hard filter for a query, with their features."""

    reason: npt.NDArray[np.int8]
    """Per index row: 0 when eligible, else the code of the first filter that dropped it."""
    niche: NicheQuery
    rows: npt.NDArray[np.int64]
    features: npt.NDArray[np.float32]
    """One row per eligible creator, columns in FEATURES order."""
    approximate_cost: npt.NDArray[np.float64]
    """Float price of each eligible creator in the budget's currency (filtering only)."""


class SharedWork:
    """What queries answered together compute once: costs in each budget currency, audience
    shares in each set of target countries, the features no request changes, exact prices.

    All of it is kept on the index (`CreatorIndex.derived`) for the next requests, until the
    index changes or another FX snapshot is used: a request alone does not pay it again."""

    def __init__(self, index: CreatorIndex, fx: FxSnapshot | None) -> None:
        self._index = index
        self.fx = fx
        kept = index.derived
        if kept.get("version") != index.version or kept.get("fx") is not fx:
            # A new dict, never the old one emptied: a reader in a worker thread may hold it.
            kept = {"version": index.version, "fx": fx}
            index.derived = kept
        self._costs: dict[str, npt.NDArray[np.float64]] = kept.setdefault("costs", {})
        self._audience_fit: dict[tuple[str, ...], npt.NDArray[np.float32]] = _bounded(
            kept.setdefault("audience_fit", {}), _KEPT_AUDIENCE_SETS
        )
        self._masks: dict[tuple[str, ...], npt.NDArray[np.bool_]] = kept.setdefault("masks", {})
        self._creator_features: dict[tuple[float, float], npt.NDArray[np.float32]] = (
            kept.setdefault("creator_features", {})
        )
        self._prices: dict[tuple[int, str], Money] = _bounded(
            kept.setdefault("prices", {}), _KEPT_PRICES
        )

    def price(self, row: int, currency: str) -> Money:
        """The exact quoted price of the creator at `row` in `currency` (converted once per
        batch: queries on one niche shortlist many of the same creators)."""
        return _kept(
            self._prices,
            (row, currency),
            lambda: _convert(self._index.cost(row), currency, self.fx),
        )

    def costs(self, currency: str) -> npt.NDArray[np.float64]:
        """Approximate quoted price of every creator in `currency` (NaN: no FX rate)."""
        return _kept(self._costs, currency, lambda: _costs_in(self._index, currency, self.fx))

    def outside_platforms(self, platforms: tuple[str, ...]) -> npt.NDArray[np.bool_]:
        key = ("platforms", *sorted(platforms))
        return _kept(self._masks, key, lambda: ~_on_platforms(self._index, platforms))

    def outside_tiers(self, tiers: tuple[Tier, ...]) -> npt.NDArray[np.bool_]:
        key = ("tiers", *sorted(tiers))
        return _kept(self._masks, key, lambda: ~_in_tiers(self._index, tiers))

    def creator_features(self, settings: ScoringSettings) -> npt.NDArray[np.float32]:
        """(3 x size): engagement, authenticity and past performance of every creator, the
        features no request changes."""
        key = (settings.roas_prior, settings.roas_prior_strength)
        return _kept(self._creator_features, key, lambda: _creator_features(self._index, settings))

    def age_fit(self, ages: tuple[str, ...]) -> npt.NDArray[np.float32]:
        """Every creator's audience share in the age buckets `ages` (1 when any age will do)."""
        key = ("ages", *sorted(ages))
        return _kept(
            self._audience_fit,
            key,
            lambda: _audience_age(self._index, ages, np.arange(self._index.size, dtype=np.int64)),
        )

    def country_fit(self, countries: tuple[str, ...]) -> npt.NDArray[np.float32]:
        key = ("countries", *sorted(countries))
        return _kept(self._audience_fit, key, lambda: _audience_country(self._index, countries))


def _kept(kept: dict[K, V], key: K, compute: Callable[[], V]) -> V:
    """`kept[key]`, computed and kept first if missing."""
    found = kept.get(key)
    if found is None:
        found = kept[key] = compute()
    return found


def _costs_in(index: CreatorIndex, currency: str, fx: FxSnapshot | None) -> npt.NDArray[np.float64]:
    names = index.currencies.names
    rates = fx_rates_to(fx, names, currency)
    exponents = np.array([10.0 ** minor_unit(cc) for cc in names] or [1.0])
    codes = index.columns.cost_currency[: index.size]
    costs: npt.NDArray[np.float64] = (
        index.columns.cost_minor[: index.size] / exponents[codes] * rates[codes]
    )
    return costs


def _on_platforms(index: CreatorIndex, platforms: tuple[str, ...]) -> npt.NDArray[np.bool_]:
    table = index.platforms.lookup(platforms)
    return table[index.columns.platform[: index.size]]


def _in_tiers(index: CreatorIndex, tiers: tuple[Tier, ...]) -> npt.NDArray[np.bool_]:
    wanted = np.zeros(len(TIERS), dtype=bool)
    wanted[[TIER_CODES[t] for t in tiers]] = True
    return wanted[index.columns.tier[: index.size]]


def _creator_features(index: CreatorIndex, settings: ScoringSettings) -> npt.NDArray[np.float32]:
    n = index.size
    c = index.columns
    found = np.empty((3, n), dtype=np.float32)
    # Engagement a pod or bought followers produced is no merit: it counts for nothing.
    trusted = c.trust_flags[:n] == 0
    found[0] = engagement_quality(c.engagement_rate[:n], c.tier[:n]) * trusted
    found[1] = c.authenticity[:n]
    shrunk = shrunk_roas(
        c.roas_sum[:n],
        c.roas_count[:n],
        prior=settings.roas_prior,
        k=settings.roas_prior_strength,
    )
    found[2] = past_performance(shrunk, prior=settings.roas_prior)
    return found


def _bounded(kept: dict[Any, Any], most: int) -> dict[Any, Any]:
    """`kept`, emptied first if it holds `most` entries."""
    if len(kept) >= most:
        kept.clear()
    return kept


def candidates(
    index: CreatorIndex,
    query: MatchQuery,
    fx: FxSnapshot | None,
    settings: ScoringSettings,
    *,
    niche: tuple[NicheQuery, npt.NDArray[np.float32]] | None = None,
    shared: SharedWork | None = None,
) -> Candidates:
    """Apply the hard filters to the whole index and compute the survivors' features.

    `niche`: the query's niche vector and similarities when already computed (with other
    queries'); `shared`: the work this query shares with the others answered with it.
    A creator is counted under the first filter that drops it, in the order below.
    """
    shared = shared or SharedWork(index, fx)
    filtered = _Filtered(index.size)
    _filter_who(index, query, shared, filtered)
    country_fit = _filter_audience(index, query, shared, settings, filtered)
    _filter_engagement(index, query, filtered)
    cost = _filter_budget(query, shared, filtered)
    niche_query, similarity = _filter_niche(index, query, niche, filtered)
    rows = np.flatnonzero(filtered.kept).astype(np.int64)
    features = _features(index, query, shared, settings, rows, similarity, country_fit, cost)
    return Candidates(filtered.reason, niche_query, rows, features, cost[rows])


class _Filtered:
    """Each creator's filter reason: the first filter that dropped it (0: a candidate).

    Kept with whole-array arithmetic only (no boolean-mask assignment, ten times slower):
    this runs about ten times per query over every row."""

    def __init__(self, size: int) -> None:
        self.reason = np.zeros(size, dtype=np.int8)
        self.kept = np.ones(size, dtype=bool)
        """True for the rows no filter dropped yet."""

    def drop(self, name: str, where: npt.NDArray[np.bool_] | None) -> None:
        if where is None:  # None: the filter leaves everyone in
            return
        first = np.logical_and(where, self.kept)
        np.logical_and(self.kept, ~first, out=self.kept)
        self.reason += first.view(np.int8) * np.int8(_REASON[name])


def _filter_who(
    index: CreatorIndex, query: MatchQuery, shared: SharedWork, filtered: _Filtered
) -> None:
    """Who the creator is: excluded or hired, platform, tier, followers, country, language."""
    n = index.size
    c = index.columns
    filtered.drop("excluded", _rows_mask(index, query.exclude))
    filtered.drop("already_hired", _rows_mask(index, query.hired))
    if query.platforms:
        filtered.drop("outside_platform", shared.outside_platforms(query.platforms))
    if query.tiers:
        filtered.drop("outside_tier", shared.outside_tiers(query.tiers))
    filtered.drop("outside_follower_range", _outside(c.followers[:n], query.follower_range))
    if query.creator_countries:
        inside = index.countries.lookup(query.creator_countries)[c.country[:n]]
        filtered.drop("outside_creator_country", ~inside)
    if query.languages:
        spoken = index.languages.lookup(query.languages)[c.language[:n]]
        filtered.drop("language_mismatch", ~spoken)


def _filter_audience(
    index: CreatorIndex,
    query: MatchQuery,
    shared: SharedWork,
    settings: ScoringSettings,
    filtered: _Filtered,
) -> npt.NDArray[np.float32]:
    """Who follows the creator: countries, and ages or gender when the request requires
    them. Returns every creator's audience share in the target countries."""
    country_fit = shared.country_fit(query.countries)
    if query.countries:
        filtered.drop("audience_mismatch", country_fit < settings.min_audience_share)
    everyone = np.arange(index.size, dtype=np.int64)
    if query.min_audience_age_share is not None:
        age_fit = shared.age_fit(query.ages)
        filtered.drop("audience_age_mismatch", age_fit < query.min_audience_age_share)
    if query.min_audience_gender_share is not None:
        gender_fit = _audience_gender(index, query.gender, everyone)
        filtered.drop("audience_gender_mismatch", gender_fit < query.min_audience_gender_share)
    return country_fit


def _filter_engagement(index: CreatorIndex, query: MatchQuery, filtered: _Filtered) -> None:
    """The engagement range the request asks for, then accounts that look fake."""
    n = index.size
    c = index.columns
    outside = _outside(c.engagement_rate[:n], query.engagement_range)
    filtered.drop("outside_engagement_range", outside)
    filtered.drop("likely_fake", c.likely_fake[:n])


def _filter_budget(
    query: MatchQuery, shared: SharedWork, filtered: _Filtered
) -> npt.NDArray[np.float64]:
    """Creators priced in a currency without a rate, then those over the budget (by the
    approximate cost; the exact check comes at ranking). Returns every approximate cost."""
    cost = shared.costs(query.budget.currency)
    filtered.drop("no_fx_rate", np.isnan(cost))
    filtered.drop("over_budget", cost > float(query.budget.amount) * (1 + 1e-9))
    return cost


def _filter_niche(
    index: CreatorIndex,
    query: MatchQuery,
    niche: tuple[NicheQuery, npt.NDArray[np.float32]] | None,
    filtered: _Filtered,
) -> tuple[NicheQuery, npt.NDArray[np.float32]]:
    """The niche: creators sharing no term or concept with the brief (typos read) are off it.
    Returns the query's niche vector and every creator's similarity."""
    if niche is None:
        niche_query = index.niche.encode_query(query.niche_text)
        similarity = index.niche.similarity(niche_query.vector, index.size)
    else:
        niche_query, similarity = niche
    if index.niche.vectorizer is not None:
        filtered.drop("off_niche", similarity <= 0)
    return niche_query, similarity


def _features(
    index: CreatorIndex,
    query: MatchQuery,
    shared: SharedWork,
    settings: ScoringSettings,
    rows: npt.NDArray[np.int64],
    similarity: npt.NDArray[np.float32],
    country_fit: npt.NDArray[np.float32],
    cost: npt.NDArray[np.float64],
) -> npt.NDArray[np.float32]:
    """The candidates' features, FEATURES order, one row per candidate."""
    features = np.empty((len(rows), len(FEATURES)), dtype=np.float32, order="F")
    features[:, 0] = similarity[rows]
    features[:, 1] = country_fit[rows]
    features[:, 2] = shared.age_fit(query.ages)[rows]
    features[:, 3] = _audience_gender(index, query.gender, rows)
    engagement, authenticity, performance = shared.creator_features(settings)
    features[:, 4] = engagement[rows]
    features[:, 5] = authenticity[rows]
    budget = float(query.budget.amount)
    features[:, 6] = np.clip(1.0 - cost[rows] / budget, 0.0, 1.0) if budget > 0 else 0.0
    features[:, 7] = performance[rows]
    return features


def match(
    index: CreatorIndex,
    query: MatchQuery,
    ranker: LinearRanker,
    fx: FxSnapshot | None,
    settings: ScoringSettings,
) -> MatchResult:
    """Rank the index for `query` (pure, deterministic, no I/O)."""
    return match_many(index, [(query, ranker)], fx, settings)[0]


def match_many(
    index: CreatorIndex,
    asked: Sequence[tuple[MatchQuery, LinearRanker]],
    fx: FxSnapshot | None,
    settings: ScoringSettings,
) -> list[MatchResult]:
    """Rank the index for queries that arrived together, each by its ranker.

    Their niche similarities come from one call (`NicheVectors.similarity_many`, which reads
    the index query by query, the cheaper way), and costs and audience shares are computed
    once per budget currency and per set of countries; each result is the one `match` gives
    for its query alone.
    """
    niches = [index.niche.encode_query(query.niche_text) for query, _ in asked]
    similarities = index.niche.similarity_many([q.vector for q in niches], index.size)
    shared = SharedWork(index, fx)
    return [
        _ranked(
            index,
            query,
            ranker,
            shared,
            settings,
            candidates(
                index, query, fx, settings, niche=(niches[i], similarities[i]), shared=shared
            ),
        )
        for i, (query, ranker) in enumerate(asked)
    ]


def _ranked(
    index: CreatorIndex,
    query: MatchQuery,
    ranker: LinearRanker,
    shared: SharedWork,
    settings: ScoringSettings,
    eligible: Candidates,
) -> MatchResult:
    scores = ranker.scores(eligible.features)
    eligible, scores = _best_account_each(index, eligible, scores)
    reason, rows = eligible.reason, eligible.rows

    pool_size = min(len(rows), max(settings.min_pool, settings.pool_factor * query.limit))
    pool = _best(scores, pool_size)
    pool, late_over_budget = _exactly_within_budget(
        rows[pool], pool, eligible.approximate_cost[pool], query, shared
    )
    reason[rows[late_over_budget]] = _REASON["over_budget"]
    trade_off = (
        settings.diversity_trade_off
        if query.diversity_trade_off is None
        else query.diversity_trade_off
    )
    explore = _exploration_slots(query, settings, len(pool))
    picked = _diversified(index, rows[pool], scores[pool], query.limit - explore, trade_off)
    picked += _explored(pool, picked, explore, query.exploration_seed)
    at = pool[picked] if picked else np.zeros(0, dtype=np.int64)
    explored_from = len(picked) - explore if explore else len(picked)
    creators = _ranked_creators(
        index, query, ranker, shared, eligible, at, explored_from=explored_from
    )
    counts = np.bincount(_creator_reasons(index, reason), minlength=len(FILTER_REASONS) + 1)
    filtered = {name: int(counts[code]) for name, code in _REASON.items() if counts[code]}
    return MatchResult(creators, filtered, ranker.version, shared.fx)


def _one_account_each(index: CreatorIndex) -> bool:
    return index.size == len(index.creators)


def _best_account_each(
    index: CreatorIndex, eligible: Candidates, scores: npt.NDArray[np.float32]
) -> tuple[Candidates, npt.NDArray[np.float32]]:
    """The candidates cut to each creator's best-scored account (ties: the earlier row).
    Only the accounts of creators with several are sorted."""
    if _one_account_each(index):
        return eligible, scores
    several = np.flatnonzero(index.columns.several[eligible.rows])
    if len(several) == 0:
        return eligible, scores
    owners = index.columns.owner[eligible.rows[several]]
    order = np.lexsort((-scores[several], owners))
    first = np.ones(len(order), dtype=bool)
    first[1:] = owners[order[1:]] != owners[order[:-1]]
    keep = np.ones(len(scores), dtype=bool)
    keep[several] = False
    keep[several[order[first]]] = True
    best = replace(
        eligible,
        rows=eligible.rows[keep],
        features=eligible.features[keep],
        approximate_cost=eligible.approximate_cost[keep],
    )
    return best, scores[keep]


def _creator_reasons(index: CreatorIndex, reason: npt.NDArray[np.int8]) -> npt.NDArray[np.int8]:
    """One entry per creator (in no particular order): 0 when an account of it passed, else
    the furthest reason of its accounts."""
    if _one_account_each(index):
        return reason
    several = index.columns.several[: index.size]
    owners = index.columns.owner[: index.size][several]
    shared = reason[several]
    per_creator = np.zeros(len(index.creators), dtype=np.int8)
    np.maximum.at(per_creator, owners, shared)
    per_creator[owners[shared == 0]] = 0
    return np.concatenate([reason[~several], per_creator[np.unique(owners)]])


def _platforms_passed(
    index: CreatorIndex, row: int, reason: npt.NDArray[np.int8]
) -> tuple[str, ...]:
    """The platforms on which the creator at `row` passed: `row`'s first, then the others."""
    if not index.columns.several[row]:
        return (index.platform_of(row),)
    others = [
        (platform, other)
        for platform, other in index.accounts_of(index.creator_ids[row]).items()
        if other != row and reason[other] == 0
    ]
    return (index.platform_of(row), *sorted(platform for platform, _ in others))


def _ranked_creators(
    index: CreatorIndex,
    query: MatchQuery,
    ranker: LinearRanker,
    shared: SharedWork,
    eligible: Candidates,
    at: npt.NDArray[np.int64],
    *,
    explored_from: int,
) -> list[RankedCreator]:
    """The shortlist as shown: the candidates at `at`, in that order, explained, priced and
    flagged; those from `explored_from` on are exploration slots."""
    c = index.columns
    features = eligible.features[at]
    picked_rows = eligible.rows[at]
    matched = eligible.niche.matched(index.niche.rows(picked_rows))
    tiers = c.tier[picked_rows].tolist()
    # As sent: single-precision columns carry binary noise (0.04 reads 0.0399999991).
    engagement = [float(str(rate)) for rate in c.engagement_rate[picked_rows]]
    explanations = [
        {name: round(part, SHOWN_DECIMALS) for name, part in row.items()}
        for row in ranker.explain_rows(features)
    ]
    values = features.tolist()
    creators = []
    for i, row in enumerate(picked_rows.tolist()):
        explanation = explanations[i]
        flags = _flags(index, row)
        creators.append(
            RankedCreator(
                rank=i + 1,
                row=row,
                creator_id=index.creator_ids[row],
                handle=index.handles[row],
                score=math.fsum(explanation.values()),
                tier=TIERS[tiers[i]],
                engagement_rate=engagement[i],
                estimated_cost=shared.price(row, query.budget.currency),
                explanation=explanation,
                features=dict(zip(FEATURES, values[i], strict=True)),
                flags=tuple(flags),
                flag_reasons=flags,
                matched_terms=matched[i],
                exploration=i >= explored_from,
                platforms=_platforms_passed(index, row, eligible.reason),
            )
        )
    return creators


def _exploration_slots(query: MatchQuery, settings: ScoringSettings, pool: int) -> int:
    """How many of the shortlist's last places go to exploration: none without a seed, at
    most one per five places, and only when the pool holds more than the shortlist."""
    if query.exploration_seed is None or settings.exploration_slots <= 0:
        return 0
    slots = min(settings.exploration_slots, query.limit // 5)
    return slots if pool >= query.limit + slots else 0


def _explored(
    pool: npt.NDArray[np.int64], picked: list[int], count: int, seed: int | None
) -> list[int]:
    """`count` pool positions not `picked`, drawn uniformly with `seed` (repeatable)."""
    if count == 0 or seed is None:
        return []
    chosen = set(picked)
    rest = np.array([i for i in range(len(pool)) if i not in chosen], dtype=np.int64)
    drawn = np.random.default_rng(seed).choice(len(rest), size=count, replace=False)
    return [int(i) for i in rest[np.sort(drawn)]]


def _rows_mask(index: CreatorIndex, creator_ids: frozenset[str]) -> npt.NDArray[np.bool_] | None:
    """True at the rows of every account of `creator_ids`; None when none is indexed."""
    rows = index.rows_of(creator_ids)
    if not rows:
        return None
    mask = np.zeros(index.size, dtype=bool)
    mask[rows] = True
    return mask


def _outside(
    values: npt.NDArray[np.float32], bounds: tuple[float | None, float | None]
) -> npt.NDArray[np.bool_] | None:
    """True where a value lies outside the inclusive (least, most) bounds; None: no bound."""
    least, most = bounds
    if least is None and most is None:
        return None
    outside = np.zeros(len(values), dtype=bool)
    if least is not None:
        outside |= values < np.float32(least)
    if most is not None:
        outside |= values > np.float32(most)
    return outside


def _audience_country(index: CreatorIndex, countries: tuple[str, ...]) -> npt.NDArray[np.float32]:
    """Share of each creator's audience inside `countries` (1 when any country will do)."""
    n = index.size
    if not countries:
        return np.ones(n, dtype=np.float32)
    table = np.append(index.countries.lookup(countries), False)  # code -1 (padding) -> False
    inside = table[index.columns.audience_country[:n]]
    shares = index.columns.audience_country_share[:n] * inside
    return np.asarray(shares.sum(axis=1), dtype=np.float32)


def _audience_age(
    index: CreatorIndex, ages: tuple[str, ...], rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    if not ages:
        return np.ones(len(rows), dtype=np.float32)
    columns = [AGE_BUCKETS.index(age) for age in ages]
    return np.asarray(index.columns.audience_age[rows][:, columns].sum(axis=1), dtype=np.float32)


def _audience_gender(
    index: CreatorIndex, gender: TargetGender, rows: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    if gender == "any":
        return np.ones(len(rows), dtype=np.float32)
    return np.asarray(index.columns.audience_gender[rows, _GENDER_COLUMN[gender]], np.float32)


def _best(scores: npt.NDArray[np.float32], count: int) -> npt.NDArray[np.int64]:
    """Positions of the `count` highest scores, best first (ties by position)."""
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    top = np.argpartition(-scores, count - 1)[:count] if count < len(scores) else np.arange(count)
    return top[np.lexsort((top, -scores[top]))].astype(np.int64)


def _exactly_within_budget(
    rows: npt.NDArray[np.int64],
    pool: npt.NDArray[np.int64],
    approximate_cost: npt.NDArray[np.float64],
    query: MatchQuery,
    shared: SharedWork,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Split `pool` by the exact Decimal cost: (within budget, over it after all).

    Only costs within 1 % of the budget are converted exactly: rounding to minor units and
    float error move a cost by far less, so the others are certainly within it.
    """
    near = approximate_cost > float(query.budget.amount) * _EXACT_BUDGET_MARGIN
    within = np.ones(len(rows), dtype=bool)
    currency = query.budget.currency
    within[near] = [shared.price(int(r), currency) <= query.budget for r in rows[near]]
    return pool[within], pool[~within]


def _convert(price: Money, currency: str, fx: FxSnapshot | None) -> Money:
    if price.currency == currency:
        return price
    assert fx is not None, "creators without a rate were filtered out"
    return fx.convert(price, currency).result


def _diversified(
    index: CreatorIndex,
    rows: npt.NDArray[np.int64],
    scores: npt.NDArray[np.float32],
    limit: int,
    trade_off: float,
) -> list[int]:
    if len(rows) == 0:
        return []
    if trade_off >= 1.0 or index.niche.vectorizer is None:
        return list(range(min(limit, len(rows))))
    return mmr(scores, _pairwise_similarity(index.niche.rows(rows)), limit, trade_off)


def _pairwise_similarity(vectors: sp.csr_matrix) -> npt.NDArray[np.float32]:
    """`vectors @ vectors.T` as a dense array, over only the columns the vectors use: a
    sparse-times-dense product, a few hundred columns wide instead of the whole vocabulary
    (the same sums, added in the same order)."""
    columns, within = np.unique(vectors.indices, return_inverse=True)
    used = sp.csr_matrix(
        (vectors.data, within.reshape(-1), vectors.indptr), shape=(vectors.shape[0], len(columns))
    )
    return np.asarray(used @ used.T.toarray(), dtype=np.float32)


def _flags(index: CreatorIndex, row: int) -> dict[str, str]:
    """The warnings for the creator at `row`, each with its reason."""
    c = index.columns
    flags = {}
    trust = int(c.trust_flags[row])
    if trust & 1 << TRUST_FLAGS.index(POD):
        flags[POD] = pod_reason(index.engagement_mix(slice(row, row + 1)), 0)
    if trust & 1 << TRUST_FLAGS.index(SPIKE):
        flags[SPIKE] = index.follower_jumps[index.creator_ids[row], index.platform_of(row)].reason()
    if c.cost_estimated[row]:
        flags["cost_estimated_from_tier"] = "no rate card: priced from the tier's benchmark"
    if c.posts_last_30d[row] < _LOW_POSTING:
        flags["low_post_frequency"] = (
            f"{int(c.posts_last_30d[row])} posts in the last 30 days (fewer than {_LOW_POSTING})"
        )
    if c.audience_known[row] < _PARTIAL_AUDIENCE:
        flags["audience_data_partial"] = (
            f"countries known for {c.audience_known[row]:.0%} of the audience"
        )
    if c.roas_count[row] == 0:
        flags["no_track_record"] = "no tracked deal yet"
    return flags
