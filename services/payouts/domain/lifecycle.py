"""The payout state machine: scheduled -> sent -> settled, held until payable, failed at last.

    (new) -> held | scheduled | settled    settled at once when the net amount is zero
    held -> scheduled                  account / tax form / trusted, fresh FX rate arrived
    held -> settled                    released, and the net amount is zero
    held (awaiting_funds) -> ...       the brand's escrow covers it: drawn, then as above
    scheduled -> held                  account no longer payable, the net amount fails its
                                       check, or the method's rail is not configured, when the
                                       dispatcher picks it
    scheduled -> sent                  the provider accepted the transfer
    scheduled -> failed                refused, or still failing after the last retry
    sent -> settled                    the provider confirmed arrival
    sent -> failed                     the provider reported the transfer failed / reversed
    settled -> failed                  returned after arrival (reversed, bounced, days later)
    failed -> scheduled | held         retried: the creator's account changed, or an operator
                                       (`creatorflow payouts retry`); held if not payable now

A failed payout is still owed (its net stays payable to the creator). Each retry opens a new
*chapter*: its ledger steps are recorded apart (`dispatch:2`, `return:2`, ...) and the
provider gets a new idempotency key, since the old one stands for a transfer that was refused
or came back. Only when the old transfer may have gone through (given up after retryable
errors such as timeouts) does the retry keep the chapter, and so the key: the provider then
answers with that transfer rather than paying again.

Every function here takes a payout and returns a `Transition`: the new payout, the ledger
transfers the step posts and whether a status event is due. Invalid steps raise.

A clawback (commission taken back after a late refund) is recorded as a payout row of kind
`clawback`, complete at once: it sends nothing, and its one status event (`payout.settled`,
kind `clawback`) tells the brand what returned to its escrow. What it
leaves owed by the creator is recovered from their next payouts in the same currency: when such
a payout is converted, `recovered` of its share repays the clawback and only the rest is sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from services.payouts.domain.accounts import Hold, HoldCode, PayoutAccount, hold_for
from services.payouts.domain.amounts import (
    FeeSplit,
    FxRecord,
    FxSnapshotStale,
    FxSnapshotSuspect,
    locked_conversion,
    net_mismatch,
    split_platform_fee,
)
from services.payouts.domain.ledger import (
    FX_CLEARING,
    PLATFORM_FEES,
    Transfer,
    TransferKind,
    brand_escrow,
    creator_in_transit,
    creator_paid,
    creator_payable,
    creator_receivable,
    move,
)
from services.payouts.domain.terms import DealTerms, PayoutKind
from shared.contract.money import FxRateMissing, FxSnapshot, Money, MoneyError

PayoutStatus = Literal["scheduled", "held", "sent", "failed", "settled"]
"""Where a payout stands: the statuses `payouts.status` publishes (translate.status_data)."""

_NAMESPACE: Final = uuid.UUID("6c1d1f5e-2a53-4d0e-9a57-5f0b8f1b2c30")

ALLOWED: Final[dict[PayoutStatus, frozenset[PayoutStatus]]] = {
    "held": frozenset({"scheduled", "settled"}),
    "scheduled": frozenset({"held", "sent", "failed"}),
    "sent": frozenset({"settled", "failed"}),
    # Only a payout whose transfer was sent and settled (never a clawback, nor one settled
    # without a transfer): `returned`.
    "settled": frozenset({"failed"}),
    "failed": frozenset({"scheduled", "held"}),
}
# What a rail says of a transfer once it is final (providers.Settlement's final states).
SettlementReport = Literal["settled", "failed"]
# How much older than the moment a payout became owed its FX snapshot may be
# (PAYOUTS_FX_MAX_AGE_SECONDS).
DEFAULT_FX_MAX_AGE: Final = timedelta(hours=24)


class InvalidTransition(ValueError):
    """A step the state machine does not allow from the payout's current status."""


def payout_id_for(deal_id: str, kind: PayoutKind, milestone: str) -> str:
    """The payout's id, derived from its business key so every instance derives the same one.

    It is also the provider's idempotency key.
    """
    return "po_" + uuid.uuid5(_NAMESPACE, f"{deal_id}\x1f{kind}\x1f{milestone}").hex


