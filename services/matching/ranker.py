"""Rankers: a baseline plus one weight per feature, hand-set or learned from feedback.

Score = baseline + sum over features of weight[f] * x[f]. That linear form is what makes every
suggestion explainable exactly: its explanation is the list of those terms, and they add up to
the score. A learned ranker is a logistic regression on the same features, so its score is the
log-odds that the brand takes the creator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression

from services.matching.features import BASELINE, FEATURES, HAND_MODEL_VERSION, HAND_WEIGHTS
from shared.events.vocabulary import MatchDecision

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


def train_ranker(data: TrainingSet, *, version: str, regularisation: float = 1.0) -> LinearRanker:
    """Fit a logistic regression on `data`; raises ValueError unless `data.trainable()`.

    CPU-bound and synchronous: call it from a worker thread in a service.
    """
    if not data.trainable():
        raise ValueError("training needs both positive and negative labels")
    model = LogisticRegression(C=regularisation, max_iter=1000)
    model.fit(data.features, data.labels, sample_weight=data.weights)
    coefficients = model.coef_.ravel()
    return LinearRanker(
        version=version,
        weights={f: float(w) for f, w in zip(FEATURES, coefficients, strict=True)},
        baseline=float(model.intercept_[0]),
    )
