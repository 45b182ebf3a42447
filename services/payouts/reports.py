"""What the CLI shows: a creator's statement and the ledger check, read from the store."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.payouts.domain.ledger import (
    TransferKind,
    chapter_of,
    creator_in_transit,
    creator_paid,
    creator_payable,
    creator_receivable,
)
from services.payouts.domain.ledger_check import ledger_problems
from services.payouts.domain.lifecycle import Payout
from services.payouts.store import PayoutDatabase
from shared.money import Money

# The steps of an attempt to pay (the accrual and conversion happen once per payout).
_ATTEMPT_STEPS = frozenset({TransferKind.DISPATCH, TransferKind.RETURN, TransferKind.SETTLEMENT})


@dataclass(frozen=True)
class AttemptStep:
    """One ledger step of one attempt (chapter) of a payout: sent, returned or settled."""

    payout_id: str
    attempt: int
    step: str
    amount: Money


@dataclass(frozen=True)
class Statement:
    """A creator's payouts (commission top-ups and clawbacks among them) and balances."""

    creator_id: str
    payouts: list[Payout]
    # (label, currency) -> balance, derived from the ledger's postings; "to repay" is what the
    # creator still owes from clawbacks (shown as a positive amount)
    balances: dict[tuple[str, str], Decimal]
    # The attempts of payouts that failed or were retried, from their ledger transfers.
    attempts: list[AttemptStep]


async def statement(db: PayoutDatabase, creator_id: str) -> Statement:
    accounts = {
        creator_payable(creator_id): ("owed", 1),
        creator_in_transit(creator_id): ("in transit", 1),
        creator_paid(creator_id): ("paid", 1),
        creator_receivable(creator_id): ("to repay (clawbacks)", -1),
    }
    async with db.snapshot() as repo:
        payouts = await repo.payouts_of(creator_id)
        balances = await repo.balances(list(accounts))
        retried = [p.payout_id for p in payouts if p.chapter > 1 or p.status == "failed"]
        transfers = await repo.transfers(retried) if retried else []
    attempts = [
        AttemptStep(
            t.payout_id,
            chapter_of(t.transfer_id),
            t.kind,
            next(p.amount for p in t.postings if p.amount.amount > 0),
        )
        for t in transfers
        if t.kind in _ATTEMPT_STEPS
    ]
    shown = {}
    for (account, currency), balance in sorted(balances.items()):
        label, sign = accounts[account]
        if balance != 0:
            shown[(label, currency)] = sign * balance
    return Statement(creator_id, payouts, shown, attempts)


@dataclass(frozen=True)
class LedgerReport:
    payouts: int
    transfers: int
    postings: int
    problems: list[str]


async def check_ledger(db: PayoutDatabase) -> LedgerReport:
    """Read every payout and transfer as of one moment and list broken invariants (read at
    two moments, a payout moving between the reads looks unbalanced)."""
    async with db.snapshot() as repo:
        payouts = await repo.payouts_of()
        transfers = await repo.transfers()
    return LedgerReport(
        len(payouts),
        len(transfers),
        sum(len(t.postings) for t in transfers),
        ledger_problems(payouts, transfers),
    )