@dataclass(frozen=True)
class RetrySchedule:
    """Exponential backoff: attempt n waits initial * 2**(n-1) seconds, at most `max_seconds`."""

    initial_seconds: float
    max_seconds: float
    max_attempts: int

    def delay(self, attempt: int) -> timedelta:
        exponent = min(max(attempt - 1, 0), 60)
        return timedelta(seconds=min(self.max_seconds, self.initial_seconds * 2**exponent))


@dataclass(frozen=True)
class Payout:
    """One payout. `gross` and `platform_fee` are in the deal currency; `net` (once converted)
    in the creator's payout currency, with the FX rate used in `fx`: the rate locked at
    `fx_at`, when the payout became owed (its last deliverable confirmed, or its commission
    decided), however late it is converted. `recovered` (deal currency) is the part of the
    creator's share kept to repay an earlier clawback: `net` is the rest, converted."""

    payout_id: str
    deal_id: str
    kind: PayoutKind
    milestone: str
    creator_id: str
    brand_id: str
    gross: Money
    platform_fee: Money
    status: PayoutStatus
    net: Money | None = None
    fx: FxRecord | None = None
    hold: Hold | None = None
    failure_reason: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    provider_ref: str | None = None
    version: int = 1  # published transitions so far; names the next status event
    recovered: Money | None = None
    fx_at: datetime | None = None  # None for payouts stored before the lock: converted "now"
    chapter: int = 1  # the attempt: 1, then one more per retry after a failure
    # An attempt's outcome is unknown (a timeout, a 5xx): the transfer may have been executed,
    # so it is looked up before anything is sent again, and a retry after failing keeps the
    # chapter and the idempotency key.
    in_doubt: bool = False
    # The rail this chapter is sent through (services/payouts/providers/rails.py), chosen by
    # the account's method at the first attempt; the creator's fallback rail after an error
    # that proved nothing was executed. None before the first attempt (and for payouts sent
    # before rails were chosen by method).
    rail: str | None = None
    # Claimed by a dispatcher and not yet answered. A claim that finds it still set knows an
    # earlier lease ran out with its call's outcome unrecorded: that attempt is in doubt.
    leased: bool = False

    @property
    def idempotency_key(self) -> str:
        """The provider's idempotency key of this chapter: the payout id for the first (as
        ever), the payout id and the chapter after."""
        return self.payout_id if self.chapter == 1 else f"{self.payout_id}-attempt-{self.chapter}"

    @property
    def creator_share(self) -> Money:
        return self.gross - self.platform_fee

    @property
    def payable_share(self) -> Money:
        """The creator's share less what it repays of earlier clawbacks: what `net` converts."""
        return self.creator_share if self.recovered is None else self.creator_share - self.recovered

    def event_id(self) -> str:
        """Id of the status event for the current version: a replayed step repeats it."""
        return str(uuid.uuid5(_NAMESPACE, f"{self.payout_id}\x1fv{self.version}"))


@dataclass(frozen=True)
class Rates:
    """The FX snapshots a conversion locked at a payout's `fx_at` may use: the one `in_force`
    then and, if that one is unusable, the first trusted one `later` that quotes both
    currencies (amounts.locked_conversion)."""

    in_force: FxSnapshot | None
    later: FxSnapshot | None = None
    max_age: timedelta = DEFAULT_FX_MAX_AGE


@dataclass(frozen=True)
class Transition:
    payout: Payout
    transfers: tuple[Transfer, ...] = ()
    publish: bool = False  # a status change: publish the payout's status event


def _to(payout: Payout, status: PayoutStatus, **changes: Any) -> Payout:
    if status not in ALLOWED[payout.status]:
        raise InvalidTransition(
            f"payout {payout.payout_id}: {payout.status} -> {status} is not allowed; "
            f"from {payout.status} only {sorted(ALLOWED[payout.status]) or 'nothing'}"
        )
    return replace(payout, status=status, version=payout.version + 1, **changes)


def _accrual(payout: Payout) -> tuple[Transfer, ...]:
    return move(
        payout.payout_id,
        TransferKind.ACCRUAL,
        (brand_escrow(payout.brand_id), PLATFORM_FEES, payout.platform_fee),
        (brand_escrow(payout.brand_id), creator_payable(payout.creator_id), payout.creator_share),
    )


