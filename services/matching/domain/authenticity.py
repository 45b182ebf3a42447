"""Is an account real? Explicit red-flag rules, trust flags and an anomaly score.

The red-flag rules catch what a person would call out at a glance (50k followers and a dozen
likes per post): such a creator is `likely_fake` and never suggested. The trust flags
(`suspected_engagement_pod`, `follower_spike`) are evidence a brand should see: the creator
stays eligible, flagged with the reason, and neither its engagement nor its authenticity
counts in its favour. The IsolationForest only grades authenticity among the rest; it flags
nobody, since a share taken from the population would flag the same share of a clean one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest

from services.matching.domain.features import engagement_ceiling, engagement_floor

RED_FLAGS: Final[tuple[str, ...]] = (
    "engagement_far_below_tier",
    "engagement_implausible",
    "comments_missing",
    "comments_exceed_likes",
    "posting_implausible",
    "views_far_below_followers",
)
"""Bit i of a creator's red-flag mask is RED_FLAGS[i]."""

_ESTABLISHED: Final = 10_000  # followers from which low engagement is damning, not noise


@dataclass(frozen=True)
class AccountNumbers:
    """The numbers authenticity is judged on, one entry per creator."""

    followers: npt.NDArray[np.floating]
    engagement_rate: npt.NDArray[np.float32]
    avg_likes: npt.NDArray[np.floating]
    avg_comments: npt.NDArray[np.floating]
    avg_views: npt.NDArray[np.floating]
    posts_last_30d: npt.NDArray[np.floating]
    tier: npt.NDArray[np.int8]

    def matrix(self) -> npt.NDArray[np.float32]:
        """Model inputs: log followers, log engagement rate, log comments/likes, log cadence,
        log views/followers."""
        tiny = 1e-4
        return np.column_stack(
            [
                np.log10(np.maximum(self.followers, 1.0)),
                np.log10(self.engagement_rate.astype(np.float64) + tiny),
                np.log10((self.avg_comments + 1.0) / (self.avg_likes + 1.0)),
                np.log10(self.posts_last_30d + 1.0),
                np.log10((self.avg_views + 1.0) / (self.followers + 1.0)),
            ]
        ).astype(np.float32)


def red_flags(numbers: AccountNumbers) -> npt.NDArray[np.uint8]:
    """Bit mask of the RED_FLAGS that fire for each creator (0 = none)."""
    rate = numbers.engagement_rate
    likes, comments = numbers.avg_likes, numbers.avg_comments
    rules = (
        (numbers.followers >= _ESTABLISHED) & (rate < engagement_floor(numbers.tier) / 10),
        rate > 3 * engagement_ceiling(numbers.tier),
        (likes >= 100) & (comments < 0.005 * likes),
        (likes >= 20) & (comments > 0.5 * likes),
        numbers.posts_last_30d > 90,
        (numbers.followers >= _ESTABLISHED)
        & (numbers.avg_views > 0)
        & (numbers.avg_views < 0.04 * numbers.followers),
    )
    mask = np.zeros(len(rate), dtype=np.uint8)
    for bit, fired in enumerate(rules):
        mask |= fired.astype(np.uint8) << bit
    return mask


def flag_names(mask: int) -> list[str]:
    return [name for bit, name in enumerate(RED_FLAGS) if mask >> bit & 1]


@dataclass(kw_only=True, eq=False)
class AccountAnomalyModel:
    """IsolationForest over `AccountNumbers.matrix()`, calibrated on the accounts it saw.

    >>> rng = np.random.default_rng(0)
    >>> model = AccountAnomalyModel(random_state=0).fit(rng.normal(size=(500, 5)))
    >>> bool(model.authenticity(np.zeros((1, 5)))[0] > 0.5)
    True
    """

    n_estimators: int = 100
    max_samples: int = 256
    random_state: int = 0

    def fit(self, inputs: npt.NDArray[np.floating]) -> AccountAnomalyModel:
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(inputs)),
            random_state=self.random_state,
        ).fit(inputs)
        scores = forest.score_samples(inputs)
        self.forest_ = forest
        # Authenticity 0 at the most anomalous percentile, 1 from the median account up.
        self.low_ = float(np.quantile(scores, 0.01))
        self.high_ = float(np.quantile(scores, 0.5))
        return self

    def _scores(self, inputs: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        if not hasattr(self, "forest_"):
            raise RuntimeError("AccountAnomalyModel is not fitted; call fit first")
        scores: npt.NDArray[np.float64] = self.forest_.score_samples(inputs)
        return scores

    def authenticity(self, inputs: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Authenticity in [0, 1] per row: a grade for ranking, not a verdict."""
        scores = self._scores(inputs)
        spread = max(self.high_ - self.low_, 1e-9)
        return np.clip((scores - self.low_) / spread, 0.0, 1.0).astype(np.float32)


TRUST_FLAGS: Final[tuple[str, ...]] = ("suspected_engagement_pod", "follower_spike")
"""Bit i of a creator's trust-flag mask is TRUST_FLAGS[i]."""


def trust_flags(
    pods: npt.NDArray[np.bool_], spikes: npt.NDArray[np.bool_]
) -> npt.NDArray[np.uint8]:
    """Bit mask of the TRUST_FLAGS raised for each creator (0 = none)."""
    return (pods.astype(np.uint8) | spikes.astype(np.uint8) << 1).astype(np.uint8)


def judge(
    numbers: AccountNumbers,
    model: AccountAnomalyModel | None,
    trust: npt.NDArray[np.uint8] | None = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """(authenticity, red-flag mask, likely fake) per creator.

    Authenticity is 0 where a red flag or a trust flag (`trust`) is raised; elsewhere it is
    the anomaly model's grade, or 1 without a fitted model (too few accounts yet). Only red
    flags make a creator likely fake.
    """
    mask = red_flags(numbers)
    doubted = mask > 0 if trust is None else (mask > 0) | (trust > 0)
    if model is None:
        graded = np.ones(len(mask), dtype=np.float32)
    else:
        graded = model.authenticity(numbers.matrix())
    authenticity = np.where(doubted, np.float32(0.0), graded).astype(np.float32)
    return authenticity, mask, mask > 0
