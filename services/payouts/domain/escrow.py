"""A brand's escrow: what it paid in (`brand.funded`) less what its payouts drew.

A payout draws its gross amount (the creator's share and the platform's fee: the accrual of
domain/lifecycle.py) from the brand's escrow in the deal currency when it is created, and only
if the escrow covers it; otherwise it waits, held `awaiting_funds`, and draws nothing. Waiting
payouts are released in order of confirmation (the moment each became owed, `fx_at`): a later
payout never jumps an earlier one of the same brand and currency, and none is released beyond
what the escrow holds, so the escrow never goes negative. A clawback gives its commission back
to the escrow (domain/ledger.py) and releases waiting payouts as a funding does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from services.payouts.domain.accounts import HoldCode
from services.payouts.domain.ledger import (
    Posting,
    Transfer,
    TransferKind,
    balances,
    brand_escrow,
    brand_funding,
    escrow_of,
    move,
)
from services.payouts.domain.lifecycle import Payout
from shared.contract.money import Money


@dataclass(frozen=True)
class Funding:
    """Money a brand paid in, credited to its escrow once (`funding_id` is the key)."""

    funding_id: str
    brand_id: str
    amount: Money
    funded_at: datetime

    def transfer(self) -> Transfer:
        """The ledger transfer crediting the escrow: brand funding -> brand escrow."""
        [transfer] = move(
            self.funding_id,
            TransferKind.FUNDING,
            (brand_funding(self.brand_id), brand_escrow(self.brand_id), self.amount),
        )
        return transfer


def awaits_funds(payout: Payout) -> bool:
    """Held until its brand's escrow covers it (nothing drawn yet)."""
    return (
        payout.status == "held"
        and payout.hold is not None
        and payout.hold.code is HoldCode.AWAITING_FUNDS
    )


FundingKey = tuple[bool, datetime | None, str]


def funding_key(fx_at: datetime | None, payout_id: str) -> FundingKey:
    """Where a payout stands in the funding order: earliest confirmed (`fx_at`) first, then
    by payout id."""
    return (fx_at is None, fx_at, payout_id)


def place_of(payout: Payout) -> FundingKey:
    """The payout's place in the funding order."""
    return funding_key(payout.fx_at, payout.payout_id)


def funding_order(waiting: Iterable[Payout]) -> list[Payout]:
    """Payouts waiting for funds in the order they are released: earliest confirmed first."""
    return sorted(waiting, key=place_of)


def escrow_balances(postings: Iterable[Posting]) -> dict[tuple[str, str], Decimal]:
    """Each brand's escrow per (brand, currency), from postings alone."""
    return {
        (brand, currency): amount
        for (account, currency), amount in balances(postings).items()
        if (brand := escrow_of(account)) is not None
    }


def escrow_problems(postings: Sequence[Posting]) -> list[str]:
    """A line for each brand escrow that is negative: drawn beyond what was paid in."""
    return [
        f"escrow of brand {brand}: {amount} {currency}, negative (drawn beyond its fundings)"
        for (brand, currency), amount in sorted(escrow_balances(postings).items())
        if amount < 0
    ]