def _conversion(payout: Payout, net: Money) -> tuple[Transfer, ...]:
    share = payout.payable_share
    if share.currency == net.currency:
        return ()
    return move(
        payout.payout_id,
        TransferKind.CONVERSION,
        (creator_payable(payout.creator_id), FX_CLEARING, share),
        (FX_CLEARING, creator_payable(payout.creator_id), net),
    )


def _reconversion(payout: Payout, before: Money) -> tuple[Transfer, ...]:
    assert payout.net is not None
    return move(
        payout.payout_id,
        TransferKind.RECONVERSION,
        (creator_payable(payout.creator_id), FX_CLEARING, before),
        (FX_CLEARING, creator_payable(payout.creator_id), payout.net),
        chapter=payout.chapter,
    )


def _recovery(payout: Payout) -> tuple[Transfer, ...]:
    if payout.recovered is None:
        return ()
    return move(
        payout.payout_id,
        TransferKind.RECOVERY,
        (
            creator_payable(payout.creator_id),
            creator_receivable(payout.creator_id),
            payout.recovered,
        ),
    )


def _recovering(payout: Payout, recoverable: Money | None) -> Payout:
    """The payout repaying as much of `recoverable` (owed by the creator, from clawbacks) as
    its share allows; unchanged if nothing is owed in its currency."""
    share = payout.creator_share
    if recoverable is None or recoverable.currency != share.currency:
        return payout
    recovered = min(share, recoverable)
    return payout if recovered.amount <= 0 else replace(payout, recovered=recovered)


def _schedule_or_hold(
    payout: Payout,
    account: PayoutAccount | None,
    rates: Rates,
    now: datetime,
    recoverable: Money | None,
) -> tuple[Payout, tuple[Transfer, ...], Hold | None]:
    """Convert (if not yet) at the rate locked at the payout's `fx_at`, and make due now, or
    say why it must wait.

    Converting first repays what the creator owes from clawbacks (`recoverable`, in the
    payout's deal currency) out of the share; only the rest is converted and sent.

    A conversion that fails for the payout's own amounts (a suspect rate, an amount beyond the
    money limit, a net that does not match) holds this payout with the reason; it never fails
    the event that released it (that may be a neighbour's, e.g. the creator's account).
    """
    hold = hold_for(account, now)
    if hold is not None:
        return payout, (), hold
    assert account is not None
    if payout.net is not None:
        if in_another_currency(payout, account):
            return _converted_again(payout, account, rates, now, payout.chapter + 1)
        return payout, (), _amount_hold(payout.payable_share, payout.net, payout.fx)
    recovering = _recovering(payout, recoverable)
    locked = _locked_conversion(recovering, account, rates, now)
    if isinstance(locked, Hold):
        return payout, (), locked
    net, fx = locked
    converted = replace(recovering, net=net, fx=fx, next_attempt_at=now)
    return converted, _recovery(converted) + _conversion(converted, net), None


def _locked_conversion(
    payout: Payout, account: PayoutAccount, rates: Rates, now: datetime
) -> tuple[Money, FxRecord] | Hold:
    """The payout's payable share in the account's currency at the rate locked at its
    `fx_at`, checked; or the hold that says why it cannot be converted yet."""
    try:
        net, fx = locked_conversion(
            payout.payable_share,
            account.currency,
            at=payout.fx_at or now,
            in_force=rates.in_force,
            later=rates.later,
            max_age=rates.max_age,
        )
    except FxRateMissing as missing:
        return Hold(HoldCode.FX_RATE, str(missing))
    except FxSnapshotSuspect as suspect:
        return Hold(HoldCode.FX_SUSPECT, str(suspect))
    except FxSnapshotStale as stale:
        return Hold(HoldCode.STALE_FX, str(stale))
    except MoneyError as error:
        return Hold(HoldCode.AMOUNT_CHECK, f"cannot convert: {error}")
    return _amount_hold(payout.payable_share, net, fx) or (net, fx)


def in_another_currency(payout: Payout, account: PayoutAccount | None) -> bool:
    """Converted for a currency the creator's account no longer has (they changed it after
    a failure, or while it waited), and not in doubt: an attempt in doubt may have paid the
    old amount, so it is looked up as it was before anything else."""
    return (
        account is not None
        and payout.net is not None
        and payout.net.currency != account.currency
        and not payout.in_doubt
    )


