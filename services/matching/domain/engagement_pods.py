"""Engagement pods: groups of accounts that like and comment on each other's posts.

Their engagement rate looks excellent, but its mix betrays it: members leave short comments
on every post (far more comments per like than a real audience), nobody shares, and the
total sits far above what the tier's real audiences give. Any one sign alone can be honest
(a chatty community, a great creator); two together are what a pod looks like. The rules
are absolute, so a clean population has no pod however large it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from services.matching.domain.features import engagement_ceiling
from shared.contract.events.vocabulary import TIERS

MANY_COMMENTS_PER_LIKE: Final = 0.1
"""Real audiences leave about 1 to 6 comments per 100 likes."""
FEW_SHARES_PER_LIKE: Final = 0.003
"""Real audiences share at least about 1 post per 200 likes."""
FAR_ABOVE_BENCHMARK: Final = 1.5
"""Engagement rate this many times the top of the tier's benchmark range."""
POD_SIGNALS_NEEDED: Final = 2
_LIKES_TO_JUDGE: Final = 100  # below this, ratios of a few comments or shares are noise


@dataclass(frozen=True)
class EngagementMix:
    """What one post of each creator gets on average, and its engagement rate and tier."""

    avg_likes: npt.NDArray[np.floating]
    avg_comments: npt.NDArray[np.floating]
    avg_shares: npt.NDArray[np.floating]
    engagement_rate: npt.NDArray[np.float32]
    tier: npt.NDArray[np.int8]

    def signals(self) -> tuple[npt.NDArray[np.bool_], ...]:
        """(many comments per like, few shares per like, engagement far above the tier)."""
        likes = np.asarray(self.avg_likes, dtype=np.float64)
        judged = likes >= _LIKES_TO_JUDGE
        per_like = np.maximum(likes, 1.0)
        return (
            judged & (self.avg_comments / per_like >= MANY_COMMENTS_PER_LIKE),
            judged & (self.avg_shares / per_like < FEW_SHARES_PER_LIKE),
            self.engagement_rate >= FAR_ABOVE_BENCHMARK * engagement_ceiling(self.tier),
        )


def suspected_pods(mix: EngagementMix) -> npt.NDArray[np.bool_]:
    """True where at least POD_SIGNALS_NEEDED of the pod signals fire."""
    fired = np.sum(np.vstack(mix.signals()), axis=0)
    suspected: npt.NDArray[np.bool_] = fired >= POD_SIGNALS_NEEDED
    return suspected


def pod_reason(mix: EngagementMix, i: int) -> str:
    """The signals that fired for creator `i`, with its numbers and the healthy range."""
    many_comments, few_shares, far_above = (bool(s[i]) for s in mix.signals())
    likes = max(float(mix.avg_likes[i]), 1.0)
    parts = []
    if many_comments:
        parts.append(
            f"{mix.avg_comments[i] / likes:.2f} comments per like (real audiences 0.01-0.06)"
        )
    if few_shares:
        parts.append(f"{mix.avg_shares[i] / likes:.3f} shares per like (real audiences 0.005+)")
    if far_above:
        tier = int(mix.tier[i])
        top = float(engagement_ceiling(np.array([tier], dtype=np.int8))[0])
        rate = float(mix.engagement_rate[i])
        parts.append(
            f"engagement rate {rate:.1%} is {rate / top:.1f}x the top of the {TIERS[tier]} "
            f"benchmark ({top:.0%})"
        )
    return "; ".join(parts)
