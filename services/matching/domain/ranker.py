"""Rankers: a baseline plus one weight per feature, hand-set or learned from feedback.

Score = baseline + sum over features of weight[f] * x[f]. That linear form is what makes every
suggestion explainable exactly: its explanation is the list of those terms, and they add up to
the score. A learned ranker is the hand ranker plus a bounded adjustment fitted on one brand's
feedback (`train_ranker`), so its score stays on the hand score's scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize
from scipy.special import expit

from services.matching.domain.features import BASELINE, FEATURES, HAND_MODEL_VERSION, HAND_WEIGHTS
from shared.contract.events.vocabulary import MatchDecision

# How much each kind of outcome counts when learning: a hire or a realised return is stronger
# evidence than a click-through "accepted".
LABELS: Final[dict[MatchDecision, tuple[int, float]]] = {
    "hired": (1, 2.0),
    "accepted": (1, 1.0),
    "declined": (0, 1.0),
}
PROFITABLE_ROAS: Final = 1.0
OUTCOME_WEIGHT: Final = 2.0


@dataclass(frozen=True)
class LinearRanker:
    """A versioned linear scoring rule over FEATURES."""

    version: str
    weights: dict[str, float]
    baseline: float = 0.0

    def __post_init__(self) -> None:
        if set(self.weights) != set(FEATURES):
            raise ValueError(f"weights must name exactly the features {FEATURES}")
        if not all(math.isfinite(w) for w in (*self.weights.values(), self.baseline)):
            raise ValueError("weights and baseline must be finite")

    def vector(self) -> npt.NDArray[np.float32]:
        return np.array([self.weights[f] for f in FEATURES], dtype=np.float32)

    def scores(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Scores of rows of `features` (columns in FEATURES order)."""
        return (features @ self.vector() + np.float32(self.baseline)).astype(np.float32)

    def explain(self, features: npt.NDArray[np.floating]) -> dict[str, float]:
        """Each feature's contribution for one creator, plus the baseline; they sum to its score."""
        terms = {
            f: float(self.weights[f]) * float(x) for f, x in zip(FEATURES, features, strict=True)
        }
        return {BASELINE: float(self.baseline), **terms}

    def explain_rows(self, features: npt.NDArray[np.floating]) -> list[dict[str, float]]:
        """`explain` of each row of `features`, multiplied in one go (the same products)."""
        weights = np.array([self.weights[f] for f in FEATURES], dtype=np.float64)
        products = (np.asarray(features, dtype=np.float64) * weights).tolist()
        baseline = float(self.baseline)
        return [{BASELINE: baseline, **dict(zip(FEATURES, row, strict=True))} for row in products]

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "weights": self.weights, "baseline": self.baseline}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LinearRanker:
        return cls(
            version=str(data["version"]),
            weights={f: float(data["weights"][f]) for f in FEATURES},
            baseline=float(data["baseline"]),
        )


HAND_RANKER: Final = LinearRanker(HAND_MODEL_VERSION, dict(HAND_WEIGHTS), 0.0)


@dataclass(frozen=True)
class TrainingSet:
    """Feature rows (FEATURES order), 0/1 labels and sample weights."""

    features: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8]
    weights: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.labels)

    def trainable(self) -> bool:
        """Both outcomes are present, so a classifier can learn something."""
        return len(self) > 0 and 0 < int(self.labels.sum()) < len(self)

    def subset(self, rows: npt.NDArray[np.int64] | slice) -> TrainingSet:
        return TrainingSet(self.features[rows], self.labels[rows], self.weights[rows])

    def plus(self, other: TrainingSet) -> TrainingSet:
        return TrainingSet(
            np.concatenate([self.features, other.features]),
            np.concatenate([self.labels, other.labels]),
            np.concatenate([self.weights, other.weights]),
        )


# Features whose meaning is fixed by the domain: a creator closer to the brief's niche, with
# more of its audience where the brand sells, or more likely genuine, is never a worse match.
# Feedback drawn from already-relevant shortlists carries almost no signal on them (every row
# is in niche), so an unconstrained fit is free to give them any sign, and a negative one
# ranks off-niche and fake accounts first. Their total weight is therefore kept >= 0.
NEVER_AGAINST: Final[frozenset[str]] = frozenset(
    {"niche", "audience_country", "audience_age", "audience_gender", "authenticity"}
)
# Niche relevance is the one thing a brand's labels cannot judge at all: it only ever labels
# creators shortlisted for being in its niche. Feedback may make it count more, never less.
NEVER_LOWER: Final[frozenset[str]] = frozenset({"niche"})
MAX_ADJUSTMENT: Final = 0.5
"""Largest change of one weight the feedback may make, up or down."""


def train_ranker(
    data: TrainingSet,
    *,
    version: str,
    prior: LinearRanker = HAND_RANKER,
    l2: float = 0.5,
) -> LinearRanker:
    """Learn a bounded adjustment of `prior` from `data`; ValueError unless `data.trainable()`.

    The learned ranker scores ``prior score + adjustment``: its weights are the prior's plus a
    residual ``d`` and a baseline ``b``. The fit minimises the weighted logistic loss of
    ``t * score`` plus ``l2 * |d|^2`` with L-BFGS-B, where the temperature ``t`` > 0 is fitted
    too: how sure the labels let the model be is then carried by ``t``, not by shrinking the
    weights, so labels without signal leave the prior's weights as they are. Learning a
    residual over the hand weights rather than weights from zero keeps the ranking the prior's
    where the labels say little (the L2 term pulls ``d`` to 0) and on the same scale, so
    explanations keep reading as shares of a hand score. Bounds keep every ``d`` within
    +-MAX_ADJUSTMENT, the total weight of the NEVER_AGAINST features >= 0 and the NEVER_LOWER
    ones at least the prior's.

    CPU-bound and synchronous: call it from a worker thread in a service.
    """
    if not data.trainable():
        raise ValueError("training needs both positive and negative labels")
    x = data.features.astype(np.float64)
    y = data.labels.astype(np.float64)
    sample = data.weights.astype(np.float64) / float(data.weights.sum())
    base = x @ prior.vector().astype(np.float64) + prior.baseline
    bounds: list[tuple[float | None, float | None]] = [
        (_lowest_adjustment(f, prior), MAX_ADJUSTMENT) for f in FEATURES
    ]
    bounds += [(None, None), (math.log(0.1), math.log(1000.0))]  # baseline, log temperature

    def loss(params: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        d, b, t = params[:-2], params[-2], math.exp(params[-1])
        score = base + x @ d + b
        z = t * score
        value = float(sample @ (np.logaddexp(0.0, z) - y * z)) + l2 * float(d @ d)
        residual = sample * (expit(z) - y)
        gradient = np.concatenate(
            [t * (x.T @ residual) + 2.0 * l2 * d, [t * residual.sum()], [residual @ z]]
        )
        return value, gradient

    start = np.append(np.zeros(len(FEATURES) + 1), math.log(10.0))
    fitted = minimize(loss, start, jac=True, method="L-BFGS-B", bounds=bounds)
    d, b = fitted.x[:-2], float(fitted.x[-2])
    return LinearRanker(
        version=version,
        weights={f: prior.weights[f] + float(w) for f, w in zip(FEATURES, d, strict=True)},
        baseline=prior.baseline + b,
    )


def _lowest_adjustment(feature: str, prior: LinearRanker) -> float:
    if feature in NEVER_LOWER:
        return 0.0
    if feature in NEVER_AGAINST:
        return max(-MAX_ADJUSTMENT, -prior.weights[feature])
    return -MAX_ADJUSTMENT
