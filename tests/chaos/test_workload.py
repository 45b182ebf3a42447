"""The chaos workload's amended and cancelled deals are built so that their ground truth holds
whatever order their records arrive in."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from shared.contract.events import decode
from tests.chaos.workload import BRAND_ID, ChaosConfig, Workload, generate


@pytest.fixture(scope="module")
def workload() -> Workload:
    return generate(ChaosConfig(deals=200, profiles=20, match_requests=1), datetime.now(UTC))


def _events(workload: Workload) -> dict[str, Any]:
    """Every valid event once, by id."""
    return {
        r.event_id: decode(r.topic, r.value) for r in workload.records if r.event_id is not None
    }


def _of_deal(events: dict[str, Any], deal_id: str) -> list[Any]:
    return [e for e in events.values() if getattr(e.data, "deal_id", None) == deal_id]


def test_an_amended_deal_changes_its_fee_only_and_is_funded_for_the_higher(
    workload: Workload,
) -> None:
    events = _events(workload)
    amended = [d for d, p in workload.payouts.items() if p.amended]
    assert 10 <= len(amended) <= 30  # about a tenth of 200
    for deal_id in amended:
        [signed] = [e for e in _of_deal(events, deal_id) if e.type == "deal.signed"]
        [amendment] = [e for e in _of_deal(events, deal_id) if e.type == "deal.amended"]
        first, second = signed.data.fee, amendment.data.fee
        assert amendment.data.version == 2 and amendment.data.brand_id == BRAND_ID
        assert first != second and first.currency == second.currency
        assert Decimal("0.6") * first.amount <= second.amount <= Decimal("1.4") * first.amount
        assert second.amount == second.amount.to_integral_value()  # halves are exact cents
        same = {k: v for k, v in dict(amendment.data).items() if k not in ("fee", "version")}
        assert same == {k: v for k, v in dict(signed.data).items() if k != "fee"}
        [funding] = [
            e.data
            for e in events.values()
            if e.type == "brand.funded" and e.data.funding_id == f"fund-{deal_id}"
        ]
        assert funding.amount == max(first, second)


def test_a_cancelled_deal_ends_after_everything_it_counts(workload: Workload) -> None:
    """Its posts, orders, refunds and confirmations are dated no later than the cancellation,
    and only its brand confirms it (tracking would not auto-confirm after a cancellation)."""
    events = _events(workload)
    assert workload.cancelled
    for deal_id in workload.cancelled:
        assert not workload.payouts[deal_id].amended
        mine = _of_deal(events, deal_id)
        [cancellation] = [e for e in mine if e.type == "deal.cancelled"]
        ended = cancellation.time
        posts = [e.data for e in mine if e.type == "post.metrics.observed"]
        assert posts and all("#ad" not in p.tags and p.posted_at <= ended for p in posts)
        confirmed = [e.data for e in mine if e.type == "deliverable.confirmed"]
        assert {c.deliverable_id for c in confirmed} == {"post-1", "story-1"}
        assert all(c.confirmed_by == BRAND_ID and c.confirmed_at <= ended for c in confirmed)
        code = f"CHAOS{deal_id.removeprefix('deal-chaos-')}"
        orders = [
            e.data
            for e in events.values()
            if e.type == "order.redeemed" and e.data.promo_code == code
        ]
        # (A refund may be dated later: it refunds an order that counts, whenever it comes.)
        assert orders and all(o.occurred_at <= ended for o in orders)
