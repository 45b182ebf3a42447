"""Commission follows attribution after the window closes: top-ups for late orders, clawbacks
for late refunds (repaid from the creator's next payouts), final after the adjustment period."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from services.payouts.domain.amounts import split_platform_fee
from services.payouts.domain.commission import next_commission_step
from services.payouts.domain.ledger import creator_receivable
from services.payouts.domain.lifecycle import Payout, payout_id_for
from shared.contract.events.examples import usd
from shared.contract.money import Money
from tests.unit.payouts.builders import (
    T0,
    account,
    attribution,
    confirmed,
    deal_signed,
    funded,
    fx,
    uid,
)
from tests.unit.payouts.harness import Harness

CLOSES = T0 + timedelta(days=10)


async def signed(h: Harness, *, currency: str | None = "USD") -> tuple[str, str]:
    """A deal with a 10 % commission whose window closes at CLOSES; its creator's account in
    `currency` (None: no account yet)."""
    deal, creator = uid("deal"), uid("cr")
    events = [deal_signed(deal, creator, ends_at=T0, window_days=10)]
    if currency is not None:
        events.append(account(creator, currency=currency))
    await h.consume(*events)
    return deal, creator


async def revenue(h: Harness, deal: str, creator: str, amount: str) -> None:
    """Tracking's attribution after an order or refund, then a round of commission decisions."""
    h.now += timedelta(hours=1)
    await h.consume(attribution(deal, creator, usd(amount), h.now))
    await h.commissions.run_once()


def booked(h: Harness, deal: str) -> list[tuple[str, str, Money, Money]]:
    return [
        (p.kind, p.milestone, p.gross, p.platform_fee) for p in h.payouts(deal) if p.kind != "fee"
    ]


def owed_by(h: Harness, creator: str) -> dict[str, Decimal]:
    """What the creator owes from clawbacks, per currency (the receivable, as a positive sum)."""
    account_name = creator_receivable(creator)
    sums: dict[str, Decimal] = {}
    for transfer in h.db.state.transfers:
        for posting in transfer.postings:
            if posting.account == account_name:
                currency = posting.amount.currency
                sums[currency] = sums.get(currency, Decimal(0)) - posting.amount.amount
    return {c: v for c, v in sums.items() if v}


async def test_a_late_order_tops_the_commission_up_by_the_difference_only() -> None:
    h = Harness(platform_fee_bps=1000)
    h.now = CLOSES - timedelta(days=2)
    deal, creator = await signed(h)
    await revenue(h, deal, creator, "1000.00")
    h.now = CLOSES
    await h.commissions.run_once()
    await revenue(h, deal, creator, "1250.00")  # an order dated inside the window, late
    await revenue(h, deal, creator, "1250.00")  # the same revenue again: nothing to book
    await revenue(h, deal, creator, "1255.55")
    assert booked(h, deal) == [
        ("commission", "", usd("100.00"), usd("10.00")),
        ("commission", "adjustment-1", usd("25.00"), usd("2.50")),
        ("commission", "adjustment-2", usd("0.56"), usd("0.06")),
    ]
    # Rounded once on the total: 10 % of 125.56 is 12.556, the platform keeps 12.56 in all.
    assert sum((p.platform_fee for p in h.payouts(deal)), usd("0")) == usd("12.56")
    await h.dispatch_all()
    assert [p.status for p in h.payouts(deal)] == ["sent", "sent", "sent"]
    assert len(h.provider.transfers) == 3  # each adjustment its own idempotency key
    assert h.problems() == []


async def test_a_late_refund_claws_back_and_the_next_payout_repays_it() -> None:
    h = Harness(platform_fee_bps=1000)
    deal, creator = await signed(h)
    h.now = CLOSES
    await revenue(h, deal, creator, "1000.00")
    await h.dispatch_all()
    await revenue(h, deal, creator, "700.00")  # refunds after the commission was paid
    assert booked(h, deal)[1:] == [("clawback", "adjustment-1", usd("30.00"), usd("3.00"))]
    assert owed_by(h, creator) == {"USD": Decimal("27.00")}
    # A clawback sends nothing; its one event tells the brand what returned to its escrow.
    assert h.statuses(deal) == ["payout.scheduled", "payout.sent", "payout.settled"]
    [clawed] = [e.data for e in h.events_of(payout_id_for(deal, "clawback", "adjustment-1"))]
    assert (clawed.kind, clawed.status, clawed.gross) == ("clawback", "settled", usd("30.00"))
    assert clawed.platform_fee == usd("3.00") and clawed.net is None and clawed.fx_rate is None

    # The creator's next deal: its fee repays the 27.00 first, the rest is sent.
    other = uid("deal")
    await h.consume(deal_signed(other, creator, fee=usd("100.00")))
    await h.consume(confirmed(other, "dl-1"), confirmed(other, "dl-2"))
    [fee] = h.payouts(other)
    assert fee.recovered == usd("27.00") and fee.net == usd("63.00")  # 90.00 - 27.00
    assert owed_by(h, creator) == {}
    [scheduled] = h.events_of(fee.payout_id)
    assert scheduled.data.recovered == usd("27.00") and scheduled.data.net == usd("63.00")
    await h.dispatch_all()
    assert h.provider.transfers[fee.payout_id].amount == usd("63.00")
    assert h.problems() == []


