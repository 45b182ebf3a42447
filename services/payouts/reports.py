"""What the CLI shows: a creator's statement, a brand's escrow statement, the ledger check and
the yearly tax totals, read from the store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from services.payouts.domain.amounts import SAME_CURRENCY
from services.payouts.domain.escrow import Funding
from services.payouts.domain.ledger import (
    TransferKind,
    brand_escrow,
    chapter_of,
    creator_in_transit,
    creator_paid,
    creator_payable,
    creator_receivable,
)
from services.payouts.domain.ledger_check import ledger_problems
from services.payouts.domain.lifecycle import Payout
from services.payouts.domain.tax import USD, TaxReport, tax_report
from services.payouts.store.port import PayoutsStore, PayoutsTransaction
from shared.contract.money import FxSnapshot, Money

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
    # Whether payouts holds a payout account of the creator: with no payouts either, payouts
    # has never heard of this creator (a mistyped id, say).
    has_account: bool


async def statement(db: PayoutsStore, creator_id: str) -> Statement:
    accounts = {
        creator_payable(creator_id): ("owed", 1),
        creator_in_transit(creator_id): ("in transit", 1),
        creator_paid(creator_id): ("paid", 1),
        creator_receivable(creator_id): ("to repay (clawbacks)", -1),
    }
    async with db.snapshot() as repo:
        payouts = await repo.payouts_of(creator_id)
        has_account = bool(await repo.accounts([creator_id]))
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
    return Statement(creator_id, payouts, shown, attempts, has_account)


@dataclass(frozen=True)
class EscrowTotals:
    """A brand's escrow in one currency: paid in, drawn by payouts, given back by clawbacks,
    and what is left (from the ledger's postings)."""

    funded: Money
    drawn: Money
    returned: Money
    balance: Money


@dataclass(frozen=True)
class BrandStatement:
    """A brand's fundings, the payouts drawn on its escrow (and those waiting for funds) and
    its escrow per currency."""

    brand_id: str
    fundings: list[Funding]
    payouts: list[Payout]
    totals: dict[str, EscrowTotals]
    # Whether payouts knows the brand (a deal, a funding or a payout of it); False: payouts
    # has never heard of this brand.
    known: bool


async def brand_statement(db: PayoutsStore, brand_id: str) -> BrandStatement:
    async with db.snapshot() as repo:
        fundings = await repo.fundings_of(brand_id)
        payouts = await repo.payouts_of_brand(brand_id)
        # Only asked when nothing else shows the brand: a brand with many deals is read once.
        known = bool(fundings or payouts) or bool(await repo.deals_of_brand(brand_id))
        balances = await repo.balances([brand_escrow(brand_id)])
    funded: dict[str, Money] = {}
    for funding in fundings:
        currency = funding.amount.currency
        funded[currency] = funded.get(currency, Money.zero(currency)) + funding.amount
    returned: dict[str, Money] = {}
    for payout in payouts:
        if payout.kind == "clawback":
            currency = payout.gross.currency
            returned[currency] = returned.get(currency, Money.zero(currency)) + payout.gross
    currencies = sorted(set(funded) | set(returned) | {c for _, c in balances})
    totals = {}
    for currency in currencies:
        balance = Money(balances.get((brand_escrow(brand_id), currency), Decimal(0)), currency)
        paid_in = funded.get(currency, Money.zero(currency))
        given_back = returned.get(currency, Money.zero(currency))
        # The escrow's postings are fundings, clawbacks and the payouts' draws: the rest.
        totals[currency] = EscrowTotals(
            paid_in, paid_in + given_back - balance, given_back, balance
        )
    return BrandStatement(brand_id, fundings, payouts, totals, known)


@dataclass(frozen=True)
class LedgerReport:
    payouts: int
    transfers: int
    postings: int
    problems: list[str]


async def check_ledger(db: PayoutsStore) -> LedgerReport:
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


async def tax_totals(db: PayoutsStore, year: int, threshold: Money) -> TaxReport:
    """What each creator was paid in `year` (payouts settled in it, UTC), in USD at the rate
    recorded with each payout, grouped by tax form (`domain.tax.tax_report`)."""
    start, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    async with db.snapshot() as repo:
        settled = await repo.settled_between(start, end)
        accounts = await repo.accounts({p.creator_id for p in settled})
        valued: list[tuple[Payout, FxSnapshot | None]] = []
        for payout in settled:
            valued.append((payout, await snapshot_for_usd(repo, payout)))
    return tax_report(year, valued, accounts, threshold)


async def snapshot_for_usd(repo: PayoutsTransaction, payout: Payout) -> FxSnapshot | None:
    """The snapshot that values the payout in USD: the one recorded with it, or for a payout
    paid in its own currency the one in force when its rate was locked."""
    if payout.net is None or USD in (payout.net.currency, payout.payable_share.currency):
        return None
    if payout.fx is not None and payout.fx.source != SAME_CURRENCY and payout.fx.as_of:
        return await repo.fx_in_force(payout.fx.as_of)
    if payout.fx_at is None:
        return None
    return await repo.fx_in_force(payout.fx_at)
