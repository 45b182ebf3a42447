"""Yearly totals paid to each creator, in USD, grouped by the tax form that decides how they
are reported: US persons (W-9) at or above the 1099-NEC threshold, foreign persons (W-8BEN,
W-8BEN-E) apart, and anyone paid without an accepted form on file now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from services.payouts.domain.accounts import PayoutAccount
from services.payouts.domain.amounts import SAME_CURRENCY
from services.payouts.domain.lifecycle import Payout
from shared.contract.money import FxSnapshot, Money, MoneyError

USD: Final = "USD"
DEFAULT_1099_THRESHOLD: Final = Money.of("600.00", USD)

Filing = Literal["1099-NEC", "W-8", "no form"]


@dataclass(frozen=True)
class CreatorTotal:
    """What one creator was paid in the year: payouts settled, their sum in USD."""

    creator_id: str
    tax_form: str
    payouts: int
    paid: Money


@dataclass(frozen=True)
class TaxReport:
    year: int
    threshold: Money
    us_reportable: list[CreatorTotal]  # W-9, paid at least the threshold: a 1099-NEC each
    us_below: list[CreatorTotal]  # W-9, paid less
    foreign: list[CreatorTotal]  # W-8BEN / W-8BEN-E
    no_form: list[CreatorTotal]  # no accepted form on file now: look them up
    # Payouts whose USD value the recorded rate cannot give (payout id: why).
    unconverted: dict[str, str] = field(default_factory=dict)


def filing(account: PayoutAccount | None) -> Filing:
    """How payments to this creator are reported: a W-9 makes them a US person (1099-NEC),
    a W-8BEN or W-8BEN-E a foreign one; anything else needs an operator's look."""
    form = None if account is None else account.tax_form_type
    if form == "W-9":
        return "1099-NEC"
    if form in ("W-8BEN", "W-8BEN-E"):
        return "W-8"
    return "no form"


def in_usd(payout: Payout, snapshot: FxSnapshot | None) -> Money:
    """The USD value of what `payout` paid (its `net`), rounded half-even to the cent.

    Exact when the net or the creator's share was in USD (the share is what the recorded rate
    converted). Otherwise the net is converted with `snapshot`, which must be the one
    recorded with the payout (its `fx` as_of and source); a payout converted without a
    snapshot (same currency) takes the one in force when its rate was locked. Raises
    MoneyError when no snapshot fits or it lacks a rate.
    """
    if payout.net is None:
        raise MoneyError(f"payout {payout.payout_id} was never converted")
    if payout.net.currency == USD:
        return payout.net
    if payout.payable_share.currency == USD:
        return payout.payable_share
    if snapshot is None:
        raise MoneyError(f"no FX snapshot to value {payout.net} in USD")
    if not _recorded_with(payout, snapshot):
        raise MoneyError(
            f"the snapshot recorded with payout {payout.payout_id} is not stored "
            f"(found as_of={snapshot.as_of.isoformat()} source={snapshot.source})"
        )
    return snapshot.convert(payout.net, USD).result


def _recorded_with(payout: Payout, snapshot: FxSnapshot) -> bool:
    """Whether `snapshot` is the one the payout's conversion recorded (any will do for a payout
    paid in its own currency)."""
    recorded = payout.fx
    if recorded is None or recorded.source == SAME_CURRENCY:
        return True
    return (recorded.as_of, recorded.source) == (snapshot.as_of, snapshot.source)


def tax_report(
    year: int,
    settled: Iterable[tuple[Payout, FxSnapshot | None]],
    accounts: Mapping[str, PayoutAccount],
    threshold: Money = DEFAULT_1099_THRESHOLD,
) -> TaxReport:
    """Totals of the payouts settled in `year` (each with the snapshot `in_usd` needs), per
    creator, in USD, grouped by `filing`; creators sorted by id."""
    if threshold.currency != USD or threshold.is_negative():
        raise MoneyError(f"the 1099-NEC threshold is an amount of USD, got {threshold}")
    sums: dict[str, tuple[int, Money]] = {}
    unconverted: dict[str, str] = {}
    for payout, snapshot in settled:
        if payout.kind == "clawback":
            continue  # repaid out of later payouts, whose net is already less
        try:
            value = in_usd(payout, snapshot)
        except MoneyError as error:
            unconverted[payout.payout_id] = str(error)
            continue
        count, total = sums.get(payout.creator_id, (0, Money.zero(USD)))
        sums[payout.creator_id] = (count + 1, total + value)
    groups: dict[str, list[CreatorTotal]] = {"us": [], "below": [], "W-8": [], "no form": []}
    for creator_id in sorted(sums):
        count, total = sums[creator_id]
        account = accounts.get(creator_id)
        form = "none" if account is None else account.tax_form_type
        row = CreatorTotal(creator_id, form, count, total)
        how = filing(account)
        if how == "1099-NEC":
            groups["us" if total >= threshold else "below"].append(row)
        else:
            groups[how].append(row)
    return TaxReport(
        year,
        threshold,
        groups["us"],
        groups["below"],
        groups["W-8"],
        groups["no form"],
        unconverted,
    )
