"""What the CLI shows: a creator's statement and the ledger check, read from the store."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.payouts.domain.ledger import creator_in_transit, creator_paid, creator_payable
from services.payouts.domain.ledger_check import ledger_problems
from services.payouts.domain.lifecycle import Payout
from services.payouts.store import PayoutDatabase


@dataclass(frozen=True)
class Statement:
    creator_id: str
    payouts: list[Payout]
    # (label, currency) -> balance, derived from the ledger's postings
    balances: dict[tuple[str, str], Decimal]


async def statement(db: PayoutDatabase, creator_id: str) -> Statement:
    accounts = {
        creator_payable(creator_id): "owed",
        creator_in_transit(creator_id): "in transit",
        creator_paid(creator_id): "paid",
    }
    async with db.transaction() as repo:
        payouts = await repo.payouts_of(creator_id)
        balances = await repo.balances(list(accounts))
    return Statement(
        creator_id,
        payouts,
        {(accounts[a], c): v for (a, c), v in sorted(balances.items()) if v != 0},
    )


@dataclass(frozen=True)
class LedgerReport:
    payouts: int
    transfers: int
    postings: int
    problems: list[str]


async def check_ledger(db: PayoutDatabase) -> LedgerReport:
    """Read every payout and transfer in one snapshot and list broken invariants."""
    async with db.transaction() as repo:
        payouts = await repo.payouts_of()
        transfers = await repo.transfers()
    return LedgerReport(
        len(payouts),
        len(transfers),
        sum(len(t.postings) for t in transfers),
        ledger_problems(payouts, transfers),
    )
