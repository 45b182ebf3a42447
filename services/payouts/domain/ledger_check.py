"""Ledger invariants, checked from postings alone against the payouts they belong to.

1. every transfer sums to zero in each currency (hence the whole ledger does);
2. each payout's postings leave exactly the balances its status implies: e.g. a sent payout
   has its net amount in the creator's in-transit account and nothing left payable; a
   clawback leaves its creator share owed by the creator (receivable) and a payout that
   repaid one its `recovered` part;
3. each attempt of a payout (a chapter: the first, then one per retry) returns or settles
   only what that attempt dispatched, and no attempt is beyond the payout's current one;
4. no brand's escrow is negative: payouts drew no more than the brand's fundings (and
   clawbacks) put in (domain/escrow.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from services.payouts.domain.escrow import awaits_funds, escrow_problems
from services.payouts.domain.ledger import (
    FX_CLEARING,
    PLATFORM_FEES,
    Balances,
    Posting,
    TransferKind,
    balances,
    brand_escrow,
    chapter_of,
    creator_in_transit,
    creator_paid,
    creator_payable,
    creator_receivable,
    currency_totals,
)
from services.payouts.domain.lifecycle import Payout


@dataclass(frozen=True)
class PostedTransfer:
    """A transfer as recorded in the ledger."""

    transfer_id: str
    payout_id: str
    kind: str
    postings: tuple[Posting, ...]


def expected_balances(payout: Payout) -> Balances:
    """What a payout's postings must add up to, per (account, currency), zeros left out."""
    result: dict[tuple[str, str], Decimal] = {}

    def add(account: str, currency: str, amount: Decimal) -> None:
        result[(account, currency)] = result.get((account, currency), Decimal(0)) + amount

    share, gross = payout.creator_share, payout.gross
    if awaits_funds(payout):
        return {}  # nothing drawn from the escrow yet
    if payout.kind == "clawback":
        add(brand_escrow(payout.brand_id), gross.currency, gross.amount)
        add(PLATFORM_FEES, gross.currency, -payout.platform_fee.amount)
        add(creator_receivable(payout.creator_id), share.currency, -share.amount)
        return {k: v for k, v in result.items() if v != 0}
    add(brand_escrow(payout.brand_id), gross.currency, -gross.amount)
    add(PLATFORM_FEES, gross.currency, payout.platform_fee.amount)
    if payout.net is None:
        add(creator_payable(payout.creator_id), share.currency, share.amount)
    else:
        net, payable = payout.net, payout.payable_share
        if payout.recovered is not None:
            add(creator_receivable(payout.creator_id), share.currency, payout.recovered.amount)
        if net.currency != share.currency:
            add(FX_CLEARING, share.currency, payable.amount)
            add(FX_CLEARING, net.currency, -net.amount)
        where = {
            "sent": creator_in_transit(payout.creator_id),
            "settled": creator_paid(payout.creator_id),
        }.get(payout.status, creator_payable(payout.creator_id))
        add(where, net.currency, net.amount)
    return {k: v for k, v in result.items() if v != 0}


def ledger_problems(payouts: Iterable[Payout], transfers: Sequence[PostedTransfer]) -> list[str]:
    """Every broken invariant, one line each; an empty list means the ledger is sound."""
    problems = []
    for transfer in transfers:
        for currency, total in currency_totals(transfer.postings).items():
            if total != 0:
                problems.append(f"transfer {transfer.transfer_id}: {currency} sums to {total}")
    all_postings = [p for t in transfers for p in t.postings]
    for currency, total in currency_totals(all_postings).items():
        if total != 0:
            problems.append(f"ledger: {currency} postings sum to {total}, not 0")
    problems += escrow_problems(all_postings)
    # A funding's transfer belongs to the funding (its payout_id is the funding id).
    transfers = [t for t in transfers if t.kind != TransferKind.FUNDING.value]
    by_payout: dict[str, list[Posting]] = {}
    for transfer in transfers:
        by_payout.setdefault(transfer.payout_id, []).extend(transfer.postings)
    steps: dict[str, set[tuple[int, str]]] = {}
    for transfer in transfers:
        steps.setdefault(transfer.payout_id, set()).add(
            (chapter_of(transfer.transfer_id), transfer.kind)
        )
    known = set()
    for payout in payouts:
        known.add(payout.payout_id)
        problems += _attempt_problems(payout, steps.get(payout.payout_id, set()))
        actual = {k: v for k, v in balances(by_payout.get(payout.payout_id, ())).items() if v != 0}
        expected = expected_balances(payout)
        if actual != expected:
            problems.append(
                f"payout {payout.payout_id} ({payout.status}): postings give "
                f"{_show(actual)}, its status implies {_show(expected)}"
            )
    for orphan in sorted(set(by_payout) - known):
        problems.append(f"payout {orphan}: postings exist but the payout does not")
    return problems


_CLOSING: Final = (TransferKind.RETURN.value, TransferKind.SETTLEMENT.value)


def _attempt_problems(payout: Payout, steps: set[tuple[int, str]]) -> list[str]:
    problems = []
    for chapter, kind in sorted(steps):
        if chapter > payout.chapter:
            problems.append(
                f"payout {payout.payout_id}: a {kind} of attempt {chapter}, beyond its "
                f"attempt {payout.chapter}"
            )
        if kind in _CLOSING and (chapter, TransferKind.DISPATCH.value) not in steps:
            problems.append(
                f"payout {payout.payout_id}: a {kind} of attempt {chapter} that dispatched nothing"
            )
    return problems


def _show(values: Balances) -> str:
    return "{" + ", ".join(f"{a} {v} {c}" for (a, c), v in sorted(values.items())) + "}"
