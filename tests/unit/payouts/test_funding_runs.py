"""Many fundings of one brand in one batch (issue 18): the brand's waiting payouts are looked
at once per run of fundings, not once per funding, and the batch releases exactly what the
same fundings release one batch at a time (in-memory store)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from services.payouts.domain.ledger import brand_escrow
from services.payouts.store.memory import MemoryPayoutsTransaction
from shared.contract.money import Money
from tests.unit.payouts.builders import account, confirmed, deal_signed, funded, uid
from tests.unit.payouts.harness import Harness

FEE = Money.of("450.00", "USD")


async def waiting_deals(h: Harness, brand: str, count: int) -> list[str]:
    """`count` deals of `brand`, confirmed in this order, each payout waiting for funds."""
    deals = []
    for n in range(count):
        deal, creator = f"deal-{brand}-{n:03d}", uid("cr")
        await h.consume(
            account(creator, currency="USD", form="W-9"),
            deal_signed(deal, creator, brand_id=brand),
            confirmed(deal, "dl-1"),
            confirmed(deal, "dl-2"),
        )
        deals.append(deal)
    assert {p.status for p in h.payouts()} == {"held"}
    return deals


async def reads_of_waiting_payouts(monkeypatch: pytest.MonkeyPatch, fundings: int) -> int:
    h = Harness(fund_brands=False)
    brand = uid("br")
    await waiting_deals(h, brand, fundings)
    reads = 0
    original = MemoryPayoutsTransaction.awaiting_funds

    async def counted(self: MemoryPayoutsTransaction, brand_ids: Any) -> Any:
        nonlocal reads
        reads += 1
        return await original(self, brand_ids)

    monkeypatch.setattr(MemoryPayoutsTransaction, "awaiting_funds", counted)
    await h.consume(*(funded(brand, FEE) for _ in range(fundings)))
    monkeypatch.undo()
    assert {p.status for p in h.payouts()} == {"scheduled"}
    return reads


async def test_a_run_of_fundings_reads_the_waiting_payouts_as_often_as_one_funding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each read is of every payout waiting: once per funding, a burst of fundings for a
    # brand with many waiting payouts costs fundings x waiting rows (a 30 s batch).
    assert await reads_of_waiting_payouts(monkeypatch, 30) == await reads_of_waiting_payouts(
        monkeypatch, 2
    )


def statuses(h: Harness) -> dict[str, str]:
    return {p.deal_id: p.status for p in h.payouts()}


def escrow(h: Harness, brand: str, currency: str = "USD") -> Decimal:
    account = brand_escrow(brand)
    postings = (p for t in h.db.state.transfers for p in t.postings if p.account == account)
    return sum((p.amount.amount for p in postings if p.amount.currency == currency), Decimal(0))


def outbox(h: Harness) -> list[tuple[str, str]]:
    return [(e.data.deal_id, e.type) for e in h.db.state.outbox]


async def test_a_batch_of_fundings_releases_what_they_release_one_at_a_time() -> None:
    one, other = "br-one", "br-other"
    # Interleaved brands, a funding sent twice, one that covers less than a fee, one of
    # another currency, and a confirmation between two fundings of the same brand.
    late, creator = "deal-late", uid("cr")

    def fundings(first: str, second: str) -> list[Any]:
        twice = funded(first, FEE)
        return [
            funded(first, FEE),
            twice,
            twice.model_copy(update={"id": uid("again")}),
            funded(second, Money.of("700.00", "USD")),
            funded(first, Money.of("300.00", "USD")),
            funded(first, Money.of("5000.00", "EUR")),
            confirmed(late, "dl-1"),
            confirmed(late, "dl-2"),
            funded(first, Money.of("600.00", "USD")),
            funded(second, FEE),
        ]

    outcomes = []
    for batched in (False, True):
        h = Harness(fund_brands=False)
        await waiting_deals(h, one, 4)
        await h.consume(
            account(creator, currency="USD", form="W-9"), deal_signed(late, creator, brand_id=one)
        )
        await waiting_deals(h, other, 3)
        events = fundings(one, other)
        if batched:
            await h.consume(*events)
        else:
            for event in events:
                await h.consume(event)
        outcomes.append(h)
    apart, together = outcomes
    assert statuses(together) == statuses(apart)
    assert sorted(statuses(together).values()).count("scheduled") == 6
    assert outbox(together) == outbox(apart)
    assert together.problems() == [] and apart.problems() == []
    for brand in (one, other):
        for currency in ("USD", "EUR"):
            assert escrow(together, brand, currency) == escrow(apart, brand, currency)
    # 1,800 USD in (the funding sent twice counted once), four fees of 450 out.
    assert escrow(together, one) == Decimal("0.00")
    assert escrow(together, other) == Decimal("250.00")
