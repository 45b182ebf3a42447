"""Commission that follows attribution: each decision books only the difference between what is
owed now and what the deal's earlier commission payouts and clawbacks booked.

The first decision pays the whole commission (milestone WHOLE_DEAL); each later one, after a
late order or refund changed the attributed revenue, is the deal's n-th adjustment (milestone
`adjustment-<n>`): a top-up payout when more is owed, a clawback when less is. Each has its own
business key, so a repeated decision never books it twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from services.payouts.domain.amounts import split_platform_fee
from services.payouts.domain.brand_view import AttributionFigures
from services.payouts.domain.lifecycle import Payout
from services.payouts.domain.terms import WHOLE_DEAL
from shared.contract.money import Money


@dataclass(frozen=True)
class AttributedRevenue:
    """A deal's revenue as tracking attributed it (net of refunds) `as_of` then: the base of
    its commission; the newest update wins (`replaces`)."""

    deal_id: str
    revenue: Money
    as_of: datetime
    # Everything else the update said (counts, spend, ratios): kept with the revenue for the
    # brand API, never used for money.
    figures: AttributionFigures | None = None
    # The update's number among its deal's (None: published before tracking numbered them).
    sequence: int | None = None


def replaces(
    kept_as_of: datetime, kept_sequence: int | None, as_of: datetime, sequence: int | None
) -> bool:
    """Whether a deal's update (`as_of`, `sequence`) replaces the one kept: the greater
    number where both have one (an older one, replayed from a dead-letter topic, never wins
    again), else the later `as_of`; an unnumbered one after a numbered one only if later, and
    of two unnumbered ones with one `as_of`, the one read last."""
    if kept_sequence is not None and sequence is not None:
        return sequence > kept_sequence
    if kept_sequence is not None:
        return as_of > kept_as_of
    return as_of >= kept_as_of


@dataclass(frozen=True)
class CommissionStep:
    """One booking: `gross` (positive, deal currency) paid to the creator (`commission`) or
    taken back from them (`clawback`); `platform_fee` is the part of `gross` that is the
    platform's cut, taken with a payout and returned with a clawback."""

    kind: Literal["commission", "clawback"]
    milestone: str
    gross: Money
    platform_fee: Money


def adjustment_milestone(booked: int) -> str:
    """The milestone of a deal's next commission booking, after `booked` earlier ones."""
    return WHOLE_DEAL if booked == 0 else f"adjustment-{booked}"


def next_commission_step(
    owed: Money, booked: Sequence[Payout], platform_fee_bps: int
) -> CommissionStep | None:
    """What to book so the deal's commission bookings add up to `owed` (deal currency, not
    negative), or None when they already do.

    The platform's cut follows the total too: after the step, the platform holds exactly
    `split_platform_fee(owed)`'s share of the commission, so several adjustments round once,
    not once each. (With a fixed `platform_fee_bps` the cut never moves against the total;
    if the setting changed between decisions, the step never takes the platform's cut from the
    creator's share or returns more of it than the step's amount.)
    """
    paid = Money.zero(owed.currency)
    paid_fee = Money.zero(owed.currency)
    for entry in booked:
        if entry.kind == "clawback":
            paid, paid_fee = paid - entry.gross, paid_fee - entry.platform_fee
        else:
            paid, paid_fee = paid + entry.gross, paid_fee + entry.platform_fee
    difference = owed - paid
    if difference.is_zero():
        return None
    target_fee = split_platform_fee(owed, platform_fee_bps).platform_fee
    milestone = adjustment_milestone(len(booked))
    if difference.is_negative():
        back = -difference
        return CommissionStep("clawback", milestone, back, _within(paid_fee - target_fee, back))
    return CommissionStep(
        "commission", milestone, difference, _within(target_fee - paid_fee, difference)
    )


def _within(amount: Money, most: Money) -> Money:
    """`amount` limited to 0..`most`."""
    if amount.is_negative():
        return Money.zero(amount.currency)
    return min(amount, most)
