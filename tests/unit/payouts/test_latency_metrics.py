"""The confirmation -> sent and post -> sent histograms count each fee payout once, when it is
recorded as sent, from the confirmation that made it owed and the post that completed it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.unit.payouts.builders import T0, account, confirmed, deal_signed, fx, uid
from tests.unit.payouts.harness import Harness

RATES = {"EUR": "0.9215", "JPY": "151.32"}
CONFIRMATION = "creatorflow_payout_confirmation_to_sent_seconds"
POST = "creatorflow_payout_post_to_sent_seconds"


def observed(name: str) -> tuple[float, float]:
    """(count, sum) of a histogram so far."""
    count = REGISTRY.get_sample_value(f"{name}_count")
    total = REGISTRY.get_sample_value(f"{name}_sum")
    assert count is not None and total is not None, f"{name} is not registered"
    return count, total


class Growth:
    """How much the confirmation and the post histograms grow from the moment it is made."""

    def __init__(self) -> None:
        self.before = observed(CONFIRMATION), observed(POST)

    def of(self, name: str) -> tuple[float, Any]:
        """(count, sum) added to histogram `name` since then; the sum approximately."""
        count, total = observed(name)
        before = self.before[0] if name == CONFIRMATION else self.before[1]
        return count - before[0], pytest.approx(total - before[1])

    def __call__(self) -> tuple[tuple[float, Any], tuple[float, Any]]:
        """Both, confirmation first."""
        return self.of(CONFIRMATION), self.of(POST)


async def test_a_fee_counts_from_its_last_confirmation_and_the_post_that_completed_it() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    first, last = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    h.now = last + timedelta(seconds=1.5)  # the consumer and the dispatcher's clock
    grown = Growth()
    await h.consume(fx(RATES), account(creator), deal_signed(deal, creator))
    await h.consume(
        confirmed(deal, "dl-1", at=first, post_received_at=first - timedelta(seconds=9))
    )
    await h.consume(
        confirmed(deal, "dl-2", at=last, post_received_at=last - timedelta(seconds=0.5))
    )
    await h.dispatch_all()
    assert [p.status for p in h.payouts(deal)] == ["sent"]
    assert grown() == ((1, 1.5), (1, 2.0))
    # Replayed confirmations and later rounds count nothing more.
    await h.consume(confirmed(deal, "dl-2", at=last, post_received_at=last))
    h.now += timedelta(minutes=1)
    await h.dispatch_all()
    assert grown() == ((1, 1.5), (1, 2.0))


async def test_a_fee_without_the_posts_arrival_counts_in_the_confirmation_histogram_only() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    at = T0 + timedelta(hours=3)
    h.now = at + timedelta(seconds=4)
    grown = Growth()
    await h.consume(fx(RATES), account(creator), deal_signed(deal, creator))
    # The last one carries no arrival (a manual confirmation): the first one's does not count.
    await h.consume(
        confirmed(deal, "dl-1", at=T0, post_received_at=T0 - timedelta(seconds=1)),
        confirmed(deal, "dl-2", at=at),
    )
    await h.dispatch_all()
    assert grown() == ((1, 4.0), (0, 0.0))


async def test_a_payout_held_for_its_account_counts_the_whole_wait() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    at = T0 + timedelta(hours=1)
    h.now = at + timedelta(minutes=1)
    grown = Growth()
    await h.consume(fx(RATES), deal_signed(deal, creator))
    await h.consume(
        confirmed(deal, "dl-1", at=at, post_received_at=at),
        confirmed(deal, "dl-2", at=at, post_received_at=at - timedelta(seconds=1)),
    )
    await h.dispatch_all()
    assert grown.of(CONFIRMATION) == (0, 0.0)  # held: nothing sent yet
    h.now = at + timedelta(minutes=10)
    await h.consume(account(creator, time=at))
    await h.dispatch_all()
    assert grown() == ((1, 600.0), (1, 601.0))
