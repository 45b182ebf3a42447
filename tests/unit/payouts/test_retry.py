"""A failed payout is owed, not lost: retried when the account changes or by an operator,
each attempt a chapter of its own, never paid twice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from services.payouts.domain import lifecycle
from services.payouts.domain.accounts import HoldCode
from services.payouts.domain.ledger import TransferKind, creator_paid, creator_payable, move
from services.payouts.domain.ledger_check import PostedTransfer, ledger_problems
from services.payouts.domain.lifecycle import InvalidTransition
from services.payouts.handlers import PayoutNotFound, PendingChanges, retry_payout
from services.payouts.providers import (
    ProviderError,
    Settlement,
    TransferAccepted,
    TransferRequest,
)
from shared.contract.money import Money
from tests.unit.payouts import builders
from tests.unit.payouts.builders import account, confirmed, deal_signed, uid, with_fundings
from tests.unit.payouts.harness import Harness
from tests.unit.payouts.store_contract import LONG_AGO, acct, new_payout

CLOSED = "acct_closed_destination"


class _Rail:
    """Pays any destination but a closed one (a final refusal); can report transfers returned
    and answers the first `timeouts` calls of a key with a timeout after paying."""

    name = "rail"

    def __init__(self, *, timeouts: int = 0) -> None:
        self.paid: dict[str, TransferRequest] = {}  # by idempotency key
        self.calls: list[str] = []
        self.returned: set[str] = set()
        self._timeouts = timeouts
        self.lookups: list[str] = []
        self.lookup_fails = False

    async def send(self, request: TransferRequest) -> TransferAccepted:
        self.calls.append(request.idempotency_key)
        if request.destination.get_secret_value() == CLOSED:
            raise ProviderError("rail: account_closed (400)", retryable=False)
        replayed = request.idempotency_key in self.paid
        self.paid.setdefault(request.idempotency_key, request)
        if self._timeouts:
            self._timeouts -= 1
            raise ProviderError("rail: timeout", retryable=True)
        return TransferAccepted("tr_" + request.idempotency_key, replayed=replayed)

    async def lookup(self, request: TransferRequest) -> TransferAccepted | None:
        self.lookups.append(request.idempotency_key)
        if self.lookup_fails or request.idempotency_key not in self.paid:
            if self.lookup_fails:
                raise ProviderError("rail: lookup timeout", retryable=True)
            return None
        return TransferAccepted("tr_" + request.idempotency_key, replayed=True)

    async def settlement(self, provider_ref: str) -> Settlement:
        if provider_ref in self.returned:
            return Settlement("failed", "rail: returned by the bank (R03)")
        return Settlement("settled")

    async def aclose(self) -> None:
        return None


def _harness(rail: _Rail, **changes: object) -> Harness:
    h = Harness()
    h.reconfigure(**changes)
    h.use(rail)
    return h


async def _deal(h: Harness, destination: str) -> tuple[str, str]:
    deal, creator = uid("deal"), uid("cr")
    await h.consume(
        account(creator, currency="USD", destination=destination, time=h.now),
        deal_signed(deal, creator),
    )
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.dispatch_all()
    return deal, creator


def _booked(h: Harness) -> list[str]:
    """The ledger's transfers but the brand's funding, each by its step (`dispatch:2`: the
    dispatch of the second attempt)."""
    return [t.transfer_id.split(":", 1)[1] for t in h.db.state.transfers if t.kind != "funding"]


def _paid_once(h: Harness, creator: str) -> None:
    """The creator was paid the 450.00 USD fee, once, and the ledger is sound."""
    assert _paid(h, creator) == {(creator_paid(creator), "USD"): Decimal("450.00")}
    assert h.problems() == []


def _paid(h: Harness, creator: str) -> dict[tuple[str, str], Decimal]:
    balances: dict[tuple[str, str], Decimal] = {}
    for transfer in h.db.state.transfers:
        for posting in transfer.postings:
            if posting.account in (creator_paid(creator), creator_payable(creator)):
                key = (posting.account, posting.amount.currency)
                balances[key] = balances.get(key, Decimal(0)) + posting.amount.amount
    return {k: v for k, v in balances.items() if v}


async def test_a_refused_payout_is_sent_once_the_creator_fixes_the_account() -> None:
    rail = _Rail()
    h = _harness(rail)
    deal, creator = await _deal(h, CLOSED)
    [failed] = h.payouts(deal)
    assert failed.status == "failed" and not failed.in_doubt
    # A new destination with money owed waits out the cool-off, as for any payout in flight.
    h.now += timedelta(minutes=5)
    await h.consume(account(creator, currency="USD", destination="acct_new", time=h.now))
    [held] = h.payouts(deal)
    assert held.status == "held" and held.hold is not None
    assert held.hold.code is HoldCode.DESTINATION_COOLOFF and held.chapter == 2
    h.now += timedelta(days=1)
    await h.cool_offs.run_once()
    await h.dispatch_all()
    await h.settlement.run_once()
    [paid] = h.payouts(deal)
    assert paid.status == "settled" and paid.chapter == 2
    assert list(rail.paid) == [f"{paid.payout_id}-attempt-2"]  # a new key, paid once
    assert rail.calls == [paid.payout_id, f"{paid.payout_id}-attempt-2"]
    assert h.statuses(deal) == [
        "payout.scheduled",
        "payout.failed",
        "payout.held",
        "payout.scheduled",
        "payout.sent",
        "payout.settled",
    ]
    assert _booked(h) == ["accrual", "dispatch:2", "settlement:2"]
    _paid_once(h, creator)


async def test_a_returned_payout_reverses_once_and_books_again_in_a_new_chapter() -> None:
    rail = _Rail()
    h = _harness(rail)
    deal, creator = await _deal(h, "acct_first")
    [sent] = h.payouts(deal)
    assert sent.provider_ref is not None
    rail.returned.add(sent.provider_ref)
    await h.settlement.run_once()
    await h.settlement.run_once()  # asked again: the return is posted once
    [returned] = h.payouts(deal)
    assert returned.status == "failed" and "R03" in (returned.failure_reason or "")
    assert _paid(h, creator) == {(creator_payable(creator), "USD"): Decimal("450.00")}
    # The same destination sent again (its bank account fixed): no cool-off, sent at once.
    await h.consume(account(creator, currency="USD", destination="acct_first", time=h.now))
    await h.dispatch_all()
    await h.settlement.run_once()
    [paid] = h.payouts(deal)
    assert paid.status == "settled" and paid.chapter == 2
    assert list(rail.paid) == [paid.payout_id, f"{paid.payout_id}-attempt-2"]
    assert _booked(h) == ["accrual", "dispatch", "return", "dispatch:2", "settlement:2"]
    _paid_once(h, creator)


async def test_a_payout_owed_again_is_paid_in_the_currency_the_creator_changed_to() -> None:
    """Returned in USD, then the creator's account says EUR: the share is converted again at
    the rate locked when the work was confirmed (not today's), under a new key."""
    rail = _Rail()
    h = _harness(rail)
    await h.consume(builders.fx({"EUR": "0.9215"}, as_of=builders.T0 - timedelta(hours=1)))
    deal, creator = await _deal(h, "acct_first")
    [sent] = h.payouts(deal)
    assert sent.net == Money.of("450.00", "USD")
    rail.returned.add(sent.provider_ref or "")
    await h.settlement.run_once()
    await h.consume(builders.fx({"EUR": "0.95"}, as_of=h.now))  # today's rate: not the one owed
    await h.consume(account(creator, currency="EUR", destination="acct_first", time=h.now))
    await h.dispatch_all()
    await h.settlement.run_once()
    [paid] = h.payouts(deal)
    assert paid.status == "settled" and paid.chapter == 2
    assert paid.net == Money.of("414.68", "EUR") and paid.fx is not None
    assert paid.fx.rate == Decimal("0.9215")
    sent_again = rail.paid[f"{paid.payout_id}-attempt-2"]
    assert sent_again.amount == Money.of("414.68", "EUR")
    assert _booked(h) == [
        "accrual",
        "dispatch",
        "return",
        "reconversion:2",
        "dispatch:2",
        "settlement:2",
    ]
    assert _paid(h, creator) == {(creator_paid(creator), "EUR"): Decimal("414.68")}
    assert h.problems() == []


async def test_a_payout_waiting_out_a_cool_off_is_converted_again_when_released() -> None:
    rail = _Rail()
    h = _harness(rail)
    await h.consume(builders.fx({"EUR": "0.9215"}, as_of=builders.T0 - timedelta(hours=1)))
    deal, creator = await _deal(h, CLOSED)
    h.now += timedelta(minutes=5)
    await h.consume(account(creator, currency="EUR", destination="acct_new", time=h.now))
    [held] = h.payouts(deal)
    assert held.hold is not None and held.hold.code is HoldCode.DESTINATION_COOLOFF
    h.now += timedelta(days=1)
    await h.cool_offs.run_once()
    await h.dispatch_all()
    [sent] = h.payouts(deal)
    assert sent.status == "sent" and sent.net == Money.of("414.68", "EUR")
    assert [r.amount for r in rail.paid.values()] == [Money.of("414.68", "EUR")]
    assert _booked(h) == ["accrual", "reconversion:3", "dispatch:3"]
    assert h.problems() == []


async def test_a_payout_given_up_on_timeouts_is_retried_under_the_same_key() -> None:
    # The rail paid on the first call, but every answer was lost, and so were the lookups
    # that followed: a new key would pay twice.
    rail = _Rail(timeouts=3)
    rail.lookup_fails = True
    h = _harness(rail)
    deal, creator = uid("deal"), uid("cr")
    await h.consume(account(creator, currency="USD", time=h.now), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    for _ in range(3):
        await h.dispatch_all()
        h.now += timedelta(seconds=10)
    [failed] = h.payouts(deal)
    assert failed.status == "failed" and failed.in_doubt
    async with h.db.transaction() as repo:
        changes = PendingChanges(repo, h.policy, h.now)
        retried = await retry_payout(changes, failed.payout_id)
        await changes.flush()
    assert retried.status == "scheduled" and retried.chapter == 1
    rail.lookup_fails = False
    await h.dispatch_all()
    [sent] = h.payouts(deal)
    assert sent.status == "sent" and list(rail.paid) == [sent.payout_id]
    # Sent once; every later attempt asked the rail first, the last one found it.
    assert rail.calls == [sent.payout_id] and len(rail.lookups) == 3
    assert h.problems() == []


async def test_an_operator_retry_names_what_cannot_be_retried() -> None:
    h = _harness(_Rail())
    deal, _ = await _deal(h, "acct_fine")
    [sent] = h.payouts(deal)
    async with h.db.transaction() as repo:
        changes = PendingChanges(repo, h.policy, h.now)
        with pytest.raises(PayoutNotFound):
            await retry_payout(changes, "po_nope")
        with pytest.raises(InvalidTransition, match="is sent, not failed"):
            await retry_payout(changes, sent.payout_id)


async def test_an_account_update_leaves_payouts_that_did_not_fail_alone() -> None:
    rail = _Rail()
    h = _harness(rail)
    deal, creator = await _deal(h, "acct_fine")
    before = h.payouts(deal)
    await h.consume(account(creator, currency="USD", destination="acct_fine", time=h.now))
    await h.dispatch_all()
    assert h.payouts(deal) == before and len(rail.calls) == 1


def test_the_ledger_check_finds_a_return_its_attempt_never_dispatched() -> None:
    creator = uid("cr")
    created = new_payout(uid("deal"), creator, acct(creator))
    sent = lifecycle.mark_sent(created.payout, "tr_1")
    back = lifecycle.returned(sent.payout, "returned")
    again = lifecycle.retry(back.payout, acct(creator), LONG_AGO)
    history = with_fundings(
        [
            PostedTransfer(t.transfer_id, t.payout_id, t.kind, t.postings)
            for step in (created, sent, back, again)
            for t in step.transfers
        ]
    )
    assert again.payout.chapter == 2
    assert ledger_problems([again.payout], history) == []
    # A second return of attempt 2, which sent nothing yet: balances would still add up if a
    # dispatch were lost, so the check looks at each attempt's steps too.
    assert sent.payout.net is not None
    [stray] = move(
        sent.payout.payout_id,
        TransferKind.RETURN,
        (creator_payable(creator), creator_paid(creator), sent.payout.net),
        chapter=3,
    )
    problems = ledger_problems(
        [again.payout],
        [*history, PostedTransfer(stray.transfer_id, stray.payout_id, "return", stray.postings)],
    )
    assert any("return of attempt 3 that dispatched nothing" in p for p in problems)
    assert any("beyond its attempt 2" in p for p in problems)
