"""The service layer over the in-memory store: when payouts are created, held, released, sent."""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from decimal import Decimal
from typing import get_args

import pytest

from services.payouts import translate
from services.payouts.domain.accounts import HoldCode
from services.payouts.domain.ledger import TransferKind
from services.payouts.domain.terms import Confirmation, PayoutKind
from services.payouts.handlers import PayoutPolicy, PendingChanges
from services.payouts.providers.base import (
    ProviderError,
    Settlement,
    TransferAccepted,
    TransferRequest,
)
from services.payouts.schedules import SettlementPoller
from services.payouts.store.memory import MemoryPayoutsStore
from shared.contract.errors import EventRejected
from shared.contract.events.vocabulary import PAYOUT_HOLD_CODES, PAYOUT_KINDS
from shared.contract.money import Money
from tests.unit.payouts.builders import (
    T0,
    account,
    attribution,
    confirmed,
    deal_signed,
    fx,
    uid,
)
from tests.unit.payouts.harness import Harness

RATES = {"EUR": "0.9215", "JPY": "151.32", "KWD": "0.3071"}


async def test_fee_is_paid_once_when_every_deliverable_is_confirmed() -> None:
    h = Harness(platform_fee_bps=1000)
    deal, creator = uid("deal"), uid("cr")
    await h.consume(fx(RATES), account(creator), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1"))
    assert h.payouts(deal) == []
    await h.consume(confirmed(deal, "dl-2"), confirmed(deal, "dl-2"))
    await h.consume(confirmed(deal, "dl-2"), confirmed(deal, "dl-1"))  # new ids, same facts
    [payout] = h.payouts(deal)
    assert payout.status == "scheduled" and h.wakes == 1
    assert payout.net == Money.of("373.21", "EUR")  # (450 - 45) x 0.9215 = 373.2075
    await h.dispatch_all()
    assert h.provider.calls == 1
    assert h.statuses(deal) == ["payout.scheduled", "payout.sent"]
    assert h.problems() == []


async def test_confirmation_before_the_deal_and_replayed_events() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    events = [
        confirmed(deal, "dl-2"),
        confirmed(deal, "dl-1"),
        account(creator, currency="USD"),
        deal_signed(deal, creator),
    ]
    await h.consume(*events)
    await h.consume(*events)  # replay: the inbox makes it a no-op
    [payout] = h.payouts(deal)
    assert payout.net == Money.of("450.00", "USD") and payout.fx is not None
    assert payout.fx.rate == 1
    assert h.statuses(deal) == ["payout.scheduled"]


async def test_unknown_deliverable_of_a_known_deal_is_rejected() -> None:
    h = Harness()
    deal = uid("deal")
    await h.consume(deal_signed(deal, uid("cr")))
    with pytest.raises(EventRejected, match="'dl-9' is not a deliverable"):
        await h.consume(confirmed(deal, "dl-9"))


async def test_held_without_account_released_by_the_account_event_and_paid_once() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    await h.consume(fx(RATES), deal_signed(deal, creator), confirmed(deal, "dl-1"))
    await h.consume(confirmed(deal, "dl-2"))
    [held] = h.payouts(deal)
    assert held.status == "held" and held.hold is not None
    assert held.hold.code == HoldCode.NO_ACCOUNT
    await h.dispatch_all()
    assert h.provider.calls == 0
    await h.consume(account(creator, status="pending"))
    assert h.payouts(deal)[0].hold.code == HoldCode.TAX_FORM  # type: ignore[union-attr]
    await h.consume(account(creator, currency="JPY", time=T0 + timedelta(hours=1)))
    [released] = h.payouts(deal)
    assert released.status == "scheduled" and released.net == Money(68094, "JPY")
    await h.dispatch_all()
    await h.consume(account(creator, currency="JPY", time=T0 + timedelta(hours=2)))
    await h.dispatch_all()
    assert h.provider.calls == 1
    # Held for the account, then for the tax form (each announced), then paid.
    assert h.statuses(deal) == ["payout.held", "payout.held", "payout.scheduled", "payout.sent"]
    holds = [e.data.hold_code for e in h.db.state.outbox if e.data.status == "held"]
    assert holds == ["no_account", "tax_form"]
    assert h.problems() == []


async def test_a_held_payout_says_why_as_a_code_and_no_other_status_carries_one() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    await h.consume(fx(RATES), deal_signed(deal, creator), confirmed(deal, "dl-1"))
    await h.consume(confirmed(deal, "dl-2"))
    await h.consume(account(creator, currency="USD"))
    await h.dispatch_all()
    [payout] = h.payouts(deal)
    codes = [(e.type, e.data.hold_code) for e in h.events_of(payout.payout_id)]
    assert codes == [
        ("payout.held", "no_account"),
        ("payout.scheduled", None),
        ("payout.sent", None),
    ]


def test_every_hold_code_and_payout_kind_of_the_service_is_one_the_contract_names() -> None:
    # A new hold or kind must be added to the contract too, or its payout events could not
    # be published.
    assert {code.value for code in HoldCode} == set(PAYOUT_HOLD_CODES)
    assert set(get_args(PayoutKind)) == set(PAYOUT_KINDS)


async def test_older_account_event_does_not_overwrite_a_newer_one() -> None:
    h = Harness()
    creator = uid("cr")
    await h.consume(account(creator, currency="USD", time=T0 + timedelta(hours=2)))
    await h.consume(account(creator, currency="EUR", time=T0))
    assert h.db.state.accounts[creator].currency == "USD"


async def test_held_for_a_missing_rate_until_the_fx_snapshot_has_it() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    await h.consume(account(creator, currency="BHD"), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    [held] = h.payouts(deal)
    assert held.hold is not None and held.hold.code == HoldCode.FX_RATE
    await h.consume(fx({"EUR": "0.9"}))
    assert h.payouts(deal)[0].status == "held"
    await h.consume(fx({"BHD": "0.376"}, as_of=T0 + timedelta(hours=1)))
    [released] = h.payouts(deal)
    assert released.net == Money(Decimal("169.200"), "BHD")
    assert released.fx is not None and released.fx.as_of == T0 + timedelta(hours=1)


async def test_per_deliverable_milestones_are_paid_as_each_is_confirmed() -> None:
    h = Harness(fee_schedule="per_deliverable")
    deal, creator = uid("deal"), uid("cr")
    fee = Money.of("100.00", "USD")
    await h.consume(account(creator, currency="USD"), deal_signed(deal, creator, fee=fee))
    await h.consume(confirmed(deal, "dl-2"))
    [first] = h.payouts(deal)
    assert (first.milestone, first.gross) == ("dl-2", Money.of("75.00", "USD"))
    await h.consume(confirmed(deal, "dl-1"))
    assert sorted(p.gross.amount for p in h.payouts(deal)) == [Decimal("25.00"), Decimal("75.00")]


async def test_commission_after_the_window_from_the_latest_attribution() -> None:
    h = Harness(platform_fee_bps=250)
    deal, creator = uid("deal"), uid("cr")
    ends = T0
    await h.consume(
        account(creator, currency="USD"),
        deal_signed(deal, creator, ends_at=ends, window_days=10),
        attribution(deal, creator, Money.of("900.00", "USD"), ends + timedelta(days=5)),
        attribution(deal, creator, Money.of("100.00", "USD"), ends + timedelta(days=1)),  # older
    )
    h.now = ends + timedelta(days=9)
    assert await h.commissions.run_once() == 0
    h.now = ends + timedelta(days=10)
    assert await h.commissions.run_once() == 1
    [payout] = [p for p in h.payouts(deal) if p.kind == "commission"]
    assert payout.gross == Money.of("90.00", "USD")
    assert payout.platform_fee == Money.of("2.25", "USD")
    assert await h.commissions.run_once() == 0  # decided once
    await h.dispatch_all()
    assert [p.status for p in h.payouts(deal)] == ["sent"]


async def test_provider_outage_is_retried_with_backoff_then_fails() -> None:
    h = Harness(failure_rate=1.0, max_attempts=3)
    deal, creator = uid("deal"), uid("cr")
    await h.consume(account(creator, currency="USD"), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.dispatch_all()
    [payout] = h.payouts(deal)
    assert payout.status == "scheduled" and payout.attempts == 1
    assert payout.next_attempt_at == h.now + timedelta(seconds=1)
    h.now += timedelta(seconds=1)
    await h.dispatch_all()
    assert h.payouts(deal)[0].next_attempt_at == h.now + timedelta(seconds=2)
    h.now += timedelta(seconds=2)
    await h.dispatch_all()
    [failed] = h.payouts(deal)
    assert failed.status == "failed" and "gave up after 3 attempts" in (failed.failure_reason or "")
    assert h.provider.calls == 3
    assert h.statuses(deal) == ["payout.scheduled", "payout.failed"]
    assert h.problems() == []


class _Flaky:
    """Accepts the transfer but the answer is lost once (as on a network timeout)."""

    name = "flaky"

    def __init__(self) -> None:
        self.accepted: dict[str, TransferRequest] = {}
        self.lost = 0
        self.sends = 0
        self.lookups = 0

    async def send(self, request: TransferRequest) -> TransferAccepted:
        self.sends += 1
        first = request.idempotency_key not in self.accepted
        self.accepted.setdefault(request.idempotency_key, request)
        if first:
            self.lost += 1
            raise ProviderError("flaky: timeout", retryable=True)
        return TransferAccepted("tr_" + request.idempotency_key, replayed=True)

    async def lookup(self, request: TransferRequest) -> TransferAccepted | None:
        self.lookups += 1
        if request.idempotency_key not in self.accepted:
            return None
        return TransferAccepted("tr_" + request.idempotency_key, replayed=True)

    async def settlement(self, provider_ref: str) -> Settlement:
        return Settlement("settled")

    async def aclose(self) -> None:
        return None


async def test_lost_answer_is_looked_up_not_sent_again() -> None:
    h = Harness()
    flaky = _Flaky()
    h.use(flaky)
    deal, creator = uid("deal"), uid("cr")
    await h.consume(account(creator, currency="USD"), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.dispatch_all()
    h.now += timedelta(seconds=1)
    await h.dispatch_all()
    [payout] = h.payouts(deal)
    assert payout.status == "sent" and list(flaky.accepted) == [payout.payout_id]
    assert payout.provider_ref == "tr_" + payout.payout_id
    # The answer was lost: the second attempt asked the rail and found the transfer.
    assert (flaky.sends, flaky.lookups) == (1, 1) and not payout.in_doubt


async def test_settlement_moves_sent_payouts_to_settled() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    await h.consume(account(creator, currency="USD"), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.dispatch_all()
    assert await h.settlement.run_once() == 1
    assert h.statuses(deal) == ["payout.scheduled", "payout.sent", "payout.settled"]
    assert h.problems() == []


class _SlowToSettle(_Flaky):
    """Pays at once and says "pending" until `settles_after` questions were asked."""

    def __init__(self, settles_after: int) -> None:
        super().__init__()
        self.questions = 0
        self.settles_after = settles_after

    async def settlement(self, provider_ref: str) -> Settlement:
        self.questions += 1
        return Settlement("settled" if self.questions > self.settles_after else "pending")


async def test_a_pending_payout_is_asked_about_at_doubling_intervals_until_it_settles() -> None:
    h = Harness()
    rail = _SlowToSettle(settles_after=3)
    h.use(rail)
    deal, creator = uid("deal"), uid("cr")
    await h.consume(account(creator, currency="USD"), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.dispatch_all()
    h.now += timedelta(seconds=1)
    await h.dispatch_all()  # the first answer was lost: the transfer is found now
    asked_at = []
    start = h.now
    for second in range(12):
        h.now = start + timedelta(seconds=second)
        if await h.settlement.run_once():
            asked_at.append(second)
    # Asked at once, then 1, 2 and 4 seconds later (the poller's interval is 1 s here).
    assert asked_at == [0, 1, 3, 7]
    assert h.statuses(deal)[-1] == "payout.settled"
    assert h.problems() == []


class _SlowAnswer(_Flaky):
    """Pays at once; its first settlement question is answered only once `answer` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.questions = 0
        self.asked = asyncio.Event()
        self.answer = asyncio.Event()

    async def settlement(self, provider_ref: str) -> Settlement:
        self.questions += 1
        if self.questions == 1:
            self.asked.set()
            await self.answer.wait()
        return Settlement("settled")


async def test_a_payout_being_asked_about_is_not_asked_again_by_another_replica() -> None:
    h = Harness()
    rail = _SlowAnswer()
    h.use(rail)
    deal, creator = uid("deal"), uid("cr")
    await h.consume(account(creator, currency="USD"), deal_signed(deal, creator))
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.dispatch_all()
    h.now += timedelta(seconds=1)
    await h.dispatch_all()  # the first answer was lost: the transfer is found now
    other_replica = SettlementPoller(h.db, rail, h.policy, interval_seconds=1, clock=h.clock)
    asking = asyncio.create_task(h.settlement.run_once())
    await rail.asked.wait()
    # The rail has not answered yet; the other replica's round finds nothing due.
    assert await other_replica.run_once() == 0
    rail.answer.set()
    assert await asking == 1
    assert rail.questions == 1
    assert h.statuses(deal)[-1] == "payout.settled"
    assert h.problems() == []


async def test_status_events_never_carry_the_destination() -> None:
    h = Harness()
    deal, creator = uid("deal"), uid("cr")
    secret = "acct_very_secret_destination"
    await h.consume(
        account(creator, currency="USD", destination=secret), deal_signed(deal, creator)
    )
    await h.consume(confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
    await h.dispatch_all()
    assert h.db.state.outbox
    assert all(secret not in e.model_dump_json() for e in h.db.state.outbox)
    assert secret not in repr(h.db.state.accounts[creator])


@pytest.mark.parametrize("schedule", ["on_completion", "per_deliverable"])
async def test_a_batch_pays_as_its_events_one_batch_each(schedule: str) -> None:
    """The consumer reads a batch's deals, confirmations and accounts once and writes its
    confirmations and payouts together: the payouts, their events and the ledger are those of
    the same events applied one per batch."""
    creator, late_creator = uid("cr"), uid("cr")
    deal, late_deal, unsigned = uid("deal"), uid("deal"), uid("deal")
    earlier = T0 - timedelta(hours=1)
    events = [
        fx(RATES),
        account(creator),
        deal_signed(deal, creator, deliverables=(("dl-1", 1), ("dl-2", 1))),
        confirmed(deal, "dl-1"),
        confirmed(deal, "dl-1", at=earlier),  # re-sent earlier: the first one kept counts
        confirmed(late_deal, "dl-2", at=earlier),  # before its deal
        confirmed(unsigned, "dl-1"),  # a deal never signed
        confirmed(deal, "dl-2", at=T0 + timedelta(minutes=5)),
        deal_signed(late_deal, late_creator, deliverables=(("dl-1", 1), ("dl-2", 1))),
        confirmed(late_deal, "dl-1"),
        account(late_creator, currency="JPY"),
        confirmed(deal, "dl-2", at=earlier),  # the deal is paid already
    ]
    together, alone = Harness(fee_schedule=schedule), Harness(fee_schedule=schedule)
    await together.consume(*events)
    for event in events:
        await alone.consume(event)

    def paid(h: Harness) -> set[tuple[object, ...]]:
        return {
            (p.payout_id, p.milestone, p.status, p.gross, p.net, p.fx_at, p.hold)
            for p in h.payouts()
        }

    assert paid(together) == paid(alone)
    assert len(paid(together)) == (4 if schedule == "per_deliverable" else 2)
    assert [(e.type, e.data.payout_id) for e in together.db.state.outbox] == [
        (e.type, e.data.payout_id) for e in alone.db.state.outbox
    ]

    def ledger(h: Harness) -> Counter[tuple[object, ...]]:
        # The harness's fundings of each brand have ids of their own.
        return Counter(
            (t.kind, "" if t.kind == TransferKind.FUNDING else t.payout_id, t.postings)
            for t in h.db.state.transfers
        )

    assert ledger(together) == ledger(alone)
    assert together.problems() == [] and alone.problems() == []
    first = {p.milestone: p.fx_at for p in together.payouts(deal)}
    assert first == (
        {"dl-1": T0, "dl-2": T0 + timedelta(minutes=5)}
        if schedule == "per_deliverable"
        else {"": T0 + timedelta(minutes=5)}
    )


async def test_confirmations_read_ahead_count_as_the_stores_own() -> None:
    """Which confirmations count, read ahead and kept in memory, is what the store counts
    once they are written: the first of each signer, unsigned or by the deal's brand."""
    db = MemoryPayoutsStore()
    deal, unknown = uid("deal"), uid("deal")
    terms = translate.deal_terms(deal_signed(deal, uid("cr")).data, "on_completion")
    rival = replace(terms, brand_id="br-rival")
    at = [T0 + timedelta(minutes=m) for m in range(4)]
    async with db.transaction() as repo:
        await repo.add_deal(terms, "e")
        await repo.add_confirmation(deal, "dl-1", "u", at[2], "br-1")
    async with db.transaction() as repo:
        changes = PendingChanges(repo, PayoutPolicy(), T0)
        await changes.read_ahead(deal_ids=[deal, unknown])
        for confirmation in [
            Confirmation(deal, "dl-1", "auto", at[3]),
            Confirmation(deal, "dl-1", "u", at[0], "br-1"),  # that signer's first is kept
            Confirmation(deal, "dl-2", "u", at[0], "br-rival"),
            Confirmation(deal, "dl-2", "auto", at[1]),
            Confirmation(deal, "dl-2", "auto", at[0]),
            Confirmation(unknown, "dl-1", "auto", at[1]),
        ]:
            await changes.add_confirmation(confirmation)
        assert await changes.confirmed(terms) == {"dl-1": at[2], "dl-2": at[1]}
        assert await changes.confirmed(rival) == {"dl-1": at[3], "dl-2": at[0]}
        await changes.write_new()
        assert await repo.confirmed(deal) == await changes.confirmed(terms)
        assert await repo.confirmed(unknown) == {"dl-1": at[1]}
