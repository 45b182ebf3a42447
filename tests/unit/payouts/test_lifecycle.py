"""The payout state machine, backoff, holds and the ledger transfers of each step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import get_args

import pytest
from pydantic import SecretStr

from services.payouts import translate
from services.payouts.domain import lifecycle
from services.payouts.domain.accounts import (
    HoldCode,
    PayoutAccount,
    RawDestination,
    SealedDestination,
    hold_for,
)
from services.payouts.domain.ledger import LedgerError, Posting, Transfer, TransferKind
from services.payouts.domain.ledger_check import PostedTransfer, ledger_problems
from services.payouts.domain.lifecycle import (
    InvalidTransition,
    Payout,
    RetrySchedule,
    Transition,
    payout_id_for,
)
from services.payouts.domain.terms import DealTerms, DeliverableTerm
from shared.contract.events import PayoutAccountUpserted, TaxForm
from shared.contract.events.vocabulary import PAYOUT_STATUSES, PayoutMethod
from shared.contract.money import FxSnapshot, Money
from tests.unit.payouts.builders import with_fundings

NOW = datetime(2025, 5, 1, tzinfo=UTC)
TERMS = DealTerms(
    deal_id="deal-1",
    campaign_id="cmp-1",
    brand_id="br-1",
    creator_id="cr-1",
    fee=Money.of("450.00", "USD"),
    commission_rate=Decimal("0.1"),
    deliverables=(DeliverableTerm("dl-1", 1),),
    ends_at=NOW,
    attribution_window_days=30,
)
SNAPSHOT = FxSnapshot("USD", {"EUR": Decimal("0.9215")}, NOW, "ecb")
RETRY = RetrySchedule(1.0, 60.0, 3)


def account(currency: str = "EUR", form: str = "W-8BEN", status: str = "verified") -> PayoutAccount:
    return PayoutAccount(
        "cr-1", "stripe", SealedDestination(b"sealed acct_secret_123"), currency, form, status, NOW
    )


def create(acct: PayoutAccount | None = None, snapshot: FxSnapshot | None = SNAPSHOT) -> Transition:
    return lifecycle.create(
        TERMS,
        "fee",
        "",
        TERMS.fee,
        platform_fee_bps=500,
        account=acct,
        snapshot=snapshot,
        now=NOW,
    )


def history(*transitions: Transition) -> list[PostedTransfer]:
    return with_fundings(
        [
            PostedTransfer(t.transfer_id, t.payout_id, t.kind, t.postings)
            for transition in transitions
            for t in transition.transfers
        ]
    )


def test_payout_id_is_derived_from_the_business_key() -> None:
    assert payout_id_for("d", "fee", "") == payout_id_for("d", "fee", "")
    assert payout_id_for("d", "fee", "") != payout_id_for("d", "commission", "")
    assert payout_id_for("d", "fee", "dl-1") != payout_id_for("d", "fee", "")
    assert payout_id_for("d", "fee", "").startswith("po_")


def test_new_payout_is_split_converted_and_scheduled() -> None:
    t = create(account())
    p = t.payout
    assert p.status == "scheduled" and t.publish and p.next_attempt_at == NOW
    assert p.gross == Money.of("450.00", "USD")
    assert p.platform_fee == Money.of("22.50", "USD")
    assert p.net == Money.of("393.94", "EUR")  # 427.50 x 0.9215 = 393.94125
    assert p.fx is not None and p.fx.rate == Decimal("0.9215") and p.fx.source == "ecb"
    assert [x.kind for x in t.transfers] == [TransferKind.ACCRUAL, TransferKind.CONVERSION]
    assert ledger_problems([p], history(t)) == []
    data = translate.status_data(p)
    assert (data.status, data.net, data.fx_rate) == ("scheduled", p.net, Decimal("0.9215"))
    assert (data.kind, data.platform_fee) == ("fee", Money.of("22.50", "USD"))
    assert (data.fx_as_of, data.fx_source) == (p.fx.as_of, "ecb")


def test_payouts_wait_for_account_tax_form_and_fx_rate() -> None:
    missing = create(None)
    assert missing.payout.status == "held" and missing.payout.hold is not None
    assert missing.payout.hold.code == HoldCode.NO_ACCOUNT
    held = translate.status_data(missing.payout)
    assert held.net is None and held.fx_rate is None  # not known until converted
    pending = create(account(status="pending"))
    assert pending.payout.hold is not None and pending.payout.hold.code == HoldCode.TAX_FORM
    other = create(account(form="other"))
    assert other.payout.hold is not None and "not accepted" in other.payout.hold.reason
    no_rate = create(account(currency="JPY"))
    assert no_rate.payout.hold is not None and no_rate.payout.hold.code == HoldCode.FX_RATE
    for t in (missing, pending, other, no_rate):
        assert [x.kind for x in t.transfers] == [TransferKind.ACCRUAL]
        assert ledger_problems([t.payout], history(t)) == []


def test_release_converts_and_schedules_only_when_payable() -> None:
    held = create(None)
    still = lifecycle.release(held.payout, account(status="pending"), SNAPSHOT, NOW)
    assert still.payout.status == "held" and still.payout.version == 2
    assert still.payout.hold is not None and still.payout.hold.code == HoldCode.TAX_FORM
    assert still.publish  # a new payout.held: it waits for the tax form now, not the account
    again = lifecycle.release(still.payout, account(status="pending"), SNAPSHOT, NOW)
    assert again.payout == still.payout and not again.publish  # the same hold: nothing new
    released = lifecycle.release(still.payout, account(), SNAPSHOT, NOW)
    assert released.publish and released.payout.status == "scheduled"
    assert released.payout.version == 3 and released.payout.net == Money.of("393.94", "EUR")
    assert ledger_problems([released.payout], history(held, released)) == []


def test_full_lifecycle_to_settled_keeps_the_ledger_consistent() -> None:
    created = create(account())
    claimed = lifecycle.claim(created.payout, account(), NOW, timedelta(seconds=30))
    assert claimed.payout.attempts == 1 and claimed.payout.next_attempt_at == NOW + timedelta(
        seconds=30
    )
    sent = lifecycle.mark_sent(claimed.payout, "tr_1")
    settled = lifecycle.settle(sent.payout)
    assert settled.payout.status == "settled" and settled.payout.provider_ref == "tr_1"
    assert ledger_problems([sent.payout], history(created, sent)) == []
    assert ledger_problems([settled.payout], history(created, sent, settled)) == []
    # a ledger missing the settlement transfer does not match a settled payout
    assert ledger_problems([settled.payout], history(created, sent))


def test_retries_back_off_exponentially_then_fail() -> None:
    assert [RETRY.delay(n).total_seconds() for n in (1, 2, 3, 4, 10)] == [1, 2, 4, 8, 60]
    payout = create(account()).payout
    for attempt in (1, 2):
        payout = lifecycle.claim(payout, account(), NOW, timedelta(seconds=30)).payout
        retried = lifecycle.attempt_failed(payout, "503", retryable=True, retry=RETRY, now=NOW)
        assert retried.payout.status == "scheduled" and not retried.publish
        assert retried.payout.next_attempt_at == NOW + RETRY.delay(attempt)
        payout = retried.payout
    # Accepted at the next call, it says nothing of the error before.
    accepted = lifecycle.mark_sent(
        lifecycle.claim(payout, account(), NOW, timedelta(1)).payout, "t"
    )
    assert accepted.payout.failure_reason is None and payout.failure_reason == "503"
    payout = lifecycle.claim(payout, account(), NOW, timedelta(seconds=30)).payout
    failed = lifecycle.attempt_failed(payout, "503", retryable=True, retry=RETRY, now=NOW)
    assert failed.payout.status == "failed" and failed.publish
    assert failed.payout.failure_reason == "503 (gave up after 3 attempts)"


def test_permanent_refusal_fails_at_once() -> None:
    payout = lifecycle.claim(create(account()).payout, account(), NOW, timedelta(seconds=1)).payout
    failed = lifecycle.attempt_failed(payout, "400 bad", retryable=False, retry=RETRY, now=NOW)
    assert failed.payout.status == "failed" and failed.payout.failure_reason == "400 bad"


def test_a_claim_that_finds_an_earlier_lease_unanswered_is_in_doubt() -> None:
    lease = timedelta(seconds=30)
    first = lifecycle.claim(create(account()).payout, account(), NOW, lease).payout
    assert first.leased and not first.in_doubt
    # The first attempt's lease ran out before its answer was recorded: it may have paid.
    second = lifecycle.claim(first, account(), NOW + lease, lease).payout
    assert second.leased and second.in_doubt and second.attempts == 2
    # An answer recorded ends the lease; a failure keeps the doubt of the attempt before.
    failed = lifecycle.attempt_failed(
        second, "refused", retryable=True, retry=RETRY, now=NOW, not_executed=True
    ).payout
    assert not failed.leased and failed.in_doubt
    third = lifecycle.claim(failed, account(), NOW + 2 * lease, lease).payout
    sent = lifecycle.mark_sent(third, "tr_1").payout
    assert not sent.leased and not sent.in_doubt


def test_claim_holds_when_the_account_stopped_being_payable() -> None:
    payout = create(account()).payout
    held = lifecycle.claim(payout, account(status="rejected"), NOW, timedelta(seconds=1))
    assert held.payout.status == "held" and held.publish
    again = lifecycle.release(held.payout, account(), SNAPSHOT, NOW)
    assert again.payout.status == "scheduled" and again.transfers == ()  # converted already


def test_returned_transfer_is_owed_again() -> None:
    created = create(account())
    sent = lifecycle.mark_sent(created.payout, "tr_9")
    back = lifecycle.returned(sent.payout, "reversed")
    assert back.payout.status == "failed"
    assert ledger_problems([back.payout], history(created, sent, back)) == []


def test_a_return_after_settlement_takes_the_money_back_from_paid_once() -> None:
    created = create(account())
    sent = lifecycle.mark_sent(created.payout, "tr_9")
    settled = lifecycle.settle(sent.payout)
    back = lifecycle.returned(settled.payout, "wise: transfer bounced_back")
    assert back.payout.status == "failed" and back.publish
    assert back.payout.failure_reason == "wise: transfer bounced_back"
    [transfer] = back.transfers
    assert transfer.transfer_id == f"{created.payout.payout_id}:return"
    assert {(p.account, p.amount.amount) for p in transfer.postings} == {
        (f"creator_paid:{TERMS.creator_id}", -sent.payout.net.amount),  # type: ignore[union-attr]
        (f"creator_payable:{TERMS.creator_id}", sent.payout.net.amount),  # type: ignore[union-attr]
    }
    assert ledger_problems([back.payout], history(created, sent, settled, back)) == []
    # Recorded twice, the same return would be a second transfer with the same id: refused
    # by the ledger's primary key, and by `reported`, which leaves a failed payout alone.
    assert lifecycle.reported(back.payout, "failed", "again") is None


def test_a_settlement_without_a_transfer_cannot_return() -> None:
    settled = Payout(**{**create(account()).payout.__dict__, "status": "settled"})
    with pytest.raises(InvalidTransition, match="without a transfer"):
        lifecycle.returned(settled, "reversed")
    assert lifecycle.reported(settled, "failed", "reversed") is None


def test_the_rails_reports_apply_in_any_order_and_never_resurrect() -> None:
    sent = lifecycle.mark_sent(create(account()).payout, "tr_9").payout
    by_status = {
        "sent": sent,
        "settled": lifecycle.settle(sent).payout,
        "failed": lifecycle.returned(sent, "reversed").payout,
    }
    outcome = {
        (status, report): (None if t is None else t.payout.status)
        for status, payout in by_status.items()
        for report in ("settled", "failed")
        for t in [lifecycle.reported(payout, report, "rail says so")]  # type: ignore[arg-type]
    }
    assert outcome == {
        ("sent", "settled"): "settled",
        ("sent", "failed"): "failed",
        ("settled", "settled"): None,
        ("settled", "failed"): "failed",  # paid, then returned days later
        ("failed", "settled"): None,  # `paid` after `failed` does not bring it back
        ("failed", "failed"): None,
    }
    for order in (("settled", "failed"), ("failed", "settled")):
        payout = sent
        for report in order:
            step = lifecycle.reported(payout, report, "rail says so")  # type: ignore[arg-type]
            payout = payout if step is None else step.payout
        assert payout.status == "failed"


@pytest.mark.parametrize(
    ("status", "step"),
    [
        ("held", lambda p: lifecycle.mark_sent(p, "x")),
        ("held", lifecycle.settle),
        ("scheduled", lifecycle.settle),
        ("sent", lambda p: lifecycle.mark_sent(p, "x")),
        ("settled", lambda p: lifecycle.returned(p, "x")),
        ("failed", lifecycle.settle),
        ("sent", lambda p: lifecycle.release(p, None, None, NOW)),
        ("failed", lambda p: lifecycle.claim(p, None, NOW, timedelta(seconds=1))),
    ],
)
def test_invalid_transitions_are_refused(status: str, step: object) -> None:
    payout = Payout(**{**create(account()).payout.__dict__, "status": status})
    with pytest.raises(InvalidTransition):
        step(payout)  # type: ignore[operator]


def test_transfers_must_balance_per_currency() -> None:
    with pytest.raises(LedgerError, match="does not balance"):
        Transfer(
            "p",
            TransferKind.ACCRUAL,
            (Posting("a", Money.of("1", "USD")), Posting("b", Money.of("-1", "EUR"))),
        )


def upserted(creator_id: str, method: PayoutMethod, destination: str) -> PayoutAccountUpserted:
    """The creator service's account of `creator_id`: EUR, a verified W-9."""
    return PayoutAccountUpserted(
        creator_id=creator_id,
        method=method,
        destination=SecretStr(destination),
        currency="EUR",
        tax_form=TaxForm(type="W-9", status="verified"),
    )


