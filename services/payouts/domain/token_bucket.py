"""Token-bucket arithmetic: how many requests a rail may still take, and how long to wait.

A bucket holds up to `capacity` tokens and gains `rate` tokens a second; a call costing `cost`
tokens goes ahead only when that many are there. Over any `T` seconds it grants at most
`capacity + rate * T` tokens. The in-memory buckets use this function as it is; the Redis
script (`services/payouts/rate_limit.py`) does the same sums, and both pass the same contract
tests. Times are seconds on one clock; a time before the bucket's last one counts as that time,
so a clock that steps back never mints tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# Tokens short of a call by less than this count as enough: sums of float times leave such
# crumbs, and a wait shorter than the clock's resolution would never end.
CRUMB: Final = 1e-9


@dataclass(frozen=True)
class BucketLimit:
    """`rate` tokens a second, at most `capacity` saved up (both > 0)."""

    rate: float
    capacity: float

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.capacity <= 0:
            raise ValueError(f"a bucket needs rate and capacity > 0, got {self}")


@dataclass(frozen=True)
class Bucket:
    tokens: float
    at: float  # the time `tokens` was counted


def take(
    bucket: Bucket | None, limit: BucketLimit, cost: float, now: float
) -> tuple[Bucket, float]:
    """The bucket after asking for `cost` tokens at `now`, and the seconds to wait before
    asking again: 0.0 when the tokens were taken, otherwise nothing was taken. A new bucket
    (None) starts full. `cost` above the capacity could never be granted: refused."""
    if cost > limit.capacity:
        raise ValueError(f"a call of {cost} tokens never fits a bucket of {limit.capacity}")
    if bucket is None:
        tokens, at = limit.capacity, now
    else:
        at = max(bucket.at, now)
        tokens = min(limit.capacity, bucket.tokens + (at - bucket.at) * limit.rate)
    if tokens + CRUMB >= cost:
        return Bucket(max(tokens - cost, 0.0), at), 0.0
    return Bucket(tokens, at), (cost - tokens) / limit.rate