def _converted_again(
    payout: Payout, account: PayoutAccount, rates: Rates, now: datetime, chapter: int
) -> tuple[Payout, tuple[Transfer, ...], Hold | None]:
    """The payout's payable share converted again into the account's currency, at the rate
    locked at its `fx_at` as the first conversion was, in attempt `chapter`: a new one, since
    the rail must see a new request (another amount) under a new idempotency key."""
    assert payout.net is not None
    locked = _locked_conversion(payout, account, rates, now)
    if isinstance(locked, Hold):
        return payout, (), locked
    net, fx = locked
    again = replace(
        payout,
        net=net,
        fx=fx,
        chapter=chapter,
        rail=None,
        attempts=0,
        provider_ref=None,
        failure_reason=None,
        next_attempt_at=now,
    )
    return again, _reconversion(again, payout.net), None


def _amount_hold(share: Money, net: Money, fx: FxRecord | None) -> Hold | None:
    mismatch = net_mismatch(share, net, fx)
    return None if mismatch is None else Hold(HoldCode.AMOUNT_CHECK, mismatch)


def create(
    terms: DealTerms,
    kind: PayoutKind,
    milestone: str,
    gross: Money,
    *,
    platform_fee_bps: int,
    account: PayoutAccount | None,
    snapshot: FxSnapshot | None,
    now: datetime,
    platform_fee: Money | None = None,
    recoverable: Money | None = None,
    fx_at: datetime | None = None,
    later: FxSnapshot | None = None,
    fx_max_age: timedelta = DEFAULT_FX_MAX_AGE,
    unfunded: str | None = None,
) -> Transition:
    """A new payout of `gross` (deal currency): accrued, then scheduled or held; or, when the
    brand's escrow may not pay it now (`unfunded` says why), held `awaiting_funds` with
    nothing drawn or converted until `fund` releases it (domain/escrow.py).

    The platform keeps `platform_fee_bps` of `gross`, or exactly `platform_fee` when given (a
    commission adjustment, whose cut follows the deal's total). Once converted, the payout
    first repays `recoverable` (owed by the creator from clawbacks) as far as its share allows.
    Its FX rate is locked at `fx_at` (when it became owed; `now` if not given, never later):
    `snapshot` is the one in force then, `later` the first trusted one after it, used only if
    `snapshot` is older than `fx_max_age`, suspect or lacks a rate (`Rates`).
    """
    if platform_fee is None:
        split = split_platform_fee(gross, platform_fee_bps)
    else:
        if platform_fee.is_negative() or platform_fee > gross:
            raise MoneyError(f"platform fee {platform_fee} is not a part of {gross}")
        split = FeeSplit(gross, platform_fee, gross - platform_fee)
    draft = Payout(
        payout_id=payout_id_for(terms.deal_id, kind, milestone),
        deal_id=terms.deal_id,
        kind=kind,
        milestone=milestone,
        creator_id=terms.creator_id,
        brand_id=terms.brand_id,
        gross=split.gross,
        platform_fee=split.platform_fee,
        status="held",  # placeholder until decided below; version 1 is the first event
        fx_at=now if fx_at is None else min(fx_at, now),
    )
    if unfunded is not None:
        held = replace(draft, hold=Hold(HoldCode.AWAITING_FUNDS, unfunded))
        return Transition(held, publish=True)
    accrual = _accrual(draft)
    rates = Rates(snapshot, later, fx_max_age)
    payout, conversion, hold = _schedule_or_hold(draft, account, rates, now, recoverable)
    if hold is not None:
        return Transition(replace(draft, hold=hold), accrual, publish=True)
    if _nothing_to_send(payout):
        return Transition(_settled_without_transfer(payout), accrual + conversion, True)
    return Transition(
        replace(payout, status="scheduled", next_attempt_at=now), accrual + conversion, True
    )


