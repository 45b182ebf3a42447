"""The FX rate of a payout is locked when it became owed; a stale rate holds it."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from services.payouts.domain.accounts import HoldCode
from services.payouts.domain.amounts import FxRecord, FxSnapshotStale, locked_conversion
from shared.contract.money import FxRateMissing, FxSnapshot, Money
from tests.unit.payouts.builders import T0, account, confirmed, deal_signed, fx, uid
from tests.unit.payouts.harness import Harness

DAY = timedelta(hours=24)


def snapshot(eur: str, as_of_hours: float, suspect: str | None = None) -> FxSnapshot:
    return FxSnapshot(
        "USD", {"EUR": Decimal(eur)}, T0 + timedelta(hours=as_of_hours), "t", suspect=suspect
    )


def convert(
    to: str, in_force: FxSnapshot | None, later: FxSnapshot | None
) -> tuple[Money, FxRecord]:
    """100.00 USD in `to`, locked at T0; a snapshot in force there is fresh for a day."""
    return locked_conversion(
        Money.of("100.00", "USD"), to, at=T0, in_force=in_force, later=later, max_age=DAY
    )


def test_the_snapshot_in_force_at_the_lock_is_used_while_it_is_fresh() -> None:
    net, record = convert("EUR", in_force=snapshot("0.90", -23), later=snapshot("0.95", 1))
    assert net == Money.of("90.00", "EUR") and record.rate == Decimal("0.90")


def test_a_stale_snapshot_gives_way_to_the_first_one_after_the_lock() -> None:
    stale = snapshot("0.90", -25)
    with pytest.raises(FxSnapshotStale, match="stale_fx"):
        convert("EUR", in_force=stale, later=None)
    net, _ = convert("EUR", in_force=stale, later=snapshot("0.95", 1))
    assert net == Money.of("95.00", "EUR")


def test_a_suspect_or_missing_snapshot_gives_way_to_the_first_one_after_the_lock() -> None:
    suspect = snapshot("90000", -1, suspect="moved")
    for in_force in (suspect, None):
        net, _ = convert("EUR", in_force=in_force, later=snapshot("0.95", 1))
        assert net == Money.of("95.00", "EUR")
    with pytest.raises(FxRateMissing):
        convert("EUR", in_force=None, later=None)


def test_the_same_currency_needs_no_rate_however_old() -> None:
    net, record = convert("USD", in_force=snapshot("0.90", -1000), later=None)
    assert net == Money.of("100.00", "USD") and record.rate == 1


async def test_a_fee_held_for_an_account_converts_at_the_rate_of_its_confirmation() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    await h.consume(fx({"EUR": "0.90"}, as_of=T0 - timedelta(hours=2)))
    await h.consume(deal_signed(deal, creator), confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    [held] = h.payouts(deal)
    assert held.hold is not None and held.hold.code is HoldCode.NO_ACCOUNT
    assert held.fx_at == T0
    # The rate moves before the creator sets up an account: the confirmed rate still holds.
    await h.consume(fx({"EUR": "0.95"}, as_of=T0 + timedelta(hours=2)))
    await h.consume(account(creator, currency="EUR", time=h.now))
    [released] = h.payouts(deal)
    assert released.status == "scheduled"
    assert released.net == Money.of("405.00", "EUR")  # 450 x 0.90, not x 0.95
    assert released.fx is not None and released.fx.as_of == T0 - timedelta(hours=2)
    await h.dispatch_all()
    assert h.provider.calls == 1 and h.problems() == []


async def test_each_deliverable_locks_its_own_rate_per_deliverable() -> None:
    h = Harness(fee_schedule="per_deliverable")
    deal, creator = uid("deal"), uid("cr")
    await h.consume(fx({"EUR": "0.90"}, as_of=T0), fx({"EUR": "0.80"}, as_of=T0 + DAY / 2))
    await h.consume(deal_signed(deal, creator), account(creator, currency="EUR"))
    later = T0 + timedelta(hours=13)
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2", at=later))
    rates = {p.milestone: (p.fx_at, p.fx.rate if p.fx else None) for p in h.payouts(deal)}
    assert rates == {"dl-1": (T0, Decimal("0.90")), "dl-2": (later, Decimal("0.80"))}


async def test_a_stale_rate_holds_the_fee_until_a_fresh_one_arrives() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    await h.consume(fx({"EUR": "0.90"}, as_of=T0 - timedelta(hours=30)))
    await h.consume(account(creator, currency="EUR"), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    [held] = h.payouts(deal)
    assert held.status == "held" and held.net is None
    assert held.hold is not None and held.hold.code is HoldCode.STALE_FX
    assert held.hold.reason.startswith("stale_fx")
    assert h.statuses(deal) == ["payout.held"]
    await h.dispatch_all()
    assert h.provider.calls == 0
    # A fresh snapshot releases it, at the first rate published after the confirmation.
    await h.consume(fx({"EUR": "0.93"}, as_of=T0 + timedelta(hours=1)))
    [released] = h.payouts(deal)
    assert released.status == "scheduled" and released.net == Money.of("418.50", "EUR")
    await h.dispatch_all()
    assert h.provider.calls == 1 and h.problems() == []
    assert h.statuses(deal) == ["payout.held", "payout.scheduled", "payout.sent"]


async def test_a_confirmation_dated_ahead_locks_when_it_is_handled() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    await h.consume(fx({"EUR": "0.90"}), account(creator), deal_signed(deal, creator))
    ahead = h.now + timedelta(days=30)
    await h.consume(confirmed(deal, "dl-1", at=ahead), confirmed(deal, "dl-2", at=ahead))
    [payout] = h.payouts(deal)
    assert payout.fx_at == h.now
