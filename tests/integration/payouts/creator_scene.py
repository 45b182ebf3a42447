"""Payouts written as the service writes them, for the creator page's tests: two creators,
`alice` with a settled and a held payout and `bob` with a scheduled one, and the steps that
move a payout on while a creator watches."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Final

import asyncpg
import httpx

from services.payouts import translate
from services.payouts.creator_page.access import CreatorAccess
from services.payouts.domain import lifecycle
from services.payouts.domain.accounts import PayoutAccount
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.contract.money import FxSnapshot, Money
from tests.unit.payouts.builders import sealed, uid
from tests.unit.payouts.store_contract import terms

T0: Final = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SNAPSHOT: Final = FxSnapshot("USD", {"EUR": Decimal("0.9")}, T0 - timedelta(hours=1), "ecb")
LEASE: Final = timedelta(seconds=60)
# Each client at an address of its own: redemptions are rate-limited per address.
ADDRESSES = (f"10.20.{n // 250}.{n % 250 + 1}" for n in itertools.count())


def account(creator_id: str, destination: str, *, tax_status: str = "verified") -> PayoutAccount:
    return PayoutAccount(
        creator_id, "paypal", sealed(creator_id, destination), "EUR", "W-9", tax_status, T0
    )


class Writer:
    """Stores payouts and their transitions as the service does: state, ledger, and each
    published status in the outbox."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.db = PostgresPayoutsStore(pool)

    async def deal(self, deal_id: str, creator_id: str, *confirmed: tuple[str, datetime]) -> None:
        async with self.db.transaction() as repo:
            await repo.add_deal(terms(deal_id, creator_id), f"signed-{deal_id}")
            for deliverable, at in confirmed:
                await repo.add_confirmation(deal_id, deliverable, "brand", at)

    async def step(
        self, transition: lifecycle.Transition, at: datetime, previous: str | None
    ) -> lifecycle.Payout:
        payout = transition.payout
        async with self.db.transaction() as repo:
            if previous is None:
                assert await repo.add_payout(payout)
            else:
                await repo.save_payouts([(payout, previous)])  # type: ignore[list-item]
            await repo.post(transition.transfers)
            if transition.publish:
                await repo.enqueue([translate.status_event(payout, at)])
        return payout

    async def create(
        self, deal_id: str, creator_id: str, to: PayoutAccount | None, at: datetime
    ) -> lifecycle.Payout:
        created = lifecycle.create(
            terms(deal_id, creator_id),
            "fee",
            "",
            Money.of("100.00", "USD"),
            platform_fee_bps=100,
            account=to,
            snapshot=SNAPSHOT,
            now=at,
            fx_at=at,
        )
        return await self.step(created, at, None)

    async def settled(self, deal_id: str, creator_id: str, to: PayoutAccount) -> lifecycle.Payout:
        payout = await self.create(deal_id, creator_id, to, T0 + timedelta(minutes=1))
        claimed = lifecycle.claim(payout, to, T0, LEASE, rail="paypal")
        payout = await self.step(claimed, T0 + timedelta(minutes=1), "scheduled")
        payout = await self.step(
            lifecycle.mark_sent(payout, "PAYOUT-REF-7731"), T0 + timedelta(minutes=2), "scheduled"
        )
        return await self.step(lifecycle.settle(payout), T0 + timedelta(hours=3), "sent")

    async def released_and_sent(
        self, held: lifecycle.Payout, to: PayoutAccount, at: datetime
    ) -> lifecycle.Payout:
        """A held payout whose reason went away (its tax form verified), sent at `at`."""
        payout = await self.step(lifecycle.release(held, to, SNAPSHOT, at), at, "held")
        claimed = lifecycle.claim(payout, to, at, LEASE, rail="paypal")
        payout = await self.step(claimed, at, "scheduled")
        return await self.step(lifecycle.mark_sent(payout, "PAYOUT-REF-9904"), at, "scheduled")


class Scene:
    """Two creators: `alice` with a settled and a held payout, `bob` with a scheduled one."""

    def __init__(self) -> None:
        self.alice, self.bob = uid("cr-alice"), uid("cr-bob")
        self.alice_deals = (uid("deal-a"), uid("deal-a"))
        self.bob_deal = uid("deal-b")
        # Where their money goes: easy to search for, never to be shown.
        self.alice_destination = f"{uid('alice')}@mail.example"
        self.bob_destination = uid("acct_bob")
        self.payouts: dict[str, lifecycle.Payout] = {}

    async def write(self, pool: asyncpg.Pool) -> None:
        writer = Writer(pool)
        settled_deal, held_deal = self.alice_deals
        alice = account(self.alice, self.alice_destination)
        async with writer.db.transaction() as repo:
            await repo.save_account(alice)
            await repo.save_account(account(self.bob, self.bob_destination))
        await writer.deal(settled_deal, self.alice, ("dl-1", T0 - timedelta(hours=2)), ("dl-2", T0))
        await writer.deal(held_deal, self.alice, ("dl-1", T0))
        await writer.deal(self.bob_deal, self.bob, ("dl-1", T0))
        self.payouts["settled"] = await writer.settled(settled_deal, self.alice, alice)
        # Its tax form was not verified yet when the work was confirmed: held.
        pending = account(self.alice, self.alice_destination, tax_status="pending")
        self.payouts["held"] = await writer.create(held_deal, self.alice, pending, T0)
        self.payouts["bob"] = await writer.create(
            self.bob_deal, self.bob, account(self.bob, self.bob_destination), T0
        )


async def new_link(pool: asyncpg.Pool, creator_id: str, *, age: timedelta = timedelta()) -> str:
    link = await CreatorAccess(pool).new_link(
        creator_id, datetime.now(UTC) - age, timedelta(minutes=15)
    )
    return f"/c/link/{link.token}"


def client_for(app: object, address: str | None = None) -> httpx.AsyncClient:
    """A browser at its own address, on https (the session cookie is Secure)."""
    transport = httpx.ASGITransport(app=app, client=(address or next(ADDRESSES), 50000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="https://creators.test")


async def sign_in(browser: httpx.AsyncClient, path: str) -> httpx.Response:
    opened = await browser.get(path)
    assert opened.status_code == 200 and "Continue" in opened.text
    return await browser.post(path)