def clawback(terms: DealTerms, milestone: str, gross: Money, platform_fee: Money) -> Transition:
    """Take `gross` (deal currency) of commission back: the brand's escrow is credited, the
    platform returns `platform_fee` (its cut of that commission) and the creator owes the rest
    (a receivable repaid from their next payouts). Complete at once: its `payout.settled`
    (kind `clawback`, `gross` returned to the brand's escrow, no `net`) is all it publishes."""
    if gross.is_negative() or platform_fee.is_negative() or platform_fee > gross:
        raise MoneyError(f"clawback of {gross} with platform fee {platform_fee} is no split")
    taken = Payout(
        payout_id=payout_id_for(terms.deal_id, "clawback", milestone),
        deal_id=terms.deal_id,
        kind="clawback",
        milestone=milestone,
        creator_id=terms.creator_id,
        brand_id=terms.brand_id,
        gross=gross,
        platform_fee=platform_fee,
        status="settled",
        failure_reason=(
            "clawed back: returned to the brand's escrow, repaid from the creator's next payouts"
        ),
    )
    transfers = move(
        taken.payout_id,
        TransferKind.CLAWBACK,
        (PLATFORM_FEES, brand_escrow(terms.brand_id), platform_fee),
        (creator_receivable(terms.creator_id), brand_escrow(terms.brand_id), taken.creator_share),
    )
    return Transition(taken, transfers, publish=True)


def _nothing_to_send(payout: Payout) -> bool:
    return payout.net is not None and payout.net.is_zero()


def _settled_without_transfer(payout: Payout) -> Payout:
    # The platform fee took everything, the share repaid a clawback, or it converts to less
    # than half a minor unit: complete without a provider call (providers refuse zero amounts).
    why = "the net amount is zero"
    if payout.recovered is not None and payout.payable_share.is_zero():
        why = f"the share repaid {payout.recovered} of clawed-back commission"
    return replace(
        payout,
        status="settled",
        hold=None,
        next_attempt_at=None,
        failure_reason=f"nothing to transfer: {why}",
    )


def release(
    payout: Payout,
    account: PayoutAccount | None,
    snapshot: FxSnapshot | None,
    now: datetime,
    recoverable: Money | None = None,
    *,
    later: FxSnapshot | None = None,
    fx_max_age: timedelta = DEFAULT_FX_MAX_AGE,
) -> Transition:
    """Try to release a held payout: scheduled if payable now; otherwise still held, with the
    current reason, announced by a new `payout.held` when its code changed (the last one
    published always says what the payout waits for). As in `create`, a converted payout
    first repays `recoverable`, at the rate locked at its `fx_at`: `snapshot` is the one in
    force then, `later` the first trusted one after."""
    if payout.status != "held":
        raise InvalidTransition(f"payout {payout.payout_id} is {payout.status}, not held")
    rates = Rates(snapshot, later, fx_max_age)
    converted, conversion, hold = _schedule_or_hold(payout, account, rates, now, recoverable)
    if hold is not None:
        if payout.hold is None or payout.hold.code is not hold.code:
            # The creator, a program reading `hold_code`, and alerts (a destination change
            # is what an account takeover looks like) learn what it waits for now.
            return Transition(replace(payout, hold=hold, version=payout.version + 1), (), True)
        return Transition(replace(payout, hold=hold))
    if _nothing_to_send(converted):
        done = _settled_without_transfer(_to(converted, "settled"))
        return Transition(done, conversion, publish=True)
    scheduled = _to(converted, "scheduled", hold=None, next_attempt_at=now, attempts=0)
    return Transition(scheduled, conversion, publish=True)


def fund(
    payout: Payout,
    account: PayoutAccount | None,
    snapshot: FxSnapshot | None,
    now: datetime,
    recoverable: Money | None = None,
    *,
    later: FxSnapshot | None = None,
    fx_max_age: timedelta = DEFAULT_FX_MAX_AGE,
) -> Transition:
    """The brand's escrow now covers a payout held `awaiting_funds`: its gross is drawn (the
    accrual), then it is released as any held payout (`release`), or held for the next reason
    it cannot be paid yet, announced with a new `payout.held`."""
    if payout.status != "held" or payout.hold is None:
        raise InvalidTransition(f"payout {payout.payout_id} is {payout.status}, not held")
    if payout.hold.code is not HoldCode.AWAITING_FUNDS:
        raise InvalidTransition(
            f"payout {payout.payout_id} is held for {payout.hold.code}, not awaiting funds"
        )
    accrual = _accrual(payout)
    released = release(
        replace(payout, hold=None),
        account,
        snapshot,
        now,
        recoverable,
        later=later,
        fx_max_age=fx_max_age,
    )
    # Still held, it is for another code than awaiting_funds: `release` announced it.
    return Transition(released.payout, accrual + released.transfers, released.publish)


