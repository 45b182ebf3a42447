"""Deal amendments and cancellations in payouts: the fee in force, never paid twice."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from services.payouts.domain.terms import (
    WHOLE_DEAL,
    Cancellation,
    DealTerms,
    DeliverableTerm,
    cancelled_at,
    fee_due,
    in_force,
)
from shared.contract.deal_versions import changed_identity
from shared.contract.errors import EventRejected
from shared.contract.events import CloudEvent
from shared.contract.events.examples import usd
from shared.contract.money import Money
from shared.runtime.observability import STALE_AMENDMENTS
from shared.runtime.trust import Untrusted
from tests.unit.payouts.builders import (
    T0,
    account,
    attribution,
    confirmed,
    deal_amended,
    deal_cancelled,
    deal_signed,
    uid,
)
from tests.unit.payouts.harness import Harness

TERMS = DealTerms(
    deal_id="d",
    campaign_id="c",
    brand_id="b",
    creator_id="cr",
    fee=usd("400.00"),
    commission_rate=Decimal("0.1"),
    deliverables=(DeliverableTerm("dl-1", 1), DeliverableTerm("dl-2", 3)),
    ends_at=T0,
    attribution_window_days=0,
    fee_schedule="per_deliverable",
)


def due(terms: DealTerms, confirmed: set[str], paid: dict[str, Money]) -> list[tuple[str, str]]:
    return [(m.milestone, str(m.amount.amount)) for m in fee_due(terms, confirmed, paid).milestones]


def test_each_deliverable_gets_its_share_and_the_last_the_rest_of_the_fee_in_force() -> None:
    assert due(TERMS, {"dl-1"}, {}) == [("dl-1", "100.00")]
    assert due(TERMS, {"dl-1", "dl-2"}, {}) == [("dl-1", "100.00"), ("dl-2", "300.00")]
    # dl-1 was paid under a 400 fee; the fee is 200 now: dl-2 completes the deal with the rest.
    assert due(replace(TERMS, fee=usd("200.00")), {"dl-1", "dl-2"}, {"dl-1": usd("100")}) == [
        ("dl-2", "100.00")
    ]
    # Raised to 1000: the rest is 900, not dl-2's share of 750.
    assert due(replace(TERMS, fee=usd("1000")), {"dl-1", "dl-2"}, {"dl-1": usd("100")}) == [
        ("dl-2", "900.00")
    ]
    assert due(TERMS, {"dl-1", "dl-2"}, {"dl-1": usd("100"), "dl-2": usd("300")}) == []


def test_more_paid_than_the_fee_in_force_pays_nothing_more_and_says_so() -> None:
    lowered = replace(TERMS, fee=usd("50.00"))
    result = fee_due(lowered, {"dl-1", "dl-2"}, {"dl-1": usd("100")})
    assert result.milestones == ()
    assert result.overpaid == usd("50.00")
    # Not complete yet: a share is capped at what is left of the fee.
    three = replace(lowered, deliverables=(*TERMS.deliverables, DeliverableTerm("dl-3", 1)))
    assert fee_due(three, {"dl-1", "dl-2"}, {"dl-1": usd("40")}).milestones[0].amount == usd("10")


def test_a_fee_raised_after_every_fee_payout_exists_is_not_paid_and_says_so() -> None:
    raised = replace(TERMS, fee=usd("500.00"))
    paid = {"dl-1": usd("100"), "dl-2": usd("300")}
    result = fee_due(raised, {"dl-1", "dl-2"}, paid)
    assert (result.milestones, result.unpaid) == ((), usd("100.00"))
    whole = replace(raised, fee_schedule="on_completion")
    assert fee_due(whole, {"dl-1", "dl-2"}, {"": usd("400")}).unpaid == usd("100.00")
    # Not complete yet: the next confirmation pays the raised fee's rest; nothing is unpaid.
    assert fee_due(raised, {"dl-1"}, {"dl-1": usd("100")}).unpaid == usd("0")


def test_on_completion_pays_the_whole_fee_in_force_once() -> None:
    whole = replace(TERMS, fee_schedule="on_completion", fee=usd("250.00"))
    assert due(whole, {"dl-1"}, {}) == []
    assert due(whole, {"dl-1", "dl-2"}, {}) == [(WHOLE_DEAL, "250.00")]
    assert due(whole, {"dl-1", "dl-2"}, {WHOLE_DEAL: usd("400")}) == []


@given(
    fees=st.lists(st.integers(0, 10**6), min_size=1, max_size=4),
    counts=st.lists(st.integers(1, 9), min_size=1, max_size=5),
    data=st.data(),
)
def test_fee_payouts_never_exceed_and_end_at_the_fee_in_force(
    fees: list[int], counts: list[int], data: st.DataObject
) -> None:
    """Whatever the amendments of the fee between confirmations: never a negative payout,
    never above the fee in force when each is created, and exactly that fee when the last
    confirmation completes the deal (unless more was paid already)."""
    deliverables = tuple(DeliverableTerm(f"dl-{i}", c) for i, c in enumerate(counts))
    order = data.draw(st.permutations([d.deliverable_id for d in deliverables]))
    terms = replace(TERMS, deliverables=deliverables)
    paid: dict[str, Money] = {}
    for step in range(len(order)):
        fee = Money.from_minor(fees[min(step, len(fees) - 1)], "USD")
        current = replace(terms, fee=fee)
        result = fee_due(current, set(order[: step + 1]), paid)
        for milestone in result.milestones:
            assert milestone.amount > Money.zero("USD")
            paid[milestone.milestone] = milestone.amount
        total = sum(paid.values(), Money.zero("USD"))
        assert total <= fee or result.milestones == ()
    assert total == fee or (result.overpaid > Money.zero("USD") and total > fee) or fee.is_zero()


def test_an_amendment_never_changes_the_parties_or_the_currency() -> None:
    assert changed_identity(TERMS, replace(TERMS, fee=usd("1"), version=2)) is None
    for field, value in (("campaign_id", "c2"), ("creator_id", "x"), ("brand_id", "b2")):
        why = changed_identity(TERMS, replace(TERMS, **{field: value}))
        assert why is not None and why.startswith(f"data.{field}")
    euro = changed_identity(TERMS, replace(TERMS, fee=Money.of("400", "EUR")))
    assert euro is not None and euro.startswith("data.fee.currency")


def test_terms_in_force_do_not_depend_on_arrival_order() -> None:
    v2 = replace(TERMS, version=2, fee=usd("500"), sent_at=T0)
    v3 = replace(TERMS, version=3, fee=usd("600"), sent_at=T0 + timedelta(hours=2))
    foreign = replace(TERMS, version=4, brand_id="other", sent_at=T0)
    for order in ([v2, v3, foreign], [foreign, v3, v2]):
        assert in_force(TERMS, order).fee == usd("600")
    ended = replace(TERMS, cancelled_at=T0 + timedelta(hours=1))
    # v3 was sent after the cancellation: it never counts.
    assert in_force(ended, [v3, v2]).version == 2
    kept = [
        Cancellation("d", "other", T0, "not theirs"),
        Cancellation("d", "b", T0 + timedelta(hours=1), "ok"),
    ]
    assert cancelled_at(TERMS, kept) == T0 + timedelta(hours=1)


async def _deal(h: Harness, *, fee: str = "400.00") -> tuple[str, CloudEvent[Any]]:
    deal, creator = uid("deal"), uid("cr")
    signed = deal_signed(deal, creator, fee=usd(fee))
    await h.consume(account(creator, currency="USD"), signed)
    return deal, signed


def fees(h: Harness, deal: str) -> dict[str, Money]:
    return {p.milestone: p.gross for p in h.payouts(deal) if p.kind == "fee"}


async def test_two_confirmations_and_an_amendment_in_one_batch_are_never_owed_twice() -> None:
    h = Harness(fee_schedule="per_deliverable")
    deal, signed = await _deal(h)
    # dl-1 (count 1) is paid a quarter of 400; dl-2 completes the deal under a 200 fee.
    await h.consume(
        confirmed(deal, "dl-1"),
        deal_amended(signed, 2, fee=usd("200.00")),
        confirmed(deal, "dl-2"),
    )
    assert fees(h, deal) == {"dl-1": usd("100.00"), "dl-2": usd("100.00")}
    # Sent again, in one batch, with a later version: nothing more, nothing twice.
    await h.consume(
        confirmed(deal, "dl-2"), deal_amended(signed, 3, fee=usd("900.00")), confirmed(deal, "dl-1")
    )
    assert fees(h, deal) == {"dl-1": usd("100.00"), "dl-2": usd("100.00")}
    assert h.problems() == []


async def test_amendment_first_in_the_batch_prices_both_confirmations() -> None:
    h = Harness(fee_schedule="per_deliverable")
    deal, signed = await _deal(h)
    await h.consume(
        deal_amended(signed, 2, fee=usd("80.00")), confirmed(deal, "dl-1"), confirmed(deal, "dl-2")
    )
    assert fees(h, deal) == {"dl-1": usd("20.00"), "dl-2": usd("60.00")}


async def test_a_lowered_fee_below_what_was_paid_pays_nothing_more() -> None:
    h = Harness(fee_schedule="per_deliverable")
    deal, signed = await _deal(h)
    await h.consume(
        confirmed(deal, "dl-1"), deal_amended(signed, 2, fee=usd("50.00")), confirmed(deal, "dl-2")
    )
    assert fees(h, deal) == {"dl-1": usd("100.00")}


async def test_on_completion_pays_the_fee_in_force_when_the_deal_completes() -> None:
    h = Harness()
    deal, signed = await _deal(h)
    await h.consume(confirmed(deal, "dl-1"), deal_amended(signed, 2, fee=usd("300.00")))
    await h.consume(confirmed(deal, "dl-2"), deal_amended(signed, 3, fee=usd("999.00")))
    assert fees(h, deal) == {WHOLE_DEAL: usd("300.00")}


async def test_an_amendment_dropping_a_deliverable_completes_the_deal() -> None:
    h = Harness()
    deal, signed = await _deal(h)
    await h.consume(confirmed(deal, "dl-1"))
    assert fees(h, deal) == {}
    await h.consume(deal_amended(signed, 2, deliverables=(("dl-1", 1),)))
    assert fees(h, deal) == {WHOLE_DEAL: usd("400.00")}


async def test_a_stale_amendment_is_ignored_and_counted() -> None:
    h = Harness()
    deal, signed = await _deal(h)
    stale = STALE_AMENDMENTS.labels(service="payouts")
    before = stale._value.get()
    await h.consume(deal_amended(signed, 3, fee=usd("300.00")))
    await h.consume(deal_amended(signed, 2, fee=usd("200.00")))
    await h.consume(deal_amended(signed, 3, fee=usd("100.00"), event_id=uid("again")))
    assert stale._value.get() == before + 2
    terms = h.db.state.deals[deal]
    assert (terms.version, terms.fee) == (3, usd("300.00"))


async def test_amendments_and_cancellations_before_the_deal_apply_when_it_arrives() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    signed = deal_signed(deal, creator)
    await h.consume(account(creator, currency="USD"))
    await h.consume(
        deal_amended(signed, 3, fee=usd("300.00")),
        deal_amended(signed, 2, fee=usd("200.00")),
        deal_amended(signed, 4, brand_id="br-intruder"),  # never counts: not the deal's brand
        deal_cancelled(deal, at=T0 + timedelta(hours=5)),
        confirmed(deal, "dl-1", at=T0 + timedelta(hours=1)),
        confirmed(deal, "dl-2", at=T0 + timedelta(hours=6)),  # after the cancellation
    )
    with capture_logs() as logs:
        await h.consume(confirmed(deal, "dl-1", at=T0 + timedelta(hours=2)))
    assert [e["event"] for e in logs] == ["confirmation kept until its deal arrives"]
    await h.consume(signed)
    terms = h.db.state.deals[deal]
    assert (terms.version, terms.fee) == (3, usd("300.00"))
    assert terms.cancelled_at == T0 + timedelta(hours=5)
    assert fees(h, deal) == {}  # dl-2 was confirmed too late: the deal never completed


async def test_a_confirmation_after_the_cancellation_is_refused_and_earlier_payouts_stay() -> None:
    h = Harness(fee_schedule="per_deliverable")
    deal, signed = await _deal(h)
    await h.consume(confirmed(deal, "dl-1", at=T0 + timedelta(hours=1)))
    await h.consume(deal_cancelled(deal, at=T0 + timedelta(hours=2)))
    with pytest.raises(EventRejected, match="cancelled"):
        await h.consume(confirmed(deal, "dl-2", at=T0 + timedelta(hours=3)))
    # Amendments after the cancellation are stale.
    await h.consume(deal_amended(signed, 2, fee=usd("1.00"), at=T0 + timedelta(hours=4)))
    assert h.db.state.deals[deal].fee == usd("400.00")
    assert fees(h, deal) == {"dl-1": usd("100.00")}
    await h.dispatch_all()
    assert [p.status for p in h.payouts(deal)] == ["sent"]  # paid as any other


async def test_a_cancellation_dated_before_it_arrived_refuses_only_later_confirmations() -> None:
    h = Harness(fee_schedule="per_deliverable")
    deal, _ = await _deal(h)
    # Dated hour 2, it reached the broker at hour 4 (its record's time less the clock skew).
    await h.consume_arrived(
        deal_cancelled(deal, at=T0 + timedelta(hours=2)), not_before=T0 + timedelta(hours=4)
    )
    assert h.db.state.deals[deal].cancelled_at == T0 + timedelta(hours=4)
    await h.consume(confirmed(deal, "dl-1", at=T0 + timedelta(hours=3)))
    with pytest.raises(EventRejected, match="cancelled"):
        await h.consume(confirmed(deal, "dl-2", at=T0 + timedelta(hours=5)))
    assert fees(h, deal) == {"dl-1": usd("100.00")}


async def test_an_amendment_by_another_brand_or_in_another_currency_is_refused() -> None:
    h = Harness()
    deal, signed = await _deal(h)
    with pytest.raises(Untrusted, match=r"data\.brand_id"):
        await h.consume(deal_amended(signed, 2, brand_id="br-other"))
    with pytest.raises(EventRejected, match=r"data\.fee\.currency"):
        await h.consume(deal_amended(signed, 2, fee=Money.of("400.00", "EUR")))
    with pytest.raises(Untrusted, match=r"data\.brand_id"):
        await h.consume(deal_cancelled(deal, brand_id="br-other"))


async def test_commission_uses_the_rate_in_force_when_decided() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    signed = deal_signed(deal, creator, ends_at=T0, window_days=1)
    await h.consume(account(creator, currency="USD"), signed)
    await h.consume(deal_amended(signed, 2, commission_rate=Decimal("0.25")))
    h.now = T0 + timedelta(days=2)
    await h.consume(attribution(deal, creator, usd("1000.00"), h.now))
    await h.commissions.run_once()
    [commission] = [p for p in h.payouts(deal) if p.kind == "commission"]
    assert commission.gross == usd("250.00")
