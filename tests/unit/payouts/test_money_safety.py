"""Wrong money the review found: a poisoned FX feed, and a fee schedule changed mid-deal."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

from services.payouts.domain.accounts import HoldCode
from shared.contract.errors import EventRejected
from shared.contract.money import Money
from tests.unit.payouts.builders import T0, account, confirmed, deal_signed, funded, fx, uid
from tests.unit.payouts.harness import Harness

RATES = {"EUR": "0.9215", "JPY": "151.32"}


async def _confirmed_deal(h: Harness, currency: str = "EUR", at: datetime = T0) -> str:
    deal, creator = uid("deal"), uid("cr")
    await h.consume(account(creator, currency=currency), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1", at=at), confirmed(deal, "dl-2", at=at))
    return deal


async def test_a_snapshot_dated_in_the_future_is_not_in_force() -> None:
    # Stored before future dates were refused at the door: still never used.
    h = Harness()
    await h.consume(fx({"EUR": "100000"}, as_of=T0.replace(year=9999)))
    await h.consume(fx(RATES))
    deal = await _confirmed_deal(h)
    [payout] = h.payouts(deal)
    assert payout.net == Money.of("414.68", "EUR")  # 450 x 0.9215 = 414.675
    assert payout.fx is not None and payout.fx.as_of == T0


@pytest.mark.parametrize("rate", ["100000", "1E-40", "1.2"])
async def test_payouts_are_held_while_the_snapshot_in_force_is_suspect(rate: str) -> None:
    h = Harness()
    await h.consume(fx(RATES))
    await h.consume(fx({"EUR": rate, "JPY": "151.40"}, as_of=T0 + timedelta(hours=1)))
    # Confirmed while the suspect snapshot is in force.
    deal = await _confirmed_deal(h, at=T0 + timedelta(hours=1, minutes=30))
    [held] = h.payouts(deal)
    assert held.status == "held" and held.net is None
    assert held.hold is not None and held.hold.code == HoldCode.FX_SUSPECT
    assert "EUR" in held.hold.reason and "suspect" in held.hold.reason
    await h.dispatch_all()
    assert h.provider.calls == 0
    # The feed corrects itself: the payout is converted at the trusted rate and sent once.
    await h.consume(fx({"EUR": "0.9301", "JPY": "151.40"}, as_of=T0 + timedelta(hours=2)))
    [released] = h.payouts(deal)
    assert released.status == "scheduled" and released.net == Money.of(
        "418.54", "EUR"
    )  # 418.545, half-even
    await h.dispatch_all()
    assert h.provider.calls == 1 and h.problems() == []


async def test_a_currency_untouched_by_a_suspect_move_still_needs_a_trusted_snapshot() -> None:
    # Same-currency payouts need no rate and are never held for one.
    h = Harness()
    await h.consume(fx(RATES))
    await h.consume(fx({"EUR": "100000"}, as_of=T0 + timedelta(hours=1)))
    deal = await _confirmed_deal(h, currency="USD")
    [payout] = h.payouts(deal)
    assert payout.status == "scheduled" and payout.net == Money.of("450.00", "USD")


async def test_a_net_changed_after_conversion_is_held_before_dispatch() -> None:
    h = Harness()
    await h.consume(fx(RATES))
    deal = await _confirmed_deal(h)
    [payout] = h.payouts(deal)
    h.db.state.payouts[payout.payout_id] = replace(payout, net=Money.of("45000000.00", "EUR"))
    await h.dispatch_all()
    assert h.provider.calls == 0
    [held] = h.payouts(deal)
    assert held.status == "held" and held.hold is not None
    assert held.hold.code == HoldCode.AMOUNT_CHECK and "45000000.00" in held.hold.reason
    assert h.statuses(deal) == ["payout.scheduled", "payout.held"]


async def test_changing_the_fee_schedule_never_pays_a_fee_twice() -> None:
    h = Harness(fee_schedule="on_completion")
    deal, creator = uid("deal"), uid("cr")
    fee = Money.of("100.00", "USD")
    signed = deal_signed(deal, creator, fee=fee)
    await h.consume(account(creator, currency="USD"), signed)
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    h.reconfigure(fee_schedule="per_deliverable")
    await h.consume(deal_signed(deal, creator, fee=fee))  # re-sent: a new event id
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    assert [(p.milestone, p.gross) for p in h.payouts(deal)] == [("", fee)]
    # A deal first seen under the new setting takes it, and keeps it after a switch back.
    other = uid("deal")
    await h.consume(deal_signed(other, creator, fee=fee), confirmed(other, "dl-2"))
    h.reconfigure(fee_schedule="on_completion")
    await h.consume(confirmed(other, "dl-1"), deal_signed(other, creator, fee=fee))
    assert sorted(p.gross.amount for p in h.payouts(other)) == [Decimal("25.00"), Decimal("75.00")]
    assert h.problems() == []


async def test_a_re_sent_deal_with_other_terms_is_rejected() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    await h.consume(deal_signed(deal, creator, fee=Money.of("100.00", "USD")))
    with pytest.raises(EventRejected, match="different terms"):
        await h.consume(deal_signed(deal, creator, fee=Money.of("900.00", "USD")))
    await h.consume(deal_signed(deal, creator, fee=Money.of("100.00", "USD")))


async def test_an_amount_beyond_the_money_limit_holds_its_payout_not_the_account() -> None:
    # Before, the account event failed five times and went to the DLQ, and every later
    # payout of the creator was held for "no payout account on file".
    h = Harness(fund_brands=False)
    await h.consume(fx(RATES))
    deal, creator = uid("deal"), uid("cr")
    huge = Money.of("9999999999999.99", "USD")
    await h.consume(funded("br-1", huge), deal_signed(deal, creator, fee=huge))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.consume(account(creator, currency="JPY"))
    [held] = h.payouts(deal)
    assert held.status == "held" and held.hold is not None
    assert held.hold.code == HoldCode.AMOUNT_CHECK and "absurd amount" in held.hold.reason
    assert h.db.state.accounts[creator].currency == "JPY"
    other = uid("deal")
    await h.consume(
        funded("br-1", Money.of("450.00", "USD")),
        deal_signed(other, creator),
        confirmed(other, "dl-1"),
        confirmed(other, "dl-2"),
    )
    [paid] = h.payouts(other)
    assert paid.status == "scheduled" and paid.net == Money.of("68094", "JPY")