def claim(
    payout: Payout,
    account: PayoutAccount | None,
    now: datetime,
    lease: timedelta,
    *,
    rail: str | None = None,
    rail_unavailable: str | None = None,
) -> Transition:
    """The dispatcher takes a due payout: counts the attempt and leases it for `lease` on its
    chapter's rail (`rail`, the account's method's, at the first attempt), or holds it if the
    account stopped being payable since it was scheduled, if its net amount is not its share
    at the recorded rate (checked again right before money leaves), or if the rail is not
    configured (`rail_unavailable`: why; it is never sent through another rail instead)."""
    if payout.status != "scheduled":
        raise InvalidTransition(f"payout {payout.payout_id} is {payout.status}, not scheduled")
    hold = hold_for(account, now) or _amount_hold(
        payout.payable_share, _converted(payout), payout.fx
    )
    if hold is None and rail_unavailable is not None:
        hold = Hold(HoldCode.RAIL_UNAVAILABLE, rail_unavailable)
    if hold is not None:
        return Transition(_to(payout, "held", hold=hold, next_attempt_at=None), publish=True)
    return Transition(
        replace(
            payout,
            attempts=payout.attempts + 1,
            next_attempt_at=now + lease,
            rail=payout.rail or rail,
            # An earlier claim's lease ran out unanswered (a slow rail, a crash after the
            # call): it may have paid, so this attempt looks it up first and no error of its
            # own can prove that nothing was executed.
            in_doubt=payout.in_doubt or payout.leased,
            leased=True,
        )
    )


def mark_sent(payout: Payout, provider_ref: str) -> Transition:
    """The provider accepted the transfer: money moves from payable to in transit. An
    earlier attempt's error no longer says anything about the payout."""
    net = _converted(payout)
    sent = _to(
        payout,
        "sent",
        provider_ref=provider_ref,
        next_attempt_at=None,
        in_doubt=False,
        leased=False,
        failure_reason=None,
    )
    transfer = move(
        payout.payout_id,
        TransferKind.DISPATCH,
        (creator_payable(payout.creator_id), creator_in_transit(payout.creator_id), net),
        chapter=payout.chapter,
    )
    return Transition(sent, transfer, publish=True)


def attempt_failed(
    payout: Payout,
    reason: str,
    *,
    retryable: bool,
    retry: RetrySchedule,
    now: datetime,
    not_executed: bool = False,
    fallback_rail: str | None = None,
    unreachable: bool = False,
) -> Transition:
    """A provider call failed: retry later with backoff, or fail for good once the error is
    permanent or `retry.max_attempts` calls were made. Money stays payable to the creator.

    `not_executed`: the error proves the chapter's rail executed nothing (and no earlier
    attempt's outcome is still unknown). Only then, when the rail will not take it (a final
    error, or retries used up), does the payout move to the creator's `fallback_rail`: due at
    once there, under the same idempotency key in that rail's own records. An error that may
    follow execution marks the payout in doubt: looked up before it is sent again.

    `unreachable`: the payout was in doubt and its rail could not be reached to look it up.
    Nothing was sent and nothing learned, so the attempt uses up nothing: the payout waits for
    its rail (backoff up to `retry.max_seconds`) however long that takes, since failing it
    would hand a question only the rail can answer to an operator, and moving it could pay
    twice."""
    if payout.status != "scheduled":
        raise InvalidTransition(f"payout {payout.payout_id} is {payout.status}, not scheduled")
    in_doubt = payout.in_doubt or not not_executed
    exhausted = not retryable or (payout.attempts >= retry.max_attempts and not unreachable)
    if exhausted and not_executed and fallback_rail is not None and fallback_rail != payout.rail:
        moved = replace(
            payout,
            rail=fallback_rail,
            attempts=0,
            in_doubt=False,
            leased=False,
            next_attempt_at=now,
            failure_reason=f"{reason}; sent through the fallback rail {fallback_rail}",
        )
        return Transition(moved)
    if not exhausted:
        return Transition(
            replace(
                payout,
                failure_reason=reason,
                next_attempt_at=now + retry.delay(payout.attempts),
                in_doubt=in_doubt,
                leased=False,
            )
        )
    why = reason if not retryable else f"{reason} (gave up after {payout.attempts} attempts)"
    failed = _to(
        payout,
        "failed",
        failure_reason=why,
        next_attempt_at=None,
        in_doubt=in_doubt if retryable else payout.in_doubt,
        leased=False,
    )
    return Transition(failed, publish=True)


