"""A round leases at most each limited rail's own share (issue 18): a slow rail's share must
not shrink the rounds of a fast one, and what a round leaves is sent by the next, once."""

from __future__ import annotations

import pytest

from services.payouts.app import rail_batches
from services.payouts.dispatcher import Dispatcher
from services.payouts.providers.rails import Rails
from services.payouts.providers.sandbox import SandboxProvider
from services.payouts.rate_limit import ARRIVAL_SPREAD_SECONDS, RailLimit, RateLimiter
from services.payouts.settings import PayoutsSettings
from tests.unit.payouts.builders import DESTINATIONS, account, confirmed, deal_signed, uid
from tests.unit.payouts.harness import Harness


class _Named(SandboxProvider):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name  # type: ignore[misc]


async def _owed(h: Harness, method: str, count: int) -> None:
    for _ in range(count):
        deal, creator = uid("deal"), uid("cr")
        signed = deal_signed(deal, creator, deliverables=(("dl-1", 1),))
        await h.consume(account(creator, currency="USD", method=method), signed)
        await h.consume(confirmed(deal, "dl-1"))


def test_each_rail_gets_the_share_its_own_rate_allows() -> None:
    settings = PayoutsSettings(stripe_rate_limit=600, expected_replicas=2)
    limits = {"stripe": RailLimit(600), "paypal": RailLimit(10), "wise": RailLimit(10, 3)}
    shares = rail_batches(settings, RateLimiter(None, limits))
    # 60 s lease: half of it shared by 2 rounds is 15 s at each replica's half of the refill.
    local = {rail: limit.local(2).rate for rail, limit in limits.items()}
    assert local["stripe"] == pytest.approx(540 / (1 + ARRIVAL_SPREAD_SECONDS) / 2)
    assert shares == {
        "stripe": int(local["stripe"] * 15),
        "paypal": int(local["paypal"] * 15),
        "wise": int(local["wise"] * 15 / 3),
    }
    assert rail_batches(settings, None) == {}  # nothing limited: the batch alone


async def test_a_round_leases_each_rail_up_to_its_share_and_leaves_the_rest_due() -> None:
    stripe, wise = _Named("stripe"), _Named("wise")
    h = Harness()
    await _owed(h, "wise", 5)
    await _owed(h, "stripe", 5)
    dispatcher = Dispatcher(
        h.db,
        Rails({"stripe": stripe, "wise": wise}),
        h.policy,
        destinations=DESTINATIONS,
        batch=10,
        rail_batches={"wise": 2},
        clock=h.clock,
    )
    assert await dispatcher.dispatch_once() == 10  # it saw every due payout
    assert len(stripe.transfers) == 5  # Stripe's round was not cut to Wise's share
    assert len(wise.transfers) == 2
    left = [p for p in h.payouts() if p.rail is None]
    assert len(left) == 3
    assert all(p.status == "scheduled" and not p.leased and p.attempts == 0 for p in left)

    while await dispatcher.dispatch_once():
        pass
    assert len(wise.transfers) == 5 and wise.calls == 5  # each sent once, nothing looked up
    assert all(p.status == "sent" for p in h.payouts())
    assert h.problems() == []
