"""Creators' payout e-mails over the in-memory store and the fake mailer: what an e-mail says,
one e-mail per status change (replays and restarts add none), what the mail server refuses,
and a sender stopped mid-send (never sent again, counted `unknown`)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, Final

import pytest
from prometheus_client import REGISTRY

from services.payouts.creator_page.timeline import (
    FAILED_ACTION,
    HOLD_ACTIONS,
    RETURNED_ACTION,
    when,
)
from services.payouts.domain.accounts import HoldCode
from services.payouts.notices import Notice, notice_of
from services.payouts.notifications.content import Link, body, message, subject
from services.payouts.notifications.sender import EmailSender
from services.payouts.store.memory import MemoryPayoutsStore
from shared.contract.events.examples import valid_example
from shared.contract.money import Money
from tests.unit.payouts.builders import T0, account, confirmed, deal_signed, uid
from tests.unit.payouts.fake_mailer import FakeMailer
from tests.unit.payouts.harness import Harness

SENDER: Final = "CreatorFlow <payouts@creatorflow.test>"
LEASE: Final = timedelta(seconds=90)
LINK: Final = Link("https://pay.creatorflow.test/c/link/TOKEN", T0 + timedelta(minutes=15))


def notice(**changes: Any) -> Notice:
    base = Notice(
        event_id="ev-1",
        payout_id="po-deal-1-fee",
        creator_id="cr-1",
        status="sent",
        amount=Money.of("414.68", "EUR"),
        converted=True,
        changed_at=T0,
        kind="fee",
    )
    return replace(base, **changes)


def emails_counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("creatorflow_payout_emails_total", {"outcome": outcome}) or 0


# What an e-mail says.


def test_an_email_gives_the_status_the_amount_and_the_link() -> None:
    text = body(notice(), LINK)
    assert "Status: Sent" in text and "Amount: 414.68 EUR" in text
    assert LINK.url in text and f"once, until {when(LINK.expires_at)}" in text
    assert subject(notice()) == "your fee payout of 414.68 EUR: sent"
    assert "Action needed" not in text and "Why it waits" not in text


def test_a_held_payout_says_in_the_pages_words_what_the_creator_must_do() -> None:
    held = notice(status="held", hold_code=HoldCode.TAX_FORM.value)
    action = HOLD_ACTIONS[HoldCode.TAX_FORM]
    text = body(held, LINK)
    assert f"Action needed: {action.title}" in text and action.what_to_do in text
    assert subject(held).startswith("Action needed: ")
    waiting = body(notice(status="held", hold_code=HoldCode.FX_RATE.value), LINK)
    assert f"Why it waits: {HOLD_ACTIONS[HoldCode.FX_RATE].title}" in waiting


def test_a_payout_held_by_a_cool_off_says_when_it_is_paid() -> None:
    until = T0 + timedelta(hours=24)
    cooling = notice(status="held", hold_code=HoldCode.DESTINATION_COOLOFF.value)
    assert f"Paid from {when(until)}." in body(cooling, LINK, until)
    assert "Paid from" not in body(cooling, LINK)  # the cool-off is over: nothing to promise
    funds = notice(status="held", hold_code=HoldCode.AWAITING_FUNDS.value)
    assert "Paid from" not in body(funds, LINK, until)


def test_a_payout_not_converted_yet_says_its_amount_is_before_conversion() -> None:
    text = body(notice(status="held", amount=Money.of("405.00", "USD"), converted=False), LINK)
    assert (
        "Amount: 405.00 USD (before conversion to your currency, at the rates in force when "
        "your work was confirmed)"
    ) in text


def test_a_failure_after_sending_is_a_return_and_says_what_to_do() -> None:
    assert RETURNED_ACTION.what_to_do in body(notice(status="failed", returned=True), LINK)
    assert FAILED_ACTION.what_to_do in body(notice(status="failed"), LINK)
    assert "Status: Arrived" in body(notice(status="settled"), LINK)


def test_a_clawback_says_commission_was_taken_back_and_how_it_is_repaid() -> None:
    settled = valid_example("payout.settled")
    data = settled.data.model_copy(
        update={
            "kind": "clawback",
            "gross": Money.of("50.00", "USD"),
            "platform_fee": Money.of("1.25", "USD"),
            "net": None,
            "fx_rate": None,
            "fx_as_of": None,
            "fx_source": None,
            "provider_ref": None,
        }
    )
    told = notice_of(settled.model_copy(update={"data": data}), hold_code=None,
                     previous_status=None)  # fmt: skip
    assert told is not None and told.amount == Money.of("48.75", "USD")  # the creator's share
    text = body(told, LINK)
    assert "Status: Commission taken back after a refund" in text
    assert "Amount: 48.75 USD (repaid from your next payouts in this currency; nothing is " in text
    assert "Arrived" not in text and "before conversion" not in text
    assert subject(told).startswith("commission taken back: 48.75 USD, repaid from your next")


def test_the_message_id_is_the_same_for_the_same_change_and_differs_between_changes() -> None:
    first = message(notice(), LINK, sender=SENDER, to="jane@example.test", now=T0)
    again = message(notice(), LINK, sender=SENDER, to="jane@example.test", now=T0 + LEASE)
    other = message(
        notice(status="settled", event_id="ev-2"), LINK, sender=SENDER, to="j@x.test", now=T0
    )
    assert first["Message-ID"] == again["Message-ID"] != other["Message-ID"]
    assert str(first["Message-ID"]).endswith("@creatorflow.test>")
    assert "po-deal-1-fee" not in str(first["Message-ID"])
    assert (first["To"], first["From"]) == ("jane@example.test", SENDER)


# Sending.


class Emails:
    """The payouts service over the in-memory store, with its e-mail sender and a fake
    mail server; `links` are the links issued, in order."""

    def __init__(self) -> None:
        self.h = Harness()
        self.mailer = FakeMailer()
        self.links: list[str] = []
        self.sender = self.new_sender()

    def new_sender(self, **options: Any) -> EmailSender:
        """A sender as a restarted service gets: same store and server, a new process."""
        return EmailSender(
            self.h.db,
            self.mailer,
            self._issue,
            sender=SENDER,
            clock=self.h.clock,
            lease=LEASE,
            **options,
        )

    async def _issue(self, creator_id: str, now: datetime) -> Link:
        url = f"https://pay.creatorflow.test/c/link/{creator_id}-{len(self.links)}"
        self.links.append(url)
        return Link(url, now + timedelta(minutes=15))

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.mailer.messages if m["To"] == address]

    def states(self, db: MemoryPayoutsStore) -> list[str]:
        return [r.state for r in db.state.emails.values()]


async def paid_creator(e: Emails, address: str | None) -> tuple[str, list[Any]]:
    """A creator (with `address`, if any) whose fee becomes scheduled; the events used."""
    deal, creator = uid("deal"), uid("cr")
    events = [
        account(creator, currency="USD", email=address),
        deal_signed(deal, creator),
        confirmed(deal, "dl-1"),
        confirmed(deal, "dl-2"),
    ]
    await e.h.consume(*events)
    return creator, events


async def test_scheduled_sent_settled_gives_one_email_per_change_and_replays_add_none() -> None:
    e = Emails()
    address = f"{uid('jane')}@example.test"
    sent_before = emails_counted("sent")
    _, events = await paid_creator(e, address)
    assert await e.sender.round() == 1
    await e.h.dispatch_all()
    assert await e.sender.round() == 1
    assert await e.h.settlement.run_once() == 1
    assert await e.sender.round() == 1
    statuses = [str(m["Subject"]).rsplit(": ", 1)[1] for m in e.to(address)]
    assert statuses == ["scheduled", "sent", "arrived"]
    # Each e-mail has its own fresh link.
    assert [e.links[i] in e.to(address)[i].get_content() for i in range(3)] == [True] * 3
    assert len(set(e.links)) == 3
    # The same events again, and a restarted sender: nothing new to send.
    await e.h.consume(*events)
    await e.h.dispatch_all()
    assert await e.h.settlement.run_once() == 0
    assert await e.sender.round() == 0
    assert await e.new_sender().round() == 0
    assert len(e.to(address)) == 3 and e.states(e.h.db) == ["sent"] * 3
    assert emails_counted("sent") - sent_before == 3


async def test_a_creator_without_an_address_gets_no_email_and_is_counted() -> None:
    e = Emails()
    before = emails_counted("no_address")
    await paid_creator(e, None)
    await e.h.dispatch_all()
    assert await e.sender.round() == 0
    assert e.mailer.messages == [] and e.h.db.state.emails == {}
    assert emails_counted("no_address") - before == 2  # scheduled, sent


async def test_a_sender_stopped_while_sending_never_sends_it_again_and_counts_it() -> None:
    e = Emails()
    address = f"{uid('jane')}@example.test"
    unknown_before = emails_counted("unknown")
    await paid_creator(e, address)
    e.mailer.stall = True
    stopped = asyncio.create_task(e.sender.round())
    await e.mailer.stalled.wait()
    assert e.states(e.h.db) == ["sending"]
    stopped.cancel()  # killed between committing `sending` and hearing from the server
    with pytest.raises(asyncio.CancelledError):
        await stopped
    e.mailer.stall = False
    restarted = e.new_sender()
    assert await restarted.round() == 0  # still within its lease: nothing is decided
    assert e.states(e.h.db) == ["sending"]
    e.h.now += LEASE
    assert await restarted.round() == 0
    assert e.states(e.h.db) == ["unknown"] and e.mailer.messages == []
    assert emails_counted("unknown") - unknown_before == 1
    e.h.now += timedelta(hours=1)
    assert await restarted.round() == 0 and e.mailer.messages == []


async def test_a_connection_dropped_after_the_message_left_is_unknown_and_not_resent() -> None:
    e = Emails()
    address = f"drop-{uid('jane')}@example.test"
    unknown_before = emails_counted("unknown")
    await paid_creator(e, address)
    assert await e.sender.round() == 1
    e.h.now += LEASE * 10
    assert await e.sender.round() == 0
    assert len(e.to(address)) == 1 and e.states(e.h.db) == ["unknown"]
    assert emails_counted("unknown") - unknown_before == 1


async def test_a_server_refusing_for_now_is_tried_again_with_backoff_then_given_up() -> None:
    e = Emails()
    e.sender = e.new_sender(max_attempts=3, retry_initial=timedelta(seconds=30))
    failed_before = emails_counted("failed")
    await paid_creator(e, f"later-{uid('jane')}@example.test")
    assert await e.sender.round() == 1
    (row,) = e.h.db.state.emails.values()
    assert (row.state, row.attempts, row.error) == ("pending", 1, "SMTP 451 for the recipient")
    assert row.not_before == e.h.now + timedelta(seconds=30)
    assert await e.sender.round() == 0  # not before its retry time
    e.h.now += timedelta(seconds=30)
    assert await e.sender.round() == 1
    (row,) = e.h.db.state.emails.values()
    assert row.not_before == e.h.now + timedelta(seconds=60)  # doubled
    e.h.now += timedelta(seconds=60)
    assert await e.sender.round() == 1
    (row,) = e.h.db.state.emails.values()
    assert (row.state, row.attempts) == ("failed", 3)
    assert emails_counted("failed") - failed_before == 1
    e.h.now += timedelta(days=1)
    assert await e.sender.round() == 0


async def test_a_recipient_refused_for_good_fails_at_once() -> None:
    e = Emails()
    await paid_creator(e, f"refused-{uid('jane')}@example.test")
    assert await e.sender.round() == 1
    (row,) = e.h.db.state.emails.values()
    assert (row.state, row.attempts, row.error) == ("failed", 1, "SMTP 550 for the recipient")


async def test_a_change_older_than_the_maximum_age_is_not_told() -> None:
    e = Emails()
    address = f"{uid('jane')}@example.test"
    await paid_creator(e, address)
    e.h.now += timedelta(hours=25)
    assert await e.sender.round() == 1
    assert e.mailer.messages == [] and e.states(e.h.db) == ["failed"]


async def test_two_senders_never_send_the_same_email() -> None:
    e = Emails()
    address = f"{uid('jane')}@example.test"
    await paid_creator(e, address)
    await e.h.dispatch_all()
    other = e.new_sender()
    counts = await asyncio.gather(e.sender.round(), other.round(), e.sender.round())
    assert sum(counts) == 2 and len(e.to(address)) == 2