def settle(payout: Payout) -> Transition:
    """The provider confirmed the money arrived."""
    if payout.status != "sent":
        raise InvalidTransition(f"payout {payout.payout_id} is {payout.status}, not sent")
    net = _converted(payout)
    transfer = move(
        payout.payout_id,
        TransferKind.SETTLEMENT,
        (creator_in_transit(payout.creator_id), creator_paid(payout.creator_id), net),
        chapter=payout.chapter,
    )
    return Transition(_to(payout, "settled"), transfer, publish=True)


def returned(payout: Payout, reason: str) -> Transition:
    """The provider reported a transfer failed or reversed: owed to the creator again. A sent
    payout's net leaves in-transit; a settled one's leaves paid (a return days after arrival:
    a bounce, a reversal). Either way the chapter's return is one ledger transfer, recorded
    at most once (`<payout>:return[:<chapter>]`)."""
    net = _converted(payout)
    if payout.status == "settled" and payout.provider_ref is None:
        raise InvalidTransition(
            f"payout {payout.payout_id} was settled without a transfer: nothing can return"
        )
    source = (
        creator_paid(payout.creator_id)
        if payout.status == "settled"
        else creator_in_transit(payout.creator_id)
    )
    transfer = move(
        payout.payout_id,
        TransferKind.RETURN,
        (source, creator_payable(payout.creator_id), net),
        chapter=payout.chapter,
    )
    failed = _to(payout, "failed", failure_reason=reason, in_doubt=False)
    return Transition(failed, transfer, publish=True)


def reported(payout: Payout, state: SettlementReport, reason: str) -> Transition | None:
    """What the rail's word on the payout's current transfer changes, whether it was polled
    (schedules.SettlementPoller) or pushed (webhooks), in any order and any number of times:

    - `settled` settles a sent payout; anything else is left as it is: a payout already
      settled stays so, and a failed one is never brought back (`paid` after `failed`).
    - `failed` returns a sent or settled payout (`returned`), once: a failed payout stays
      failed, and a later chapter is another transfer, never reached by this one's reports.

    None when nothing changes."""
    if state == "settled":
        return settle(payout) if payout.status == "sent" else None
    if payout.status == "sent" or (payout.status == "settled" and payout.provider_ref):
        return returned(payout, reason)
    return None


def retry(
    payout: Payout, account: PayoutAccount | None, now: datetime, rates: Rates | None = None
) -> Transition:
    """Try a failed payout again: due now in a new chapter (the same one if its last transfer
    may have gone through), or held if the account is not payable now (released as any held
    payout). The net amount, already converted and still payable to the creator, is sent
    unchanged, unless the account is now in another currency: then the payable share is
    converted again at the rate locked at `fx_at` (`rates`, the snapshots then), as the
    first conversion was. Nothing else is posted until the provider accepts it."""
    if payout.status != "failed":
        raise InvalidTransition(
            f"payout {payout.payout_id} is {payout.status}, not failed: only failed payouts "
            "are retried"
        )
    chapter = payout.chapter if payout.in_doubt else payout.chapter + 1
    fresh = replace(
        payout,
        chapter=chapter,
        # A chapter kept (its transfer may have gone through) stays on its rail and is looked
        # up there before anything is sent; a new chapter takes the account's rail of the day.
        in_doubt=payout.in_doubt,
        rail=payout.rail if payout.in_doubt else None,
        attempts=0,
        provider_ref=None,
        failure_reason=None,
    )
    transfers: tuple[Transfer, ...] = ()
    hold = hold_for(account, now)
    if hold is None and in_another_currency(fresh, account):
        assert account is not None
        fresh, transfers, hold = _converted_again(
            fresh, account, rates or Rates(None), now, fresh.chapter
        )
    elif hold is None:
        hold = _amount_hold(payout.payable_share, _converted(payout), payout.fx)
    if hold is not None:
        return Transition(_to(fresh, "held", hold=hold, next_attempt_at=None), publish=True)
    scheduled = _to(fresh, "scheduled", next_attempt_at=now)
    return Transition(scheduled, transfers, publish=True)


def _converted(payout: Payout) -> Money:
    if payout.net is None:
        raise InvalidTransition(f"payout {payout.payout_id} has no converted amount yet")
    return payout.net
