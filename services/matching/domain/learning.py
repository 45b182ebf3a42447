"""One brand's ranker from its own feedback, and the gate a new ranker must pass to go live.

A brand's labels only cover creators it was shown, and those were already in its niche, so
they say little about what makes a creator relevant at all. Three things keep learning from
hurting the ranking (docs/architecture.md, README.md "Learning"):

- the fit is a bounded residual over the hand weights with sign constraints
  (`services.matching.domain.ranker.train_ranker`);
- the brand's labels are joined by creators it never saw: for each of its stored requests a
  sample of eligible creators outside its shortlists, as weak negatives (`unseen_negatives`),
  so the fit sees the off-niche side of the population it ranks;
- a new ranker goes live only if it ranks the brand's newest labels (held out, by time) better
  than the ranker in use, and keeps niche precision on probe requests built from the brand's
  own requests (`judge`). Otherwise it is stored, not used.

Pure: every function takes the index, queries and labels and returns values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from services.matching.domain.index import CreatorIndex
from services.matching.domain.ranker import HAND_RANKER, LinearRanker, TrainingSet, train_ranker
from services.matching.domain.scoring import MatchQuery, ScoringSettings, candidates, match
from shared.contract.money import FxSnapshot

UNSEEN_WEIGHT: Final = 0.25
"""Weight of a never-shown creator as a negative, against 1 for a `declined`."""
PROBE_DEPTH: Final = 20
NICHE_FLOOR: Final = 0.5


@dataclass(frozen=True)
class LearningSettings:
    """Knobs of per-brand learning and of the promotion gate."""

    min_labels: int = 30
    """Fewest labels (shown creators with feedback or an outcome) before a brand is fitted."""
    held_out_share: float = 0.25
    """Newest share of a brand's labels kept out of the fit and used to judge it."""
    unseen_per_request: int = 20
    min_niche_precision: float = 0.95
    """Least share of a probe's top-20 that must be in the niche (see `niche_precision`)."""
    l2: float = 0.5
    seed: int = 0


@dataclass(frozen=True)
class Verdict:
    """Whether a new ranker may go live for a brand, and why."""

    promote: bool
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)


def unseen_negatives(
    index: CreatorIndex,
    queries: Sequence[MatchQuery],
    shown: frozenset[str],
    fx: FxSnapshot | None,
    settings: ScoringSettings,
    *,
    per_query: int,
    seed: int,
) -> TrainingSet:
    """For each query, up to `per_query` eligible creators not in `shown`, labelled 0.

    Drawn uniformly from everyone who passes the hard filters, most of them far from the
    niche: they stand for what the brand would have declined had it seen them, hence the low
    weight (UNSEEN_WEIGHT).
    """
    rng = np.random.default_rng(seed)
    shown_rows = np.array(index.rows_of(shown), dtype=np.int64)
    picked: list[npt.NDArray[np.float32]] = []
    for query in queries:
        eligible = candidates(index, query, fx, settings)
        keep = ~np.isin(eligible.rows, shown_rows)
        features = eligible.features[keep]
        if len(features):
            take = rng.choice(len(features), min(per_query, len(features)), replace=False)
            picked.append(features[take])
    rows = np.concatenate(picked) if picked else np.zeros((0, HAND_RANKER.vector().size))
    return TrainingSet(
        rows.astype(np.float32),
        np.zeros(len(rows), dtype=np.int8),
        np.full(len(rows), UNSEEN_WEIGHT, dtype=np.float32),
    )


def split_by_time(data: TrainingSet, held_out_share: float) -> tuple[TrainingSet, TrainingSet]:
    """(older labels, newest `held_out_share` of them); `data` is in the order they arrived."""
    cut = len(data) - max(1, round(len(data) * held_out_share))
    return data.subset(slice(0, cut)), data.subset(slice(cut, len(data)))


def ranking_quality(ranker: LinearRanker, data: TrainingSet) -> float:
    """Weighted share of (positive, negative) pairs the ranker orders right (AUC; ties 1/2)."""
    scores = ranker.scores(data.features).astype(np.float64)
    positive = data.labels == 1
    if positive.all() or not positive.any():
        return 0.5
    pos_s, pos_w = scores[positive], data.weights[positive].astype(np.float64)
    neg_s, neg_w = scores[~positive], data.weights[~positive].astype(np.float64)
    above = (pos_s[:, None] > neg_s[None, :]) + 0.5 * (pos_s[:, None] == neg_s[None, :])
    return float(pos_w @ above @ neg_w / (pos_w.sum() * neg_w.sum()))


