"""Ranking quality against a generated population's latent truth, and simulated feedback.

A creator is *relevant* to a request for niche N when its latent niche is N and it is not a
fake. Its *gain* (graded relevance for NDCG) is 1 + 4 x its latent quality when relevant,
else 0. Simulated brands accept creators with a probability rising with that utility and hire
some of those; hired creators then report a return on ad spend driven by their quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from services.matching.domain.features import FEATURES
from services.matching.domain.index import CreatorIndex
from services.matching.domain.ranker import LABELS, LinearRanker, TrainingSet
from services.matching.domain.scoring import MatchResult, ScoringSettings, match
from services.matching.translate import match_query
from shared.contract.events import MatchRequested
from shared.tools.synthetic.population import NICHE_NAMES, Population, niche_request, reference_fx

_FX = reference_fx(datetime(2025, 1, 1, tzinfo=UTC))


def gains(population: Population, niche: int) -> npt.NDArray[np.float64]:
    """Graded relevance of every creator for a request about `niche`."""
    relevant = (population.niche == niche) & ~population.is_fake
    return np.where(relevant, 1.0 + 4.0 * population.quality, 0.0)


def precision_at(result: MatchResult, population: Population, niche: int, k: int) -> float:
    """Share of the first `k` suggestions that are relevant (a short list counts its gaps)."""
    rows = [c.row for c in result.creators[:k]]
    relevant = (population.niche[rows] == niche) & ~population.is_fake[rows]
    return float(relevant.sum()) / k


def ndcg_at(result: MatchResult, population: Population, niche: int, k: int) -> float:
    """NDCG@k of the suggestions against the ideal ordering of the whole population."""
    gain = gains(population, niche)
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    rows = [c.row for c in result.creators[:k]]
    dcg = float((gain[rows] * discounts[: len(rows)]).sum())
    ideal = float((np.sort(gain)[::-1][:k] * discounts).sum())
    return dcg / ideal if ideal > 0 else 0.0


def request_for(niche: int, seed: int, *, limit: int = 20) -> MatchRequested:
    return niche_request(
        NICHE_NAMES[niche], request_id=f"eval-{seed}", campaign_id=f"cmp-{seed}", seed=seed,
        limit=limit,
    )  # fmt: skip


def rank(
    index: CreatorIndex, request: MatchRequested, ranker: LinearRanker, settings: ScoringSettings
) -> MatchResult:
    return match(index, match_query(request), ranker, _FX, settings)


@dataclass(frozen=True)
class QualityReport:
    precision_at_20: float
    worst_precision_at_20: float
    fakes_in_top_20: int
    ndcg_at_20: float


def evaluate(
    index: CreatorIndex,
    population: Population,
    ranker: LinearRanker,
    settings: ScoringSettings,
    *,
    requests: int,
    seed: int,
) -> QualityReport:
    """Mean precision@20 and NDCG@20 over `requests` requests for random niches."""
    rng = np.random.default_rng(seed)
    precisions, ndcgs, fakes = [], [], 0
    for r in range(requests):
        niche = int(rng.integers(len(NICHE_NAMES)))
        result = rank(index, request_for(niche, seed * 100_003 + r), ranker, settings)
        precisions.append(precision_at(result, population, niche, 20))
        ndcgs.append(ndcg_at(result, population, niche, 20))
        fakes += int(population.is_fake[[c.row for c in result.creators[:20]]].sum())
    return QualityReport(
        float(np.mean(precisions)), float(np.min(precisions)), fakes, float(np.mean(ndcgs))
    )


def simulate_feedback(
    index: CreatorIndex,
    population: Population,
    ranker: LinearRanker,
    settings: ScoringSettings,
    *,
    requests: int,
    seed: int,
    shown: int = 20,
    explored: int = 10,
) -> TrainingSet:
    """Brands answer `requests` rankings by `ranker`; returns the labelled suggestions.

    Each brand sees the `shown` best creators plus `explored` drawn at random from the next
    500 eligible ones: without such exploration feedback only ever covers top-ranked, on-niche
    creators and a model learns nothing about what makes one relevant. Hires also feed
    realised ROAS back into the index (as `attribution.updated` would).
    """
    rng = np.random.default_rng(seed)
    features, labels, weights = [], [], []
    roas_sum: dict[str, float] = {}
    roas_count: dict[str, int] = {}
    for r in range(requests):
        niche = int(rng.integers(len(NICHE_NAMES)))
        result = rank(index, request_for(niche, seed * 100_003 + r, limit=500), ranker, settings)
        rest = result.creators[shown:]
        extra: list[int] = (
            rng.choice(len(rest), min(explored, len(rest)), replace=False).tolist() if rest else []
        )
        gain = gains(population, niche)
        for creator in [*result.creators[:shown], *(rest[int(i)] for i in extra)]:
            utility = gain[creator.row] / 5.0
            taken = rng.random() < 1.0 / (1.0 + np.exp(-10.0 * (utility - 0.6)))
            decision = "declined"
            if taken:
                decision = "hired" if rng.random() < 0.4 else "accepted"
            label, weight = LABELS[decision]  # type: ignore[index]
            features.append([creator.features[f] for f in FEATURES])
            labels.append(label)
            weights.append(weight)
            if decision == "hired":
                roas = 4.0 * float(population.quality[creator.row]) * rng.lognormal(0.0, 0.2)
                cid = creator.creator_id
                roas_sum[cid] = roas_sum.get(cid, 0.0) + roas
                roas_count[cid] = roas_count.get(cid, 0) + 1
                index.record_performance(cid, roas_sum[cid], roas_count[cid])
    return TrainingSet(
        np.array(features, dtype=np.float32).reshape(len(labels), len(FEATURES)),
        np.array(labels, dtype=np.int8),
        np.array(weights, dtype=np.float32),
    )
