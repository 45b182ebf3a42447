"""A brand's escrow: payouts draw on it only while it covers them, wait `awaiting_funds`
otherwise, and are released by fundings in order of confirmation (in-memory store)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from services.payouts.domain import lifecycle
from services.payouts.domain.accounts import HoldCode
from services.payouts.domain.escrow import Funding, escrow_problems, funding_order
from services.payouts.domain.ledger import brand_escrow
from services.payouts.domain.ledger_check import PostedTransfer, ledger_problems
from services.payouts.reports import EscrowTotals, brand_statement
from services.payouts.store.memory import MemoryPayoutsStore
from shared.contract.errors import EventRejected
from shared.contract.money import Money
from tests.unit.payouts.builders import T0, account, confirmed, deal_signed, funded, uid
from tests.unit.payouts.harness import Harness
from tests.unit.payouts.store_contract import (
    LONG_AGO,
    acct,
    add_payout,
    new_payout,
    terms,
    waiting_payout,
)

FEE = Money.of("450.00", "USD")


def escrow(h: Harness, brand: str) -> Decimal:
    return sum(
        (
            p.amount.amount
            for t in h.db.state.transfers
            for p in t.postings
            if p.account == brand_escrow(brand)
        ),
        Decimal(0),
    )


async def signed_and_confirmed(h: Harness, brand: str, at_hours: int = 0) -> str:
    deal, creator = uid("deal"), uid("cr")
    at = T0 + timedelta(hours=at_hours)
    await h.consume(
        account(creator, currency="USD", form="W-9"),
        deal_signed(deal, creator, brand_id=brand),
        confirmed(deal, "dl-1", at=at),
        confirmed(deal, "dl-2", at=at),
    )
    return deal


async def test_a_payout_waits_for_funds_then_is_paid_when_they_arrive() -> None:
    h = Harness(fund_brands=False)
    brand = uid("br")
    deal = await signed_and_confirmed(h, brand)
    [waiting] = h.payouts(deal)
    assert waiting.status == "held" and waiting.hold is not None
    assert waiting.hold.code is HoldCode.AWAITING_FUNDS
    assert h.statuses(deal) == ["payout.held"] and escrow(h, brand) == 0
    await h.consume(funded(brand, FEE))
    [released] = h.payouts(deal)
    assert released.status == "scheduled" and escrow(h, brand) == 0
    await h.dispatch_all()
    assert h.statuses(deal) == ["payout.held", "payout.scheduled", "payout.sent"]
    assert h.problems() == []


async def test_funds_release_the_earliest_confirmed_first_and_never_overdraw() -> None:
    h = Harness(fund_brands=False)
    brand = uid("br")
    late = await signed_and_confirmed(h, brand, at_hours=2)
    early = await signed_and_confirmed(h, brand, at_hours=1)
    # More than one fee, less than two: the earlier confirmed is paid, the later waits.
    await h.consume(funded(brand, Money.of("700.00", "USD")))
    assert [p.status for p in h.payouts(early)] == ["scheduled"]
    assert [p.status for p in h.payouts(late)] == ["held"]
    assert escrow(h, brand) == Decimal("250.00")
    # A new payout confirmed later does not jump the one waiting, though 250.00 would cover
    # a small fee; its hold says why.
    small, creator = uid("deal"), uid("cr")
    at = T0 + timedelta(hours=3)
    await h.consume(
        account(creator, currency="USD", form="W-9"),
        deal_signed(small, creator, brand_id=brand, fee=Money.of("100.00", "USD")),
        confirmed(small, "dl-1", at=at),
        confirmed(small, "dl-2", at=at),
    )
    [held] = h.payouts(small)
    assert held.status == "held" and held.hold is not None
    assert held.hold.reason == (
        f"earlier payouts of brand {brand} wait for funds in USD; it is paid after them"
    )
    await h.consume(funded(brand, Money.of("300.00", "USD")))
    assert [p.status for p in h.payouts(late)] == ["scheduled"]
    assert [p.status for p in h.payouts(small)] == ["scheduled"]
    assert escrow(h, brand) == Decimal("0.00")
    assert h.problems() == []


async def test_a_payout_confirmed_before_the_one_waiting_is_paid_when_the_escrow_covers_it() -> (
    None
):
    # Funding order is by confirmation: one confirmed earlier than a payout already waiting,
    # reported later, is not held behind it, as a funding would release it first.
    h = Harness(fund_brands=False)
    brand = uid("br")
    await h.consume(funded(brand, Money.of("100.00", "USD")))
    late = await signed_and_confirmed(h, brand, at_hours=2)
    early, creator = uid("deal"), uid("cr")
    await h.consume(
        account(creator, currency="USD", form="W-9"),
        deal_signed(early, creator, brand_id=brand, fee=Money.of("90.00", "USD")),
        confirmed(early, "dl-1", at=T0 + timedelta(hours=1)),
        confirmed(early, "dl-2", at=T0 + timedelta(hours=1)),
    )
    assert [p.status for p in h.payouts(late)] == ["held"]
    assert [p.status for p in h.payouts(early)] == ["scheduled"]
    assert escrow(h, brand) == Decimal("10.00") and h.problems() == []


async def test_of_payouts_confirmed_in_one_batch_the_earlier_draws_whatever_comes_first() -> None:
    # The larger fee comes first and waits; the smaller, confirmed a second before it, is
    # covered and earlier in the funding order, so it is not held behind the larger.
    for reverse in (False, True):
        h = Harness(fund_brands=False)
        brand = uid("br")
        await h.consume(funded(brand, Money.of("100.00", "USD")))
        deals: dict[str, str] = {}
        events = []
        for fee, at in (("150.00", T0 + timedelta(seconds=1)), ("90.00", T0)):
            deal, creator = uid("deal"), uid("cr")
            deals[fee] = deal
            events += [
                account(creator, currency="USD", form="W-9"),
                deal_signed(deal, creator, brand_id=brand, fee=Money.of(fee, "USD")),
                confirmed(deal, "dl-1", at=at),
                confirmed(deal, "dl-2", at=at),
            ]
        await h.consume(*(events[4:] + events[:4] if reverse else events))
        [small], [large] = h.payouts(deals["90.00"]), h.payouts(deals["150.00"])
        assert (small.status, large.status) == ("scheduled", "held")
        assert large.hold is not None
        assert large.hold.reason == f"brand {brand}'s escrow does not cover 150.00 USD yet"
        assert escrow(h, brand) == Decimal("10.00") and h.problems() == []


async def test_funds_in_another_currency_release_nothing() -> None:
    h = Harness(fund_brands=False)
    brand = uid("br")
    deal = await signed_and_confirmed(h, brand)
    await h.consume(funded(brand, Money.of("5000.00", "EUR")))
    assert [p.status for p in h.payouts(deal)] == ["held"]


async def test_a_funding_is_credited_once_and_never_amended() -> None:
    h = Harness(fund_brands=False)
    brand, funding_id = uid("br"), uid("fund")
    event = funded(brand, FEE, funding_id=funding_id)
    await h.consume(event)
    await h.consume(event.model_copy(update={"id": uid("again")}))
    assert escrow(h, brand) == FEE.amount
    with pytest.raises(EventRejected, match="already credited with other terms") as refused:
        await h.consume(funded(brand, Money.of("1.00", "USD"), funding_id=funding_id))
    # The credited terms as the contract writes them, not as Python prints its objects.
    assert f"amount {FEE}" in str(refused.value) and "Decimal(" not in str(refused.value)
    assert escrow(h, brand) == FEE.amount


async def test_a_funded_payout_held_for_its_account_is_announced_with_the_new_reason() -> None:
    h = Harness(fund_brands=False)
    brand, deal, creator = uid("br"), uid("deal"), uid("cr")
    await h.consume(
        deal_signed(deal, creator, brand_id=brand), confirmed(deal, "dl-1"), confirmed(deal, "dl-2")
    )
    await h.consume(funded(brand, FEE))
    [payout] = h.payouts(deal)
    assert payout.hold is not None and payout.hold.code is HoldCode.NO_ACCOUNT
    assert h.statuses(deal) == ["payout.held", "payout.held"]
    assert escrow(h, brand) == 0 and h.problems() == []
    # The account releases it as any held payout; the funds were drawn already.
    await h.consume(account(creator, currency="USD", form="W-9"))
    assert [p.status for p in h.payouts(deal)] == ["scheduled"]


async def test_an_account_update_does_not_release_a_payout_waiting_for_funds() -> None:
    h = Harness(fund_brands=False)
    brand = uid("br")
    deal = await signed_and_confirmed(h, brand)
    [waiting] = h.payouts(deal)
    await h.consume(account(waiting.creator_id, currency="USD", form="W-9", time=T0 + timedelta(1)))
    assert [p.status for p in h.payouts(deal)] == ["held"] and escrow(h, brand) == 0


def test_fund_draws_the_gross_and_only_from_a_payout_awaiting_funds() -> None:
    creator, brand = uid("cr"), uid("br")
    waiting = waiting_payout(uid("deal"), creator, brand, fx_at=LONG_AGO)
    funded_ = lifecycle.fund(waiting, acct(creator, "USD"), None, LONG_AGO)
    assert funded_.payout.status == "scheduled" and funded_.publish
    [accrual] = [t for t in funded_.transfers if t.kind == "accrual"]
    drawn = -sum(p.amount.amount for p in accrual.postings if p.account == brand_escrow(brand))
    assert drawn == waiting.gross.amount
    with pytest.raises(lifecycle.InvalidTransition):
        lifecycle.fund(funded_.payout, acct(creator, "USD"), None, LONG_AGO)
    held = new_payout(uid("deal"), creator, None).payout  # held for its account
    with pytest.raises(lifecycle.InvalidTransition, match="not awaiting funds"):
        lifecycle.fund(held, acct(creator, "USD"), None, LONG_AGO)


def test_waiting_payouts_are_released_earliest_confirmed_first() -> None:
    creator, brand = uid("cr"), uid("br")
    later = waiting_payout(uid("deal"), creator, brand, fx_at=LONG_AGO + timedelta(hours=1))
    earlier = waiting_payout(uid("deal"), creator, brand, fx_at=LONG_AGO)
    assert funding_order([later, earlier]) == [earlier, later]


def test_the_ledger_check_finds_a_negative_escrow_and_a_waiting_payout_owes_nothing() -> None:
    creator, brand = uid("cr"), uid("br")
    drawn = new_payout(uid("deal"), creator, acct(creator), brand_id=brand)
    waiting = waiting_payout(uid("deal"), creator, brand, fx_at=LONG_AGO)
    posted = [
        PostedTransfer(t.transfer_id, t.payout_id, t.kind, t.postings) for t in drawn.transfers
    ]
    problems = ledger_problems([drawn.payout, waiting], posted)
    assert problems == [
        f"escrow of brand {brand}: -100.00 USD, negative (drawn beyond its fundings)"
    ]
    funding = Funding(uid("fund"), brand, Money.of("100.00", "USD"), T0).transfer()
    paid_for = [
        PostedTransfer(funding.transfer_id, funding.payout_id, funding.kind, funding.postings)
    ]
    assert ledger_problems([drawn.payout, waiting], paid_for + posted) == []
    assert escrow_problems([p for t in paid_for + posted for p in t.postings]) == []


async def test_a_brand_statement_shows_fundings_draws_clawbacks_and_the_balance() -> None:
    db = MemoryPayoutsStore()
    creator, brand, deal = uid("cr"), uid("br"), uid("deal")
    funding = Funding(uid("fund"), brand, Money.of("500.00", "USD"), T0)
    drawn = new_payout(deal, creator, acct(creator), brand_id=brand)
    taken = lifecycle.clawback(
        terms(deal, creator, brand_id=brand),
        "adjustment-1",
        Money.of("30.00", "USD"),
        Money.of("3.00", "USD"),
    )
    waiting = waiting_payout(uid("deal"), creator, brand, fx_at=LONG_AGO)
    async with db.transaction() as repo:
        await repo.add_funding(funding, "e")
        await repo.post([funding.transfer()])
        for t in (drawn, taken):
            await add_payout(repo, t.payout)
            await repo.post(t.transfers)
        await add_payout(repo, waiting)
    shown = await brand_statement(db, brand)
    assert shown.fundings == [funding]
    assert {p.payout_id for p in shown.payouts} == {
        drawn.payout.payout_id,
        taken.payout.payout_id,
        waiting.payout_id,
    }
    assert shown.totals == {
        "USD": EscrowTotals(
            funded=Money.of("500.00", "USD"),
            drawn=Money.of("100.00", "USD"),  # the waiting payout drew nothing
            returned=Money.of("30.00", "USD"),
            balance=Money.of("430.00", "USD"),
        )
    }