async def test_refunds_beyond_the_commission_claw_back_to_zero_and_no_further() -> None:
    h = Harness()
    deal, creator = await signed(h)
    h.now = CLOSES
    await revenue(h, deal, creator, "300.00")
    await revenue(h, deal, creator, "-50.00")  # refunds larger than every order
    assert booked(h, deal) == [
        ("commission", "", usd("30.00"), usd("0.00")),
        ("clawback", "adjustment-1", usd("30.00"), usd("0.00")),
    ]
    await revenue(h, deal, creator, "-80.00")
    assert len(booked(h, deal)) == 2
    await revenue(h, deal, creator, "100.00")  # an order after all
    assert booked(h, deal)[2:] == [("commission", "adjustment-2", usd("10.00"), usd("0.00"))]
    # The top-up first repays what the creator still owed.
    [top_up] = [p for p in h.payouts(deal) if p.milestone == "adjustment-2"]
    assert top_up.recovered == usd("10.00") and top_up.status == "settled"
    assert owed_by(h, creator) == {"USD": Decimal("20.00")}
    assert h.problems() == []


async def test_a_creator_without_an_account_is_held_and_repays_on_release() -> None:
    h = Harness()
    await h.consume(fx({"EUR": "0.9"}))
    deal, creator = await signed(h, currency=None)
    h.now = CLOSES
    await h.consume(fx({"EUR": "0.9"}, as_of=CLOSES))  # fresh when the commission is decided
    await revenue(h, deal, creator, "500.00")
    await revenue(h, deal, creator, "800.00")
    await revenue(h, deal, creator, "600.00")
    assert [(p.kind, p.status) for p in h.payouts(deal)] == [
        ("commission", "held"),
        ("commission", "held"),
        ("clawback", "settled"),
    ]
    assert owed_by(h, creator) == {"USD": Decimal("20.00")}
    await h.consume(account(creator, currency="EUR", time=h.now))
    first, top_up, _ = h.payouts(deal)
    # Released in payout id order; together they repay 20.00 once and send the rest in EUR.
    assert {first.recovered, top_up.recovered} == {None, usd("20.00")}
    sent = sum(((p.net or Money.zero("EUR")).amount for p in (first, top_up)), Decimal(0))
    assert sent == Decimal("54.00")  # (50.00 + 30.00 - 20.00) x 0.9
    assert owed_by(h, creator) == {}
    assert h.problems() == []


async def test_a_debt_in_one_currency_waits_for_a_payout_in_that_currency() -> None:
    h = Harness()
    deal, creator = await signed(h)
    h.now = CLOSES
    await revenue(h, deal, creator, "100.00")
    await revenue(h, deal, creator, "0.00")
    other = uid("deal")
    await h.consume(deal_signed(other, creator, fee=Money.of("50.00", "EUR")))
    await h.consume(fx({"EUR": "0.9"}), confirmed(other, "dl-1"), confirmed(other, "dl-2"))
    [fee] = h.payouts(other)
    assert fee.recovered is None and owed_by(h, creator) == {"USD": Decimal("10.00")}
    assert h.problems() == []


async def test_after_the_adjustment_period_the_commission_is_final() -> None:
    h = Harness()
    assert h.policy.commission_adjustable == timedelta(days=30)
    deal, creator = await signed(h)
    h.now = CLOSES
    await revenue(h, deal, creator, "100.00")
    h.now = CLOSES + timedelta(days=30) - timedelta(hours=2)
    await revenue(h, deal, creator, "200.00")  # an hour before the end: adjusted
    await revenue(h, deal, creator, "900.00")  # at the end: final
    h.now += timedelta(days=1)
    await h.commissions.run_once()
    assert [p.gross for p in h.payouts(deal)] == [usd("10.00"), usd("10.00")]


