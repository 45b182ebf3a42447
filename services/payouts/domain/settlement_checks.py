"""When a sent payout's rail is asked about it again.

A transfer may take a day to settle (a Wise bank transfer) and a rail's API budget is shared
with the payouts being sent, so each sent payout is asked about at growing intervals, first
after `first`, then twice as long each time, at most `longest` apart, rather than every round.
"""

from __future__ import annotations

from datetime import datetime, timedelta

# 2 ** 40 times any interval is far beyond any `longest`: the doubling stops there.
_MOST_DOUBLINGS = 40


def next_settlement_check(
    now: datetime, checks: int, first: timedelta, longest: timedelta
) -> datetime:
    """When to ask again about a payout whose rail was asked `checks` times before `now`'s
    answer (still pending, or no answer)."""
    return now + min(longest, first * (1 << min(checks, _MOST_DOUBLINGS)))
