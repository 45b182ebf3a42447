"""Follower spikes: a jump in a creator's follower count between two of its profile events.

A profile carries only the current count, so matching keeps every count it received (its
`matching_follower_history` table) and judges the history here. Bought followers arrive in
days; organic growth, even a viral month, rarely multiplies an established account.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

SPIKE_WINDOW: Final = timedelta(days=30)
SPIKE_GROWTH: Final = 2.0
"""Followers at least doubled within SPIKE_WINDOW..."""
SPIKE_MIN_GAIN: Final = 2_000
"""...and by at least this many: a 900-follower account doubling is not news."""


@dataclass(frozen=True)
class FollowerJump:
    """The largest growth between two observations at most SPIKE_WINDOW apart."""

    growth: float = 1.0
    """Later count / earlier count (1.0: no growth seen, or a single observation)."""
    before: int = 0
    after: int = 0
    days: float = 0.0

    @property
    def is_spike(self) -> bool:
        return self.growth >= SPIKE_GROWTH and self.after - self.before >= SPIKE_MIN_GAIN

    def reason(self) -> str:
        return (
            f"followers grew {self.growth:.1f}x ({self.before:,} to {self.after:,}) within "
            f"{self.days:.0f} days; organic growth rarely reaches {SPIKE_GROWTH:g}x in "
            f"{SPIKE_WINDOW.days} days"
        )


def largest_jump(observations: Iterable[tuple[datetime, int]]) -> FollowerJump:
    """The largest follower growth between any two observations (time, followers) at most
    SPIKE_WINDOW apart, in whatever order they arrived.

    >>> from datetime import UTC
    >>> t = datetime(2025, 3, 1, tzinfo=UTC)
    >>> largest_jump([(t + timedelta(days=7), 50_000), (t, 12_000)]).is_spike
    True
    """
    points = sorted(observations)
    best = FollowerJump()
    for j, (later, after) in enumerate(points):
        for earlier, before in points[:j]:
            if later - earlier > SPIKE_WINDOW or before <= 0:
                continue
            days = (later - earlier).total_seconds() / 86_400
            jump = FollowerJump(after / before, before, after, days)
            # A spike beats any growth that is not one (a tiny account tripling is not one).
            if (jump.is_spike, jump.growth) > (best.is_spike, best.growth):
                best = jump
    return best
