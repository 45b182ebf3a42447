"""Double-entry ledger rules: accounts, transfers that balance per currency, derived balances.

Sign convention: a transfer moves money *from* accounts with negative postings *to* accounts
with positive ones. Every transfer's postings sum to zero in each currency, so the whole
ledger does too; balances are sums of postings and are never stored.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from shared.contract.money import Money, MoneyError


def brand_escrow(brand_id: str) -> str:
    """Funds a brand committed to its deals; drawn down as payouts become payable."""
    return _ESCROW + brand_id


def brand_funding(brand_id: str) -> str:
    """What the brand paid in (`brand.funded`): its negative balance is the total funded."""
    return f"brand_funding:{brand_id}"


_ESCROW = "brand_escrow:"


def escrow_of(account: str) -> str | None:
    """The brand whose escrow `account` is, or None for any other account."""
    return account.removeprefix(_ESCROW) if account.startswith(_ESCROW) else None


def creator_payable(creator_id: str) -> str:
    """Owed to the creator and not yet handed to a payment provider."""
    return f"creator_payable:{creator_id}"


def creator_in_transit(creator_id: str) -> str:
    """Handed to the payment provider, not yet confirmed as arrived."""
    return f"creator_in_transit:{creator_id}"


def creator_paid(creator_id: str) -> str:
    """Confirmed as arrived at the creator (settled)."""
    return f"creator_paid:{creator_id}"


_RECEIVABLE = "creator_receivable:"


def creator_receivable(creator_id: str) -> str:
    """Commission clawed back from the creator (negative while some is still owed by them),
    recovered from their later payouts in the same currency."""
    return _RECEIVABLE + creator_id


def receivable_of(account: str) -> str | None:
    """The creator whose receivable `account` is, or None for any other account."""
    return account.removeprefix(_RECEIVABLE) if account.startswith(_RECEIVABLE) else None


PLATFORM_FEES = "platform_fees"
# One clearing account; it holds a balance per currency (postings carry the currency).
FX_CLEARING = "fx_clearing"


class TransferKind(StrEnum):
    ACCRUAL = "accrual"  # brand escrow -> creator payable + platform fees (deal currency)
    CONVERSION = "conversion"  # creator payable (deal ccy) -> FX clearing -> payable (payout ccy)
    # creator payable (old payout ccy) -> FX clearing -> payable (new payout ccy): the creator
    # changed their account's currency before the payout was paid
    RECONVERSION = "reconversion"
    DISPATCH = "dispatch"  # creator payable -> in transit
    SETTLEMENT = "settlement"  # in transit -> paid
    RETURN = "return"  # in transit -> creator payable (provider reported failure after sending)
    # receivable from the creator + platform fees -> brand escrow (deal currency): commission
    # paid on revenue that was later refunded is owed back by the creator
    CLAWBACK = "clawback"
    # creator payable -> receivable (deal currency): a later payout repays a clawback first
    RECOVERY = "recovery"
    FUNDING = "funding"  # brand funding (paid in) -> brand escrow; of a funding, not a payout


class LedgerError(MoneyError):
    """A transfer that would break a ledger invariant."""


@dataclass(frozen=True)
class Posting:
    account: str
    amount: Money


@dataclass(frozen=True)
class Transfer:
    """Postings that move money in one step of one payout; balanced per currency.

    `transfer_id` is `<payout_id>:<kind>` (`<payout_id>:<kind>:<chapter>` from a payout's
    second attempt on), so a step of each attempt can be recorded at most once. A `funding`
    transfer belongs to a brand's funding, not a payout: its `payout_id` is the funding id.
    """

    payout_id: str
    kind: TransferKind
    postings: tuple[Posting, ...]
    chapter: int = 1

    def __post_init__(self) -> None:
        if len(self.postings) < 2:
            raise LedgerError(f"transfer {self.transfer_id} needs at least two postings")
        unbalanced = {c: s for c, s in _sums(self.postings).items() if s != 0}
        if unbalanced:
            raise LedgerError(f"transfer {self.transfer_id} does not balance: {unbalanced}")

    @property
    def transfer_id(self) -> str:
        base = f"{self.payout_id}:{self.kind}"
        return base if self.chapter == 1 else f"{base}:{self.chapter}"


def chapter_of(transfer_id: str) -> int:
    """The attempt of its payout a recorded transfer belongs to (`Transfer.transfer_id`)."""
    last = transfer_id.rsplit(":", 1)[-1]
    return int(last) if last.isdigit() else 1


def _sums(postings: Iterable[Posting]) -> dict[str, Decimal]:
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for posting in postings:
        sums[posting.amount.currency] += posting.amount.amount
    return dict(sums)


def move(
    payout_id: str, kind: TransferKind, *legs: tuple[str, str, Money], chapter: int = 1
) -> tuple[Transfer, ...]:
    """The transfer of each `(from_account, to_account, amount)` leg, zero legs dropped; no
    transfer at all (an empty tuple) when every leg is zero. `chapter`: the payout's attempt."""
    postings: list[Posting] = []
    for source, target, amount in legs:
        if amount.is_negative():
            raise LedgerError(f"move {amount} from {source} to {target}: amounts are positive")
        if amount.is_zero():
            continue
        postings += [Posting(source, -amount), Posting(target, amount)]
    return (Transfer(payout_id, kind, tuple(postings), chapter),) if postings else ()


Balances = dict[tuple[str, str], Decimal]


def balances(postings: Iterable[Posting]) -> Balances:
    """Balance of every (account, currency) that has postings: the sum of its postings."""
    result: Balances = defaultdict(Decimal)
    for posting in postings:
        result[(posting.account, posting.amount.currency)] += posting.amount.amount
    return dict(result)


def currency_totals(postings: Iterable[Posting]) -> dict[str, Decimal]:
    """Sum of all postings per currency; zero in every currency for a sound ledger."""
    return _sums(postings)