def test_hold_reasons_and_raw_destinations() -> None:
    assert hold_for(account(), NOW) is None
    assert hold_for(account(form="W-9"), NOW) is None
    assert hold_for(account(form="W-8BEN-E"), NOW) is None
    raw = upserted("cr-1", "bank_transfer", "DE89370400440532013000")
    with pytest.raises(RawDestination) as refused:
        translate.payout_account(raw, NOW, seal=_must_not_seal)
    assert "DE89370400440532013000" not in str(refused.value)
    assert "acct_secret_123" not in repr(account())


def _must_not_seal(creator_id: str, destination: SecretStr) -> SealedDestination:
    raise AssertionError("a refused destination is not sealed")


def test_an_account_keeps_its_destination_sealed_for_its_creator() -> None:
    sealed_for: list[tuple[str, str]] = []

    def seal(creator_id: str, destination: SecretStr) -> SealedDestination:
        sealed_for.append((creator_id, destination.get_secret_value()))
        return SealedDestination(b"opaque")

    data = upserted("cr-7", "paypal", "tok_paypal_77")
    stored = translate.payout_account(data, NOW, seal=seal)
    assert sealed_for == [("cr-7", "tok_paypal_77")]
    assert stored.destination == SealedDestination(b"opaque")
    assert "tok_paypal_77" not in repr(stored) and "opaque" not in repr(stored)


def test_the_domain_knows_the_statuses_the_contract_publishes() -> None:
    assert get_args(lifecycle.PayoutStatus) == PAYOUT_STATUSES