async def test_an_adjustment_is_decided_once_however_often_the_round_runs() -> None:
    h = Harness()
    deal, creator = await signed(h)
    h.now = CLOSES
    late = attribution(deal, creator, usd("400.00"), CLOSES + timedelta(hours=1))
    await h.consume(attribution(deal, creator, usd("100.00"), CLOSES))
    assert await h.commissions.run_once() == 1
    await h.consume(late, late)
    assert await h.commissions.run_once() == 1
    assert await h.commissions.run_once() == 0
    await h.consume(late)  # a replay of the same event: the inbox drops it
    assert await h.commissions.run_once() == 0
    assert [p.gross for p in h.payouts(deal)] == [usd("10.00"), usd("30.00")]


def _payout(kind: str, gross: Money, fee: Money) -> Payout:
    return Payout(
        payout_id=uid("po"),
        deal_id="d",
        kind=kind,  # type: ignore[arg-type]
        milestone="",
        creator_id="c",
        brand_id="b",
        gross=gross,
        platform_fee=fee,
        status="settled",
    )


@given(
    owed=st.lists(st.integers(0, 10**7), min_size=1, max_size=8),
    bps=st.sampled_from([0, 1, 250, 1000, 3333, 5000, 9999, 10_000]),
    currency=st.sampled_from(["USD", "JPY", "KWD"]),
)
def test_bookings_always_add_up_to_what_is_owed_now(
    owed: list[int], bps: int, currency: str
) -> None:
    history: list[Payout] = []
    for units in owed:
        target = Money.from_minor(units, currency)
        step = next_commission_step(target, history, bps)
        if step is not None:
            assert step.gross.amount > 0 and Money.zero(currency) <= step.platform_fee <= step.gross
            history.append(_payout(step.kind, step.gross, step.platform_fee))
        signed = [(-1 if p.kind == "clawback" else 1, p) for p in history]
        total = sum((s * p.gross.amount for s, p in signed), Decimal(0))
        fees = sum((s * p.platform_fee.amount for s, p in signed), Decimal(0))
        assert total == target.amount
        assert fees == split_platform_fee(target, bps).platform_fee.amount
    assert len({p.payout_id for p in history}) == len(history)


async def test_a_clawback_and_a_top_up_in_one_round_settle_against_each_other() -> None:
    h = Harness()
    refunded, creator = await signed(h)
    other = uid("deal")
    await h.consume(deal_signed(other, creator, ends_at=T0, window_days=10))
    h.now = CLOSES
    await h.consume(attribution(refunded, creator, usd("100.00"), h.now))
    await h.consume(attribution(other, creator, usd("100.00"), h.now))
    assert await h.commissions.run_once() == 2
    h.now += timedelta(hours=1)
    await h.consume(attribution(refunded, creator, usd("40.00"), h.now))
    await h.consume(attribution(other, creator, usd("150.00"), h.now))
    assert await h.commissions.run_once() == 2  # one transaction: the clawback comes first
    [top_up] = [p for p in h.payouts(other) if p.milestone == "adjustment-1"]
    assert top_up.gross == usd("5.00") and top_up.recovered == usd("5.00")
    assert owed_by(h, creator) == {"USD": Decimal("1.00")}  # 6.00 clawed back, 5.00 repaid
    assert h.problems() == []


async def test_attribution_that_arrives_after_the_first_round_is_still_paid() -> None:
    """The same fault in another guise: a deal decided before any attribution reached payouts
    was closed for good with no commission."""
    h = Harness()
    deal, creator = await signed(h)
    h.now = CLOSES
    assert await h.commissions.run_once() == 1
    assert h.payouts(deal) == []
    await revenue(h, deal, creator, "320.00")
    assert booked(h, deal) == [("commission", "", usd("32.00"), usd("0.00"))]


async def test_a_clawback_gives_the_brand_funds_that_release_a_payout_waiting_for_them() -> None:
    h = Harness(platform_fee_bps=1000, fund_brands=False)
    h.now = CLOSES - timedelta(days=2)
    await h.consume(funded("br-1", usd("100.00")))  # the commission, no more
    deal, creator = await signed(h)
    await revenue(h, deal, creator, "1000.00")
    h.now = CLOSES
    await h.commissions.run_once()
    assert [p.status for p in h.payouts(deal)] == ["scheduled"]  # drew all 100.00
    other, paid = uid("deal"), uid("cr")
    await h.consume(
        account(paid, currency="USD"),
        deal_signed(other, paid, fee=usd("25.00")),
        confirmed(other, "dl-1"),
        confirmed(other, "dl-2"),
    )
    [waiting] = h.payouts(other)
    assert waiting.hold is not None and waiting.hold.code == "awaiting_funds"
    await revenue(h, deal, creator, "700.00")  # a late refund: 30.00 of commission back
    assert ("clawback", "adjustment-1", usd("30.00"), usd("3.00")) in booked(h, deal)
    [released] = h.payouts(other)
    assert released.status == "scheduled"
    assert h.problems() == []
