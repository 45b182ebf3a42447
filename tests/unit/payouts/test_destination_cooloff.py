"""A destination changed while payouts are in flight is paid to only after a cool-off."""

from __future__ import annotations

from datetime import timedelta

from services.payouts.domain.accounts import HoldCode
from services.payouts.providers.base import TransferAccepted, TransferRequest
from tests.unit.payouts.builders import account, confirmed, deal_signed, fx, uid
from tests.unit.payouts.harness import Harness

COOL_OFF = timedelta(hours=24)


def _record_destinations(h: Harness) -> list[str]:
    sent_to: list[str] = []
    send = h.provider.send

    async def recording(request: TransferRequest) -> TransferAccepted:
        sent_to.append(request.destination.get_secret_value())
        return await send(request)

    h.provider.send = recording  # type: ignore[method-assign]
    return sent_to


async def _payout_in_flight(h: Harness) -> tuple[str, str]:
    """A creator with an account and a confirmed deal whose payout is not sent yet."""
    deal, creator = uid("deal"), uid("cr")
    await h.consume(fx({"EUR": "0.92"}), account(creator, destination="acct_own_1"))
    await h.consume(deal_signed(deal, creator), confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    [payout] = h.payouts(deal)
    assert payout.status == "scheduled"
    return deal, creator


async def _gives(h: Harness, creator: str, destination: str) -> None:
    """A minute later, the creator's account names `destination`."""
    h.now += timedelta(minutes=1)
    await h.consume(account(creator, destination=destination, time=h.now))


async def test_a_changed_destination_waits_and_then_gets_the_money_once() -> None:
    h = Harness()
    sent_to = _record_destinations(h)
    deal, creator = await _payout_in_flight(h)
    await _gives(h, creator, "acct_new_2")
    await h.dispatch_all()
    [held] = h.payouts(deal)
    assert held.status == "held" and held.hold is not None
    assert held.hold.code is HoldCode.DESTINATION_COOLOFF
    assert "in flight" in held.hold.reason
    assert h.statuses(deal)[-1] == "payout.held"  # what an operator alerts on
    assert sent_to == []
    # Nothing moves before the cool-off ends, however often the releases run.
    h.now += COOL_OFF - timedelta(minutes=1)
    await h.cool_offs.run_once()
    await h.dispatch_all()
    assert sent_to == []
    h.now += timedelta(minutes=2)
    await h.cool_offs.run_once()
    await h.dispatch_all()
    assert sent_to == ["acct_new_2"]
    assert [p.status for p in h.payouts(deal)] == ["sent"] and h.problems() == []


async def test_a_held_payout_announces_the_cool_off() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    # Held for its FX rate (no snapshot yet) when the destination changes.
    await h.consume(account(creator, destination="acct_own_1"), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    [waiting] = h.payouts(deal)
    assert waiting.hold is not None and waiting.hold.code is HoldCode.FX_RATE
    await _gives(h, creator, "acct_new_2")
    [held] = h.payouts(deal)
    assert held.hold is not None and held.hold.code is HoldCode.DESTINATION_COOLOFF
    assert h.statuses(deal) == ["payout.held", "payout.held"]


async def test_the_same_destination_again_or_nothing_in_flight_waits_for_nothing() -> None:
    h = Harness()
    sent_to = _record_destinations(h)
    _, creator = await _payout_in_flight(h)
    await _gives(h, creator, "acct_own_1")  # sent again
    await h.dispatch_all()
    assert sent_to == ["acct_own_1"]
    # Nothing in flight any more: a change is used at once (there is nothing to redirect).
    await _gives(h, creator, "acct_new_2")
    later = uid("deal")
    await h.consume(deal_signed(later, creator), confirmed(later, "dl-1"), confirmed(later, "dl-2"))
    await h.dispatch_all()
    assert sent_to == ["acct_own_1", "acct_new_2"]


async def test_changing_it_back_waits_too() -> None:
    h = Harness()
    sent_to = _record_destinations(h)
    _, creator = await _payout_in_flight(h)
    await _gives(h, creator, "acct_attacker_9")
    await h.dispatch_all()
    # The creator notices and restores their own destination: while payouts are in flight,
    # that is a change too, and it also waits; the attacker's never receives anything.
    await _gives(h, creator, "acct_own_1")
    h.now += COOL_OFF + timedelta(minutes=1)
    await h.cool_offs.run_once()
    await h.dispatch_all()
    assert sent_to == ["acct_own_1"]


async def test_a_destination_in_force_before_a_cool_off_is_not_trusted_for_it() -> None:
    # The attacker's cool-off ran out unnoticed; the creator restores their destination; the
    # attacker's sent again is a change like any other: it waits, and is not paid at once.
    h = Harness()
    sent_to = _record_destinations(h)
    _, creator = await _payout_in_flight(h)
    await _gives(h, creator, "acct_attacker_9")
    h.now += COOL_OFF + timedelta(minutes=1)
    await _gives(h, creator, "acct_own_1")
    await h.dispatch_all()
    await _gives(h, creator, "acct_attacker_9")
    await h.dispatch_all()
    assert sent_to == []
