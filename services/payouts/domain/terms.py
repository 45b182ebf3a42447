"""When a deal's money becomes payable: fee milestones and the commission window."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from shared.contract.money import Money

FeeSchedule = Literal["on_completion", "per_deliverable"]
# A clawback is no payout: it records commission taken back from the creator (a receivable
# recovered from their later payouts), with no transfer to the creator and no status event.
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
class DealTerms:
    """What payouts needs from `deal.signed`. `fee` is in the deal's currency.

    `fee_schedule` is fixed when the deal is first stored (the setting in force then) and
    never changes: paying one deal's fee under two schedules would pay it twice.
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

    def same_terms(self, other: DealTerms) -> bool:
        """Whether `other` (from a re-sent `deal.signed`) states the same terms; the fee
        schedule is ours, not the event's, and is left out."""
        return replace(other, fee_schedule=self.fee_schedule) == self

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


def payable_fee_milestones(terms: DealTerms, confirmed: Set[str]) -> tuple[Milestone, ...]:
    """The fee milestones whose deliverables are all confirmed; zero amounts are left out.

    Idempotent: callers create each returned milestone once (its business key is unique).
    """
    if terms.fee_schedule == "on_completion":
        payable = terms.deliverable_ids <= confirmed
        milestones = fee_milestones(terms) if payable else ()
    else:
        milestones = tuple(m for m in fee_milestones(terms) if m.milestone in confirmed)
    return tuple(m for m in milestones if not m.amount.is_zero())


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
