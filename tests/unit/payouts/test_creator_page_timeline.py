"""What the creator page says about each payout (services/payouts/creator_page/timeline.py):
every hold reason in words with what to do, returned told from failed, the expected arrival
of a sent payout, and no raw reason text (it may quote a destination)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from services.payouts.creator_page.timeline import (
    FAILED_ACTION,
    HOLD_ACTIONS,
    RETURNED_ACTION,
    TYPICAL_ARRIVAL,
    StatusEvent,
    deal_views,
    payout_view,
)
from services.payouts.domain import lifecycle
from services.payouts.domain.accounts import Hold, HoldCode
from tests.unit.payouts.store_contract import acct, new_payout

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def _events(payout: lifecycle.Payout, *statuses: str) -> list[StatusEvent]:
    return [
        StatusEvent(payout.payout_id, status, T0 + timedelta(minutes=n))
        for n, status in enumerate(statuses)
    ]


def _sent(rail: str) -> lifecycle.Payout:
    scheduled = new_payout("deal-1", "cr-1", acct("cr-1")).payout
    claimed = lifecycle.claim(scheduled, acct("cr-1"), T0, timedelta(seconds=60), rail=rail)
    return lifecycle.mark_sent(claimed.payout, "tr_1").payout


@pytest.mark.parametrize("code", list(HoldCode))
def test_every_hold_reason_has_words_and_what_to_do(code: HoldCode) -> None:
    held = new_payout("deal-1", "cr-1", None).payout
    secret = "creator@private.example"
    held = replace(held, hold=Hold(code, f"raw reason quoting {secret}"))
    view = payout_view(held, {"dl-1": T0}, _events(held, "held"))
    assert view.status == "Held" and view.tone == "wait"
    assert view.action is HOLD_ACTIONS[code]
    assert view.action.title and view.action.what_to_do
    assert secret not in repr(view)


def test_a_creator_has_something_to_do_only_where_they_can() -> None:
    theirs = {c for c, action in HOLD_ACTIONS.items() if action.needs_you}
    assert theirs == {HoldCode.NO_ACCOUNT, HoldCode.TAX_FORM, HoldCode.RAIL_UNAVAILABLE}


def test_a_sent_payout_expects_its_rails_usual_arrival() -> None:
    sent = _sent("wise")
    view = payout_view(sent, {"dl-1": T0}, _events(sent, "scheduled", "sent"))
    assert view.status == "Sent" and view.rail == "Wise" and view.reference == "tr_1"
    assert view.expected_arrival == T0 + timedelta(minutes=1) + TYPICAL_ARRIVAL["wise"]
    assert [s.label for s in view.steps] == [
        "Work confirmed",
        "Payout scheduled",
        "Sent",
        "Arrived in your account",
    ]
    assert [s.state for s in view.steps] == ["done", "done", "current", "next"]
    assert [s.current for s in view.steps] == [False, False, True, False]


def test_a_failure_after_sending_is_a_return() -> None:
    sent = _sent("stripe")
    came_back = lifecycle.returned(sent, "account closed: acct_private_9").payout
    view = payout_view(came_back, {}, _events(came_back, "scheduled", "sent", "failed"))
    assert view.status == "Returned" and view.action is RETURNED_ACTION
    assert view.steps[-3].label == "Returned" and view.steps[-3].state == "problem"
    assert "acct_private_9" not in repr(view)

    scheduled = new_payout("deal-1", "cr-1", acct("cr-1")).payout
    failed = replace(scheduled, status="failed", failure_reason="refused")
    assert payout_view(failed, {}, _events(failed, "scheduled", "failed")).action is FAILED_ACTION


def test_deals_come_newest_first_and_clawbacks_say_what_they_took_back() -> None:
    old = new_payout("deal-old", "cr-1", acct("cr-1")).payout
    new = new_payout("deal-new", "cr-1", acct("cr-1")).payout
    clawback = replace(new, payout_id="po_claw", kind="clawback")
    events = [
        StatusEvent(old.payout_id, "scheduled", T0),
        StatusEvent(new.payout_id, "scheduled", T0 + timedelta(days=1)),
    ]
    views = deal_views([old, new, clawback], {"deal-old": {"dl-1": T0}}, events)
    assert [d.deal_id for d in views] == ["deal-new", "deal-old"]
    assert [p.payout_id for d in views for p in d.payouts] == [new.payout_id, old.payout_id]
    assert views[1].confirmed == (("dl-1", T0),)
    # A clawback sends nothing: its deal says what it took back, which later payouts repay.
    assert [d.taken_back for d in views] == [(clawback.creator_share,), ()]


def test_a_payout_waiting_out_a_cool_off_says_when_it_is_paid() -> None:
    until = T0 + timedelta(hours=24)
    held = new_payout("deal-1", "cr-1", acct("cr-1")).payout
    cooling = replace(held, status="held", hold=Hold(HoldCode.DESTINATION_COOLOFF, "raw"))
    view = payout_view(cooling, {"dl-1": T0}, _events(cooling, "held"), until)
    assert view.action is HOLD_ACTIONS[HoldCode.DESTINATION_COOLOFF]
    assert view.waits_until == until
    # Another hold, or none, waits for something else: no time is promised.
    funds = replace(cooling, hold=Hold(HoldCode.AWAITING_FUNDS, "raw"))
    assert payout_view(funds, {"dl-1": T0}, _events(funds, "held"), until).waits_until is None
    [deal] = deal_views([cooling, funds], {"deal-1": {"dl-1": T0}}, [], until)
    assert [p.waits_until for p in deal.payouts] == [until, None]