def niche_precision(
    index: CreatorIndex,
    probes: Sequence[MatchQuery],
    ranker: LinearRanker,
    fx: FxSnapshot | None,
    settings: ScoringSettings,
) -> float:
    """Mean share of a probe's top-20 that is in the niche by the hand ranker's measure.

    A creator counts as in the niche when its niche similarity is at least NICHE_FLOOR of the
    median similarity of the hand ranker's own top-20 for that probe: the hand ranker passes
    (nearly) always, and a ranker that trades niche for engagement or price fails as soon as
    it fills its list with creators far from the brief. The floor is relative because
    similarities depend on how a brief is worded.
    """
    shares = []
    for probe in probes:
        hand = match(index, probe, HAND_RANKER, fx, settings).creators[:PROBE_DEPTH]
        if not hand:
            continue
        threshold = NICHE_FLOOR * float(np.median([c.features["niche"] for c in hand]))
        top = match(index, probe, ranker, fx, settings).creators[:PROBE_DEPTH]
        shares.append(sum(c.features["niche"] >= threshold for c in top) / len(hand))
    return float(np.mean(shares)) if shares else 1.0


def judge(
    candidate: LinearRanker,
    current: LinearRanker,
    held_out: TrainingSet,
    index: CreatorIndex,
    probes: Sequence[MatchQuery],
    fx: FxSnapshot | None,
    settings: ScoringSettings,
    learning: LearningSettings,
) -> Verdict:
    """The promotion gate: better on the held-out labels and niche precision kept."""
    if not probes:
        return Verdict(False, "no stored request of the brand to check niche precision with")
    new_quality = ranking_quality(candidate, held_out)
    old_quality = ranking_quality(current, held_out)
    precision = niche_precision(index, probes, candidate, fx, settings)
    metrics = {
        "held_out_labels": float(len(held_out)),
        "held_out_auc": round(new_quality, 4),
        "current_held_out_auc": round(old_quality, 4),
        "niche_precision": round(precision, 4),
    }
    if new_quality <= old_quality:
        reason = (
            f"ranks the newest {len(held_out)} labels no better than {current.version} "
            f"(AUC {new_quality:.3f} vs {old_quality:.3f})"
        )
        return Verdict(False, reason, metrics)
    if precision < learning.min_niche_precision:
        reason = (
            f"niche precision on the brand's probe requests {precision:.2f} is below "
            f"{learning.min_niche_precision:.2f}"
        )
        return Verdict(False, reason, metrics)
    reason = (
        f"held-out AUC {new_quality:.3f} beats {old_quality:.3f}, niche precision {precision:.2f}"
    )
    return Verdict(True, reason, metrics)


def learn_brand(
    labels: TrainingSet,
    queries: Sequence[MatchQuery],
    shown: frozenset[str],
    current: LinearRanker,
    index: CreatorIndex,
    fx: FxSnapshot | None,
    settings: ScoringSettings,
    learning: LearningSettings,
    *,
    version: str,
) -> tuple[LinearRanker, Verdict] | None:
    """Fit a brand's ranker on its older labels plus unseen negatives and judge it.

    `labels` are the brand's, in arrival order; `queries` its requests (newest last), also
    the probes of the relevance check; `shown` every creator it was ever suggested. None when
    there is not yet enough to learn from.
    """
    if len(labels) < learning.min_labels:
        return None
    train, held_out = split_by_time(labels, learning.held_out_share)
    if not train.trainable():
        return None
    unseen = unseen_negatives(
        index, queries, shown, fx, settings,
        per_query=learning.unseen_per_request, seed=learning.seed,
    )  # fmt: skip
    candidate = train_ranker(train.plus(unseen), version=version, l2=learning.l2)
    probes = [q.without_history() for q in queries]
    return candidate, judge(candidate, current, held_out, index, probes, fx, settings, learning)
