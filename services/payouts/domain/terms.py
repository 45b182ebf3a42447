"""When a deal's money becomes payable: fee milestones, the commission window, and what an
amendment or a cancellation changes (docs/architecture.md §3, amendments)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from shared.contract.deal_versions import highest_version
from shared.contract.money import Money

FeeSchedule = Literal["on_completion", "per_deliverable"]
# A clawback is no payout: it records commission taken back from the creator (a receivable
# recovered from their later payouts), with no transfer to the creator; its one status event
# (`payout.settled`) says what returned to the brand's escrow.
PayoutKind = Literal["fee", "commission", "clawback"]

WHOLE_DEAL = ""
"""The milestone of a payout that covers the whole deal (the fee on completion, commission)."""


@dataclass(frozen=True)
class DeliverableTerm:
    deliverable_id: str
    count: int


@dataclass(frozen=True)
class Confirmation:
    """A deliverable of a deal confirmed. `signed_by` is the brand that signed it ('' when
    unsigned or signed by our own services); `post_received_at` is when the post that completed
    it reached us, when known."""

    deal_id: str
    deliverable_id: str
    confirmed_by: str
    confirmed_at: datetime
    signed_by: str = ""
    post_received_at: datetime | None = None


@dataclass(frozen=True)
class Cancellation:
    """`deal.cancelled`: the brand that sent it and when the deal ended (the event's time, no
    earlier than its arrival less the clock skew)."""

    deal_id: str
    brand_id: str
    cancelled_at: datetime
    reason: str


@dataclass(frozen=True)
class DealTerms:
    """What payouts needs from `deal.signed` or `deal.amended`. `fee` is in the deal's currency.

    `fee_schedule` is fixed when the deal is first stored (the setting in force then) and
    never changes: paying one deal's fee under two schedules would pay it twice. `version` is
    that of the terms (1: `deal.signed`); `cancelled_at` is set once the deal is cancelled.
    """

    deal_id: str
    campaign_id: str
    brand_id: str
    creator_id: str
    fee: Money
    commission_rate: Decimal
    deliverables: tuple[DeliverableTerm, ...]
    ends_at: datetime
    attribution_window_days: int
    fee_schedule: FeeSchedule = "on_completion"
    version: int = 1
    cancelled_at: datetime | None = None
    # When this version was sent (its event's time), where known: an amendment sent after
    # the deal's cancellation never counts, whatever the order they arrive in.
    sent_at: datetime | None = None

    def same_terms(self, other: DealTerms) -> bool:
        """Whether `other` (from a re-sent event) states the same terms; the fee schedule, the
        cancellation and the sending time are not terms, and are left out."""
        ours = replace(
            other,
            fee_schedule=self.fee_schedule,
            cancelled_at=self.cancelled_at,
            sent_at=self.sent_at,
        )
        return ours == self

    @property
    def currency(self) -> str:
        return self.fee.currency

    @property
    def deliverable_ids(self) -> frozenset[str]:
        return frozenset(d.deliverable_id for d in self.deliverables)

    @property
    def attribution_closes_at(self) -> datetime:
        """End of the attribution window: orders after this no longer earn commission."""
        return self.ends_at + timedelta(days=self.attribution_window_days)


@dataclass(frozen=True)
class Milestone:
    """One payable part of the fee: `milestone` is a deliverable id or WHOLE_DEAL."""

    milestone: str
    amount: Money


def fee_milestones(terms: DealTerms) -> tuple[Milestone, ...]:
    """Every fee milestone of the deal under its schedule; the amounts sum exactly to the fee.

    `per_deliverable` splits the fee in proportion to each deliverable's `count` with
    `Money.allocate` (largest remainder: no minor unit lost or created).
    """
    if terms.fee_schedule == "on_completion":
        return (Milestone(WHOLE_DEAL, terms.fee),)
    parts = terms.fee.allocate([d.count for d in terms.deliverables])
    return tuple(
        Milestone(d.deliverable_id, part) for d, part in zip(terms.deliverables, parts, strict=True)
    )


def in_force(terms: DealTerms, amendments: Iterable[DealTerms]) -> DealTerms:
    """The terms in force: the highest version among `terms` (the signed deal, with its fee
    schedule and cancellation) and the amendments that may amend it (`changed_identity`) and
    were not sent after its cancellation. The same whatever order they arrived in."""
    ended = terms.cancelled_at
    best = highest_version(terms, amendments, ended)
    return replace(best, fee_schedule=terms.fee_schedule, cancelled_at=ended, sent_at=None)


def cancelled_at(terms: DealTerms, cancellations: Iterable[Cancellation]) -> datetime | None:
    """When the deal ended: the earliest cancellation sent by its own brand, if any (one by
    another brand, kept before the deal arrived, counts for nothing)."""
    times = [c.cancelled_at for c in cancellations if c.brand_id == terms.brand_id]
    if terms.cancelled_at is not None:
        times.append(terms.cancelled_at)
    return min(times, default=None)


def confirmed_in_time(
    terms: DealTerms, confirmed: Mapping[str, datetime]
) -> Mapping[str, datetime]:
    """The confirmations that count: after a cancellation, only those dated up to it."""
    if terms.cancelled_at is None:
        return confirmed
    return {d: at for d, at in confirmed.items() if at <= terms.cancelled_at}


@dataclass(frozen=True)
class FeeDue:
    """The fee payouts to create now, what was paid beyond the fee in force (zero unless an
    amendment lowered the fee below what was already paid), and what the fee in force asks
    beyond the payouts of a deal whose every fee payout exists (an amendment raised the fee
    after it was paid: not paid)."""

    milestones: tuple[Milestone, ...]
    overpaid: Money
    unpaid: Money


def fee_due(terms: DealTerms, confirmed: Set[str], paid: Mapping[str, Money]) -> FeeDue:
    """The fee payouts owed under the terms in force and not created yet.

    `paid` is each fee payout already created for the deal (milestone -> gross), including
    those of earlier versions and not yet written. A payout once created never changes: each
    newly confirmed deliverable gets its weight share (`count`, `Money.allocate`) of the fee
    in force now, and the payout that completes the deal gets the rest, so the deal's fee
    payouts add up exactly to the fee in force. None is ever negative or takes the total above
    the fee: what is missing is reported as `overpaid` and not paid.
    """
    zero = Money.zero(terms.currency)
    left = terms.fee - sum(paid.values(), zero)
    complete = terms.deliverable_ids <= confirmed
    if terms.fee_schedule == "on_completion":
        shares = {WHOLE_DEAL: terms.fee}
        owed = [WHOLE_DEAL] if complete and WHOLE_DEAL not in paid else []
    else:
        parts = terms.fee.allocate([d.count for d in terms.deliverables])
        shares = {d.deliverable_id: p for d, p in zip(terms.deliverables, parts, strict=True)}
        owed = [d for d in shares if d in confirmed and d not in paid]
    milestones = []
    for index, milestone in enumerate(owed):
        last = complete and index == len(owed) - 1
        amount = left if last else min(shares[milestone], left)
        amount = max(amount, zero)
        left -= amount
        if not amount.is_zero():
            milestones.append(Milestone(milestone, amount))
    overpaid = -left if owed and left.is_negative() else zero
    unpaid = left if complete and not owed and left > zero else zero
    return FeeDue(tuple(milestones), overpaid, unpaid)


def payable_since(
    terms: DealTerms, milestone: Milestone, confirmed: Mapping[str, datetime]
) -> datetime:
    """When `milestone` became payable: the latest confirmation among its deliverables (every
    deliverable of the deal for the whole fee). The fee's FX rate is locked at that moment."""
    if milestone.milestone == WHOLE_DEAL:
        return max(confirmed[d] for d in terms.deliverable_ids)
    return confirmed[milestone.milestone]


def commission_due(terms: DealTerms, now: datetime, grace: timedelta) -> bool:
    """True once the attribution window (plus `grace` for late updates) has closed."""
    return terms.commission_rate > 0 and now >= terms.attribution_closes_at + grace
