"""The contract every `PayoutsStore` adapter passes (subclassed per adapter)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.payouts.domain import lifecycle
from services.payouts.domain.accounts import HoldCode, PayoutAccount
from services.payouts.domain.brand_view import AttributionFigures
from services.payouts.domain.escrow import Funding
from services.payouts.domain.ledger import Transfer, TransferKind, escrow_of
from services.payouts.domain.terms import Cancellation, Confirmation, DealTerms, DeliverableTerm
from services.payouts.notices import DueEmail
from services.payouts.store.port import (
    Attribution,
    FeeCeilingExceeded,
    PayoutsStore,
    PayoutsTransaction,
    StaleUpdate,
)
from services.payouts.translate import status_data
from shared.contract.events import CloudEvent, make_event
from shared.contract.money import FxSnapshot, Money
from tests.unit.payouts.builders import DESTINATIONS, T0, confirmed, sealed, uid
from tests.unit.payouts.harness import delivery

LONG_AGO = datetime(2001, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def terms(
    deal_id: str, creator_id: str, *, closes: datetime = LONG_AGO, brand_id: str = "br"
) -> DealTerms:
    return DealTerms(
        deal_id=deal_id,
        campaign_id="cmp",
        brand_id=brand_id,
        creator_id=creator_id,
        fee=Money.of("1000.00", "USD"),
        commission_rate=Decimal("0.1"),
        deliverables=(DeliverableTerm("dl-1", 2), DeliverableTerm("dl-2", 1)),
        ends_at=closes,
        attribution_window_days=0,
    )


def figures(revenue: Money, as_of: datetime, *, orders: int) -> AttributionFigures:
    """Tracking's figures of a deal, every field set (none left to a default)."""
    return AttributionFigures(
        as_of=as_of,
        posts=2,
        likes=310,
        comments=12,
        shares=4,
        views=9000,
        impressions=12000,
        reach=8000,
        orders=orders,
        revenue=revenue,
        spend=Money.of("110.00", revenue.currency),
        engagement_rate=Decimal("0.0412"),
        cpm=Decimal("9.1667"),
        cpe=None,
        cpa=Decimal("36.6667"),
        roas=Decimal("0.7273"),
        roi_pct=Decimal("-27.27"),
        saves=7,
        attribution_model="last_click",
        leak_suspected=True,
        suspected_orders=1,
        withheld_orders=1,
        withheld_revenue=Money.of("12.50", revenue.currency),
    )


def acct(
    creator_id: str, currency: str = "EUR", *, at: datetime = LONG_AGO, status: str = "verified"
) -> PayoutAccount:
    return PayoutAccount(
        creator_id, "stripe", sealed(creator_id, "acct_x1"), currency, "W-9", status, at
    )


def new_payout(
    deal_id: str,
    creator_id: str,
    account: PayoutAccount | None,
    milestone: str = "",
    *,
    amount: str = "100.00",
    brand_id: str = "br",
    funded: bool = True,
) -> lifecycle.Transition:
    snapshot = FxSnapshot("USD", {"EUR": Decimal("0.9")}, LONG_AGO, "t")
    return lifecycle.create(
        terms(deal_id, creator_id, brand_id=brand_id),
        "fee",
        milestone,
        Money.of(amount, "USD"),
        platform_fee_bps=100,
        account=account,
        snapshot=snapshot,
        now=LONG_AGO,
        unfunded=None if funded else "escrow empty",
    )


def commission_payout(
    deal_terms: DealTerms,
    amount: Money,
    *,
    platform_fee_bps: int = 100,
    account: PayoutAccount | None = None,
) -> lifecycle.Transition:
    """A deal's commission of `amount` (USD), created long ago with no FX snapshot: the
    booked commission that clawbacks and statements are checked against."""
    return lifecycle.create(
        deal_terms,
        "commission",
        "",
        amount,
        platform_fee_bps=platform_fee_bps,
        account=account,
        snapshot=None,
        now=LONG_AGO,
    )


async def add_payout(repo: PayoutsTransaction, payout: lifecycle.Payout) -> bool:
    """Store the payout's deal (as every fee payout has one), then the payout."""
    await repo.add_deal(terms(payout.deal_id, payout.creator_id), "e")
    return await repo.add_payout(payout)


async def fund_draws(repo: PayoutsTransaction, transfers: tuple[Transfer, ...]) -> None:
    """Fund each brand's escrow with exactly what these transfers' accruals draw from it, as
    a brand that paid for its payouts did."""
    for transfer in transfers:
        if transfer.kind is not TransferKind.ACCRUAL:
            continue
        for brand_id, drawn in _draws(transfer).items():
            funding = Funding(f"fund-{transfer.transfer_id}", brand_id, drawn, T0)
            if await repo.add_funding(funding, funding.funding_id):
                await repo.post([funding.transfer()])


def _draws(transfer: Transfer) -> dict[str, Money]:
    drawn: dict[str, Money] = {}
    for posting in transfer.postings:
        brand_id = escrow_of(posting.account)
        if brand_id is not None:
            currency = posting.amount.currency
            drawn[brand_id] = drawn.get(brand_id, Money.zero(currency)) - posting.amount
    return drawn


def waiting_payout(
    deal_id: str, creator_id: str, brand_id: str, *, fx_at: datetime
) -> lifecycle.Payout:
    """A payout held until its brand funds it: nothing drawn."""
    snapshot = FxSnapshot("USD", {"EUR": Decimal("0.9")}, LONG_AGO, "t")
    created = lifecycle.create(
        terms(deal_id, creator_id, brand_id=brand_id),
        "fee",
        "",
        Money.of("100.00", "USD"),
        platform_fee_bps=100,
        account=acct(creator_id),
        snapshot=snapshot,
        now=fx_at,
        fx_at=fx_at,
        unfunded="escrow empty",
    )
    assert created.transfers == ()
    return created.payout


class PayoutStoreContract:
    """Subclasses provide a `db` fixture."""

    @pytest.fixture
    def db(self) -> Any:
        raise NotImplementedError

    async def test_deal_terms_round_trip_and_first_version_wins(self, db: PayoutsStore) -> None:
        deal, creator = uid("deal"), uid("cr")
        async with db.transaction() as repo:
            assert await repo.add_deal(terms(deal, creator), "e1")
            assert not await repo.add_deal(terms(deal, "someone-else"), "e2")
            assert await repo.deal(deal) == terms(deal, creator)
            assert await repo.deals([deal, "nope"]) == {deal: terms(deal, creator)}
            assert await repo.deal("nope") is None

    async def test_deal_versions_are_kept_before_and_after_the_deal(self, db: PayoutsStore) -> None:
        deal, creator = uid("deal"), uid("cr")
        signed = replace(terms(deal, creator), sent_at=T0)
        amended = replace(signed, version=3, fee=Money.of("1500.00", "USD"), sent_at=T0 + DAY)
        async with db.transaction() as repo:
            assert await repo.add_deal_version(amended, "e3")  # before its deal
            assert not await repo.add_deal_version(replace(amended, fee=signed.fee), "e4")
            assert await repo.add_deal(signed, "e1")
            assert await repo.add_deal_version(signed, "e1")
            assert await repo.deal_versions(deal) == [signed, amended]
            assert await repo.deal_versions("nope") == []
            in_force = replace(amended, sent_at=None, cancelled_at=T0 + 2 * DAY)
            await repo.save_terms(replace(in_force, creator_id="ignored"))
            assert await repo.deal(deal) == in_force
            assert await repo.deals([deal]) == {deal: in_force}

    async def test_the_earliest_cancellation_per_brand_is_kept(self, db: PayoutsStore) -> None:
        deal = uid("deal")
        late = Cancellation(deal, "br", T0 + DAY, "late")
        async with db.transaction() as repo:
            assert await repo.add_cancellation(late, "e1")
            assert await repo.add_cancellation(replace(late, cancelled_at=T0, reason="early"), "e2")
            assert not await repo.add_cancellation(late, "e3")
            assert await repo.add_cancellation(Cancellation(deal, "other", T0, "not theirs"), "e4")
            assert await repo.cancellations(deal) == [
                Cancellation(deal, "br", T0, "early"),
                Cancellation(deal, "other", T0, "not theirs"),
            ]
            assert await repo.cancellations("nope") == []

    async def test_fee_paid_sums_each_deal_fee_payouts(self, db: PayoutsStore) -> None:
        deal, creator = uid("deal"), uid("cr")
        async with db.transaction() as repo:
            await add_payout(repo, new_payout(deal, creator, None, "dl-1", amount="150.00").payout)
            await repo.add_payouts([new_payout(deal, creator, None, "dl-2", amount="50.00").payout])
            assert await repo.fee_paid([deal, "nope"]) == {
                deal: {"dl-1": Money.of("150.00", "USD"), "dl-2": Money.of("50.00", "USD")},
                "nope": {},
            }

    async def test_inbox_claims_each_event_once(self, db: PayoutsStore) -> None:
        event = confirmed(uid("deal"), "dl-1")
        async with db.transaction() as repo:
            assert await repo.claim([(event, delivery(event))]) == {event.identity}
        async with db.transaction() as repo:
            assert await repo.claim([(event, delivery(event))]) == set()
        # Ids are unique per source only: another producer's event with this id is new.
        other = event.model_copy(update={"source": "https://brand-tool.example"})
        async with db.transaction() as repo:
            assert await repo.claim([(other, delivery(other))]) == {other.identity}

    async def test_confirmations_and_attribution_keep_the_latest(self, db: PayoutsStore) -> None:
        deal = uid("deal")
        async with db.transaction() as repo:
            assert await repo.add_confirmation(deal, "dl-1", "auto", LONG_AGO)
            assert not await repo.add_confirmation(deal, "dl-1", "auto", LONG_AGO)
            assert await repo.confirmed(deal) == {"dl-1": LONG_AGO}
            assert await repo.save_attribution(deal, Money.of("5", "USD"), LONG_AGO + timedelta(1))
            assert not await repo.save_attribution(deal, Money.of("9", "USD"), LONG_AGO)
            assert await repo.attributions([deal]) == {
                deal: Attribution(Money.of("5.00", "USD"), 1)
            }
            assert await repo.save_attribution(deal, Money.of("7", "USD"), LONG_AGO + timedelta(1))
            assert await repo.attributions([deal, uid("deal")]) == {
                deal: Attribution(Money.of("7.00", "USD"), 2)
            }

    async def test_a_numbered_attribution_is_replaced_only_by_a_greater_number(
        self, db: PayoutsStore
    ) -> None:
        deal, at, usd = uid("deal"), LONG_AGO + timedelta(days=1), lambda a: Money.of(a, "USD")
        async with db.transaction() as repo:
            assert await repo.save_attribution(deal, usd("5"), at)  # before numbering
            assert await repo.save_attribution(deal, usd("6"), at, sequence=6)
            # Sequence 5, replayed from a dead-letter topic with the same as_of: older.
            assert not await repo.save_attribution(deal, usd("9"), at, sequence=5)
            assert not await repo.save_attribution(deal, usd("9"), at)  # unnumbered, as old
            assert await repo.save_attribution(deal, usd("7"), LONG_AGO, sequence=7)
            assert await repo.attributions([deal]) == {deal: Attribution(usd("7.00"), 3)}

    async def test_attribution_figures_follow_the_kept_attribution(self, db: PayoutsStore) -> None:
        deal, older_deal = uid("deal"), uid("deal")
        later = LONG_AGO + timedelta(days=1)
        async with db.transaction() as repo:
            kept = figures(Money.of("80.00", "USD"), later, orders=3)
            assert await repo.save_attribution(deal, kept.revenue, later, kept)
            # An older update (a replay from elsewhere, reordered) changes neither.
            stale = figures(Money.of("20.00", "USD"), LONG_AGO, orders=1)
            assert not await repo.save_attribution(deal, stale.revenue, LONG_AGO, stale)
            # An attribution kept before figures were: none to show.
            assert await repo.save_attribution(older_deal, Money.of("5", "USD"), later)
        async with db.snapshot() as repo:
            assert await repo.attribution_figures([deal, older_deal, uid("deal")]) == {deal: kept}
            assert await repo.attributions([deal]) == {
                deal: Attribution(Money.of("80.00", "USD"), 1)
            }

    async def test_deals_of_a_brand_by_campaign_and_creator(self, db: PayoutsStore) -> None:
        brand, other_brand, creator = uid("br"), uid("br"), uid("cr")
        mine = [replace(terms(uid("deal"), creator, brand_id=brand), campaign_id=c) for c in "ab"]
        others = terms(uid("deal"), creator, brand_id=other_brand)
        async with db.transaction() as repo:
            for deal in (*mine, others):
                assert await repo.add_deal(deal, f"signed-{deal.deal_id}")
        async with db.snapshot() as repo:
            assert await repo.deals_of_brand(brand) == sorted(mine, key=lambda d: d.deal_id)
            assert await repo.deals_of_brand(brand, campaign_id="b") == [mine[1]]
            assert await repo.deals_of_brand(brand, creator_id=creator) == sorted(
                mine, key=lambda d: d.deal_id
            )
            assert await repo.deals_of_brand(brand, creator_id=uid("cr")) == []
            assert await repo.deals_of_brand(other_brand) == [others]

    async def test_only_the_deals_brand_confirms_and_another_cannot_block_it(
        self, db: PayoutsStore
    ) -> None:
        deal = uid("deal")
        later = LONG_AGO + timedelta(hours=1)
        async with db.transaction() as repo:
            # Another brand's confirmation arrives first, before the deal is known.
            assert await repo.add_confirmation(deal, "dl-1", "u", LONG_AGO, signed_by="rival")
            assert await repo.confirmed(deal) == {}
            await repo.add_deal(terms(deal, uid("cr")), "e")
            assert await repo.confirmed(deal) == {}
            # The deal's own brand confirms after it: that one counts.
            assert await repo.add_confirmation(deal, "dl-1", "u", later, signed_by="br")
            assert not await repo.add_confirmation(deal, "dl-1", "u", later, signed_by="br")
            assert await repo.add_confirmation(deal, "dl-2", "auto", later)  # unsigned
            assert await repo.confirmed(deal) == {"dl-1": later, "dl-2": later}

    async def test_confirmations_of_many_deals_and_added_at_once(self, db: PayoutsStore) -> None:
        deal, other, nothing = uid("deal"), uid("deal"), uid("deal")
        later = LONG_AGO + timedelta(hours=1)
        async with db.transaction() as repo:
            await repo.add_deal(terms(deal, uid("cr")), "e")
            assert await repo.add_confirmation(deal, "dl-1", "u", later, signed_by="br")
            await repo.add_confirmations(
                [
                    Confirmation(deal, "dl-1", "u", LONG_AGO, signed_by="rival"),
                    Confirmation(deal, "dl-2", "auto", LONG_AGO, post_received_at=LONG_AGO),
                    Confirmation(other, "dl-1", "auto", later),
                ]
            )
            assert await repo.confirmations_of([deal, other, nothing, deal]) == {
                deal: {("dl-1", "br"): later, ("dl-1", "rival"): LONG_AGO, ("dl-2", ""): LONG_AGO},
                other: {("dl-1", ""): later},
                nothing: {},
            }
            # What counts is as if each was added alone.
            assert await repo.confirmed(deal) == {"dl-1": later, "dl-2": LONG_AGO}
            assert await repo.post_arrivals([deal]) == {(deal, LONG_AGO): LONG_AGO}
        # One stored already (same deliverable, same signer) fails the whole call.
        with pytest.raises(StaleUpdate):
            async with db.transaction() as repo:
                await repo.add_confirmations(
                    [
                        Confirmation(nothing, "dl-1", "auto", later),
                        Confirmation(deal, "dl-1", "u", LONG_AGO, signed_by="br"),
                    ]
                )
        async with db.transaction() as repo:
            assert await repo.confirmations_of([nothing]) == {nothing: {}}
            await repo.add_confirmations([])

    async def test_post_arrivals_by_confirmation_of_the_deals_brand_only(
        self, db: PayoutsStore
    ) -> None:
        deal, other = uid("deal"), uid("deal")
        arrived = LONG_AGO - timedelta(seconds=1)
        later = LONG_AGO + timedelta(hours=1)
        async with db.transaction() as repo:
            await repo.add_deal(terms(deal, uid("cr")), "e")
            assert await repo.add_confirmation(deal, "dl-1", "auto", LONG_AGO, "", arrived)
            assert await repo.add_confirmation(deal, "dl-2", "u", later, signed_by="br")
            # Another brand's confirmation never counts, with its arrival or without.
            assert await repo.add_confirmation(deal, "dl-2", "u", later, "rival", arrived)
            assert await repo.add_confirmation(other, "dl-1", "auto", later)
            assert await repo.post_arrivals([deal, other, uid("deal")]) == {
                (deal, LONG_AGO): arrived
            }
            assert await repo.post_arrivals([]) == {}

    async def test_accounts_newer_wins_and_destination_stays_secret(self, db: PayoutsStore) -> None:
        creator = uid("cr")
        async with db.transaction() as repo:
            assert await repo.save_account(acct(creator, "USD", at=LONG_AGO + timedelta(1)))
            assert not await repo.save_account(acct(creator, "EUR"))
            stored = (await repo.accounts([creator]))[creator]
        assert stored.currency == "USD"
        assert DESTINATIONS.open(creator, stored.destination).get_secret_value() == "acct_x1"
        assert "acct_x1" not in repr(stored) and b"acct_x1" not in stored.destination.data

    async def test_a_fallback_rail_is_kept_sealed(self, db: PayoutsStore) -> None:
        creator = uid("cr")
        plain = acct(creator)
        fallback = sealed(creator, "creator@example.com")
        with_fallback = replace(
            plain,
            updated_at=LONG_AGO + timedelta(1),
            fallback_method="paypal",
            fallback_destination=fallback,
        )
        async with db.transaction() as repo:
            assert await repo.save_account(plain)
            assert (await repo.accounts([creator]))[creator].fallback_method is None
            assert await repo.save_account(with_fallback)
            stored = (await repo.accounts([creator]))[creator]
        assert stored.fallback_method == "paypal" and stored.fallback_destination is not None
        assert stored.fallback_destination.fingerprint == fallback.fingerprint
        opened = DESTINATIONS.open(creator, stored.fallback_destination)
        assert opened.get_secret_value() == "creator@example.com"
        assert b"creator@example.com" not in stored.fallback_destination.data

    async def test_a_payout_keeps_its_rail(self, db: PayoutsStore) -> None:
        deal, creator = uid("deal"), uid("cr")
        created = new_payout(deal, creator, acct(creator)).payout
        assert created.rail is None
        claimed = replace(created, rail="wise", in_doubt=True, attempts=1, leased=True)
        async with db.transaction() as repo:
            assert await add_payout(repo, created)
            await repo.save_payouts([(claimed, created.status)])
            [stored] = await repo.payouts_for_update([created.payout_id])
        assert (stored.rail, stored.in_doubt, stored.leased) == ("wise", True, True)

    async def test_cool_offs_are_kept_and_their_end_found(self, db: PayoutsStore) -> None:
        creator, deal = uid("cr"), uid("deal")
        until = LONG_AGO + timedelta(days=1)
        cooling = replace(acct(creator), cooling_off_until=until)
        async with db.transaction() as repo:
            assert not await repo.in_flight(creator)
            assert await repo.save_account(cooling)
            stored = (await repo.accounts([creator]))[creator]
            assert stored.cooling_off_until == until
            assert stored.destination.fingerprint is not None
            assert stored.destination.fingerprint == cooling.destination.fingerprint
            held = new_payout(deal, creator, stored).payout  # created at LONG_AGO
            assert held.hold is not None and held.hold.code is HoldCode.DESTINATION_COOLOFF
            assert await add_payout(repo, held)
            assert await repo.in_flight(creator)

            async def ended(at: datetime) -> list[str]:
                found = await repo.cooled_off_for_update(at, 1000)
                return [p.payout_id for p in found if p.creator_id == creator]

            assert await ended(until - timedelta(seconds=1)) == []
            assert await ended(until) == [held.payout_id]

    async def test_business_key_is_unique(self, db: PayoutsStore) -> None:
        deal, creator = uid("deal"), uid("cr")
        first = new_payout(deal, creator, acct(creator)).payout
        async with db.transaction() as repo:
            assert await add_payout(repo, first)
        async with db.transaction() as repo:
            assert not await add_payout(repo, first)
            assert await add_payout(repo, new_payout(deal, creator, None, milestone="dl-1").payout)
            [stored] = await repo.payouts_for_update([first.payout_id])
        assert stored == first

    async def test_payouts_added_at_once_by_business_key(self, db: PayoutsStore) -> None:
        deal, creator = uid("deal"), uid("cr")
        first = new_payout(deal, creator, acct(creator), milestone="dl-1").payout
        second = new_payout(deal, creator, None, milestone="dl-2").payout
        async with db.transaction() as repo:
            assert await repo.payout_grosses([deal]) == {deal: {}}
            await repo.add_deal(terms(deal, creator), "e")
            await repo.add_payouts([first, second])
            await repo.add_payouts([])
            other = uid("deal")
            assert await repo.payout_grosses([deal, other]) == {
                deal: {("fee", "dl-1"): first.gross, ("fee", "dl-2"): second.gross},
                other: {},
            }
            stored = await repo.payouts_for_update([first.payout_id, second.payout_id])
        assert sorted(stored, key=lambda p: p.milestone) == [first, second]
        again = new_payout(deal, creator, None, milestone="dl-1").payout
        with pytest.raises(StaleUpdate):
            async with db.transaction() as repo:
                await repo.add_payouts([again])
        # The fee ceiling counts the payouts added before each one in the same call.
        whole = uid("deal")
        part = new_payout(deal, creator, None, milestone="dl-1", amount="0.01").payout
        with pytest.raises(FeeCeilingExceeded, match="above its fee"):
            async with db.transaction() as repo:
                await repo.add_deal(terms(whole, creator), "e")
                await repo.add_payouts(
                    [
                        new_payout(whole, creator, None, amount="1000.00").payout,
                        replace(part, deal_id=whole, payout_id=uid("po")),
                    ]
                )

    async def test_fee_payouts_never_add_up_above_the_fee(self, db: PayoutsStore) -> None:
        deal, creator = uid("deal"), uid("cr")
        whole = new_payout(deal, creator, acct(creator), amount="1000.00").payout
        part = new_payout(deal, creator, acct(creator), milestone="dl-1", amount="0.01").payout
        async with db.transaction() as repo:
            assert await add_payout(repo, whole)
        with pytest.raises(FeeCeilingExceeded, match="above its fee"):
            async with db.transaction() as repo:
                await repo.add_payout(part)
        orphan = new_payout(uid("deal"), creator, acct(creator), amount="0.01").payout
        with pytest.raises(FeeCeilingExceeded):
            async with db.transaction() as repo:
                await repo.add_payout(orphan)  # no stored deal
        async with db.transaction() as repo:
            assert [p.payout_id for p in await repo.payouts_of(creator)] == [whole.payout_id]

    async def test_a_webhook_event_is_claimed_once_per_rail(self, db: PayoutsStore) -> None:
        event = uid("evt")
        async with db.transaction() as repo:
            assert await repo.claim_webhook("stripe", event, NOW)
            assert not await repo.claim_webhook("stripe", event, NOW)
            assert await repo.claim_webhook("wise", event, NOW)  # ids are the rail's own
        with pytest.raises(RuntimeError):
            async with db.transaction() as repo:
                assert await repo.claim_webhook("paypal", event, NOW)
                raise RuntimeError("rolled back with the change it came with")
        async with db.transaction() as repo:
            assert await repo.claim_webhook("paypal", event, NOW)
            assert not await repo.claim_webhook("stripe", event, NOW)

    async def test_a_transfer_finds_its_payout_on_its_rail_only(self, db: PayoutsStore) -> None:
        deal, creator = uid("deal"), uid("cr")
        created = new_payout(deal, creator, acct(creator))
        ref = uid("tr")
        claimed = replace(created.payout, rail="paypal", attempts=1)
        sent = lifecycle.mark_sent(claimed, ref)
        async with db.transaction() as repo:
            await add_payout(repo, created.payout)
            await repo.post(created.transfers)
            await repo.save_payouts([(sent.payout, "scheduled")])
            assert await repo.payout_of_transfer("paypal", ref) == created.payout.payout_id
            assert await repo.payout_of_transfer("stripe", ref) is None
            assert await repo.payout_of_transfer("paypal", uid("tr")) is None

    async def test_transitions_ledger_and_stale_updates(self, db: PayoutsStore) -> None:
        deal, creator = uid("deal"), uid("cr")
        created = new_payout(deal, creator, acct(creator))
        async with db.transaction() as repo:
            await add_payout(repo, created.payout)
            await repo.post(created.transfers)
        sent = lifecycle.mark_sent(created.payout, "tr_1")
        async with db.transaction() as repo:
            await repo.save_payouts([(sent.payout, "scheduled")])
            await repo.post(sent.transfers)
        with pytest.raises(StaleUpdate):
            async with db.transaction() as repo:
                await repo.save_payouts([(sent.payout, "scheduled")])
        async with db.transaction() as repo:
            [stored] = await repo.payouts_for_update([created.payout.payout_id])
            transfers = await repo.transfers([created.payout.payout_id])
            balances = await repo.balances([f"creator_in_transit:{creator}"])
        assert stored == sent.payout
        assert [t.kind for t in transfers] == ["accrual", "conversion", "dispatch"]
        assert balances == {(f"creator_in_transit:{creator}", "EUR"): Decimal("89.10")}

    async def test_a_snapshot_reads_one_moment_while_payouts_move(self, db: PayoutsStore) -> None:
        """What the ledger check relies on: a payout sent between its reads of payouts and of
        transfers would look unbalanced."""
        creator = uid("cr")
        created = new_payout(uid("deal"), creator, acct(creator))
        async with db.transaction() as repo:
            await add_payout(repo, created.payout)
            await repo.post(created.transfers)
        async with db.snapshot() as view:
            [before] = await view.payouts_of(creator)
            sent = lifecycle.mark_sent(created.payout, "tr_1")
            async with db.transaction() as repo:  # another instance, meanwhile
                await repo.save_payouts([(sent.payout, "scheduled")])
                await repo.post(sent.transfers)
            assert await view.payouts_of(creator) == [before]
            seen = await view.transfers([created.payout.payout_id])
        assert before.status == created.payout.status
        assert [t.kind for t in seen] == ["accrual", "conversion"]
        async with db.snapshot() as view:
            assert [p.status for p in await view.payouts_of(creator)] == [sent.payout.status]

    async def test_failed_transaction_leaves_nothing(self, db: PayoutsStore) -> None:
        deal, creator = uid("deal"), uid("cr")
        created = new_payout(deal, creator, acct(creator))
        with pytest.raises(RuntimeError):
            async with db.transaction() as repo:
                await add_payout(repo, created.payout)
                await repo.post(created.transfers)
                raise RuntimeError("boom")
        async with db.transaction() as repo:
            assert await repo.payouts_for_update([created.payout.payout_id]) == []
            assert await repo.transfers([created.payout.payout_id]) == []

    async def test_due_and_held_queries(self, db: PayoutsStore) -> None:
        creator = uid("cr")
        due = [new_payout(uid("deal"), creator, acct(creator)).payout for _ in range(3)]
        held = new_payout(uid("deal"), creator, None).payout
        async with db.transaction() as repo:
            for p in [*due, held]:
                await add_payout(repo, p)
        async with db.transaction() as repo:
            found = await repo.due_for_update(LONG_AGO, 1000)
            assert {p.payout_id for p in due} <= {p.payout_id for p in found}
            assert held.payout_id not in {p.payout_id for p in found}
            assert await repo.due_for_update(LONG_AGO - timedelta(1), 1000) == []
            mine = await repo.held_for_update(creator_ids=[creator], codes=[HoldCode.NO_ACCOUNT])
            assert [p.payout_id for p in mine] == [held.payout_id]
            assert await repo.held_for_update(creator_ids=[creator], codes=[HoldCode.FX_RATE]) == []
            assert {p.payout_id for p in await repo.payouts_of(creator)} == {
                p.payout_id for p in [*due, held]
            }

    async def test_a_funding_is_kept_once_and_credits_the_escrow(self, db: PayoutsStore) -> None:
        brand = uid("br")
        funding = Funding(uid("fund"), brand, Money.of("250.00", "USD"), T0)
        async with db.transaction() as repo:
            assert await repo.add_funding(funding, "e1")
            await repo.post([funding.transfer()])
        async with db.transaction() as repo:
            assert not await repo.add_funding(funding, "e2")
            assert await repo.funding(funding.funding_id) == funding
            assert await repo.funding("nope") is None
            assert await repo.fundings_of(brand) == [funding]
            assert await repo.escrow_balances([brand, uid("br")]) == {
                (brand, "USD"): Decimal("250.00")
            }
            [posted] = [t for t in await repo.transfers() if t.payout_id == funding.funding_id]
            assert (
                posted.kind == "funding" and posted.transfer_id == f"{funding.funding_id}:funding"
            )

    async def test_the_escrow_follows_many_postings_posted_at_once(self, db: PayoutsStore) -> None:
        one, other = uid("br"), uid("br")
        async with db.transaction() as repo:
            fundings = [
                Funding(uid("fund"), brand, Money.of(amount, currency), T0)
                for brand, amount, currency in [
                    (one, "100.00", "USD"),
                    (other, "30.00", "EUR"),
                    (one, "50.00", "USD"),
                    (one, "7.00", "EUR"),
                    (one, "20.00", "USD"),
                ]
            ]
            for funding in fundings:
                assert await repo.add_funding(funding, funding.funding_id)
            await repo.post([f.transfer() for f in fundings[:4]])
            await repo.post([fundings[4].transfer()])
            assert await repo.escrow_balances([one, other]) == {
                (one, "USD"): Decimal("170.00"),
                (one, "EUR"): Decimal("7.00"),
                (other, "EUR"): Decimal("30.00"),
            }

    async def test_payouts_draw_on_the_escrow_and_wait_for_funds_in_order(
        self, db: PayoutsStore
    ) -> None:
        creator, brand = uid("cr"), uid("br")
        drawn = new_payout(uid("deal"), creator, acct(creator), brand_id=brand)
        later = waiting_payout(uid("deal"), creator, brand, fx_at=LONG_AGO + timedelta(days=2))
        earlier = waiting_payout(uid("deal"), creator, brand, fx_at=LONG_AGO + timedelta(days=1))
        async with db.transaction() as repo:
            await add_payout(repo, drawn.payout)
            await fund_draws(repo, drawn.transfers)
            await repo.post(drawn.transfers)
            for payout in (later, earlier):
                await add_payout(repo, payout)
        async with db.transaction() as repo:
            # Funded with exactly what the first drew: nothing left.
            assert await repo.escrow_balances([brand]) == {(brand, "USD"): Decimal("0.00")}
            waiting = await repo.awaiting_funds([brand, uid("br")])
            assert [p.payout_id for p in waiting] == [earlier.payout_id, later.payout_id]
            mine = [p.payout_id for p in await repo.payouts_of_brand(brand)]
            assert sorted(mine) == sorted(
                [drawn.payout.payout_id, earlier.payout_id, later.payout_id]
            )
            assert await repo.payouts_of_brand(uid("br")) == []

    async def test_commission_due_until_decided(self, db: PayoutsStore) -> None:
        deal = uid("deal")
        closes = LONG_AGO - timedelta(days=400)
        async with db.transaction() as repo:
            await repo.add_deal(terms(deal, uid("cr"), closes=closes), "e")

        async def due(now: datetime, adjustable: timedelta = timedelta(days=30)) -> bool:
            async with db.transaction() as repo:
                found = await repo.commission_due_for_update(now, now - adjustable, 10_000)
            return deal in {d.deal_id for d in found}

        assert not await due(closes - timedelta(seconds=1))
        assert await due(closes)
        async with db.transaction() as repo:
            await repo.commission_decided({deal: 0})
        assert not await due(closes + timedelta(days=1))
        # A late attribution reopens the decision while the commission is adjustable.
        async with db.transaction() as repo:
            await repo.save_attribution(deal, Money.of("9", "USD"), closes)
        assert await due(closes + timedelta(days=1))
        assert not await due(closes + timedelta(days=30))  # final
        async with db.transaction() as repo:
            await repo.commission_decided({deal: 1})
        assert not await due(closes + timedelta(days=1))
        # A deal never decided is decided however late.
        deal = uid("deal")
        async with db.transaction() as repo:
            await repo.add_deal(terms(deal, uid("cr"), closes=closes), "e")
        assert await due(closes + timedelta(days=300))

    async def test_commissions_decided_together_keep_each_deals_revision(
        self, db: PayoutsStore
    ) -> None:
        attributed, unattributed = uid("deal"), uid("deal")
        closes = LONG_AGO - timedelta(days=400)
        async with db.transaction() as repo:
            for deal in (attributed, unattributed):
                await repo.add_deal(terms(deal, uid("cr"), closes=closes), "e")
            await repo.save_attribution(attributed, Money.of("9", "USD"), closes)

        async def due(now: datetime) -> set[str]:
            async with db.transaction() as repo:
                found = await repo.commission_due_for_update(now, now - timedelta(days=30), 10_000)
            return {d.deal_id for d in found} & {attributed, unattributed}

        now = closes + timedelta(days=1)
        assert await due(now) == {attributed, unattributed}
        async with db.transaction() as repo:
            await repo.commission_decided({attributed: 1, unattributed: 0})
            await repo.commission_decided({})
        assert await due(now) == set()
        # Each deal kept its own revision: a first attribution reopens only the deal that had
        # none, a second one the other.
        async with db.transaction() as repo:
            await repo.save_attribution(unattributed, Money.of("3", "USD"), closes)
        assert await due(now) == {unattributed}
        async with db.transaction() as repo:
            await repo.save_attribution(attributed, Money.of("5", "USD"), now)
        assert await due(now) == {attributed, unattributed}

    async def test_commission_booked_lists_commission_payouts_and_clawbacks(
        self, db: PayoutsStore
    ) -> None:
        deal, creator = uid("deal"), uid("cr")
        deal_terms = terms(deal, creator)
        paid = commission_payout(deal_terms, Money.of("10.00", "USD"))
        taken = lifecycle.clawback(
            deal_terms, "adjustment-1", Money.of("4.00", "USD"), Money.of("0.04", "USD")
        )
        async with db.transaction() as repo:
            await add_payout(repo, new_payout(deal, creator, acct(creator)).payout)
            for booked in (paid, taken):
                assert await repo.add_payout(booked.payout)
                await repo.post(booked.transfers)
        async with db.transaction() as repo:
            found = await repo.commission_booked([deal, uid("deal")])
            assert found.keys() == {deal}
            assert sorted(found[deal], key=lambda p: p.kind) == [taken.payout, paid.payout]
            balances = await repo.balances([f"creator_receivable:{creator}"])
        assert balances == {(f"creator_receivable:{creator}", "USD"): Decimal("-3.96")}

    async def test_recovered_part_round_trips(self, db: PayoutsStore) -> None:
        creator = uid("cr")
        held = new_payout(uid("deal"), creator, None).payout
        async with db.transaction() as repo:
            await add_payout(repo, held)
        snapshot = FxSnapshot("USD", {"EUR": Decimal("0.9")}, LONG_AGO, "t")
        released = lifecycle.release(
            held, acct(creator), snapshot, LONG_AGO, Money.of("9.00", "USD")
        )
        async with db.transaction() as repo:
            await repo.save_payouts([(released.payout, "held")])
            [stored] = await repo.payouts_for_update([held.payout_id])
        assert stored == released.payout
        assert stored.recovered == Money.of("9.00", "USD")
        assert stored.net == Money.of("81.00", "EUR")  # (99.00 - 9.00) x 0.9

    async def test_fx_snapshots_in_force_and_judged(self, db: PayoutsStore) -> None:
        # Far in the future, so other tests' snapshots in a shared database come before.
        as_of = datetime(2090, 1, 1, tzinfo=UTC) + timedelta(seconds=int(uid("x")[-6:], 16))
        move = Decimal("0.25")

        def snapshot(eur: str, hours: int) -> FxSnapshot:
            rates = {"EUR": Decimal(eur), "JPY": Decimal("151.32")}
            return FxSnapshot("USD", rates, as_of + timedelta(hours=hours), "t")

        async with db.transaction() as repo:
            # The poisoned one arrives first: judged again once the earlier one is known.
            assert await repo.save_fx(snapshot("100000", 1), uid("e"), move)
            assert await repo.save_fx(snapshot("0.9215", 0), uid("e"), move)
            assert not await repo.save_fx(snapshot("0.9215", 0), uid("e"), move)
            first = await repo.fx_in_force(as_of + timedelta(minutes=1))
            second = await repo.fx_in_force(as_of + timedelta(hours=2))
            before_both = await repo.fx_in_force(as_of - timedelta(microseconds=1))
        assert first is not None and first.as_of == as_of and first.suspect is None
        assert first.rates["JPY"] == Decimal("151.32")
        assert second is not None and second.suspect is not None
        assert "EUR 0.9215 -> 100000 per USD" in second.suspect
        assert before_both is None or before_both.as_of < as_of

    async def test_a_snapshot_is_judged_by_its_own_base_when_another_base_came_between(
        self, db: PayoutsStore
    ) -> None:
        """A feed of another base quoting one rate must not open the door to a poisoned rate:
        the last trusted snapshot shares one currency with the next one, so only the last
        trusted snapshot of the next one's own base can judge it."""
        # Far in the future, with bases of their own, so no other test's snapshot comes between.
        at = datetime(2097, 1, 1, tzinfo=UTC) + timedelta(seconds=int(uid("x")[-6:], 16))

        def snapshot(base: str, rates: dict[str, str], hours: int) -> FxSnapshot:
            quoted = {c: Decimal(r) for c, r in rates.items()}
            return FxSnapshot(base, quoted, at + timedelta(hours=hours), "t")

        async with db.transaction() as repo:
            for saved in (
                snapshot("SEK", {"NOK": "1.02", "DKK": "0.66"}, 0),
                snapshot("ISK", {"SEK": "0.077"}, 1),
                snapshot("SEK", {"NOK": "0.51", "DKK": "0.66"}, 2),  # NOK halved: poisoned
                snapshot("SEK", {"NOK": "1.03", "DKK": "0.66"}, 3),
            ):
                await repo.save_fx(saved, uid("e"), Decimal("0.25"))
            verdicts = [
                await repo.fx_in_force(at + timedelta(hours=h, minutes=1)) for h in range(4)
            ]
        assert [v is not None and v.suspect is None for v in verdicts] == [
            True,
            True,
            False,
            True,
        ]
        poisoned = verdicts[2]
        assert poisoned is not None and poisoned.suspect is not None
        assert "NOK 1.02 -> 0.51 per SEK" in poisoned.suspect

    async def test_the_first_trusted_snapshot_after_a_moment_quoting_both_currencies(
        self, db: PayoutsStore
    ) -> None:
        # Far in the future, and a base of its own, so no other test's snapshot comes between.
        at = datetime(2095, 1, 1, tzinfo=UTC) + timedelta(seconds=int(uid("x")[-6:], 16))

        def snapshot(rates: dict[str, str], hours: int, base: str = "CHF") -> FxSnapshot:
            quoted = {c: Decimal(r) for c, r in rates.items()}
            return FxSnapshot(base, quoted, at + timedelta(hours=hours), "t")

        async with db.transaction() as repo:
            for saved in (
                snapshot({"EUR": "1.05"}, 0),  # at the moment itself: not after it
                snapshot({"JPY": "170"}, 1),  # lacks EUR
                snapshot({"EUR": "1000", "JPY": "100000"}, 2),  # suspect: moved too far
                snapshot({"EUR": "1.06", "JPY": "171"}, 3),
                snapshot({"EUR": "1.07", "JPY": "172"}, 4),
            ):
                await repo.save_fx(saved, uid("e"), Decimal("0.25"))
            found = await repo.fx_first_after(at, at + timedelta(hours=5), ["CHF", "EUR"])
            too_soon = await repo.fx_first_after(at, at + timedelta(hours=2), ["CHF", "EUR"])
            by_base = await repo.fx_first_after(at, at + timedelta(hours=5), ["JPY", "CHF"])
        assert found is not None and found.as_of == at + timedelta(hours=3)
        assert found.rates["EUR"] == Decimal("1.06")
        assert too_soon is None
        assert by_base is not None and by_base.as_of == at + timedelta(hours=1)

    async def test_settled_between_finds_payouts_by_when_their_settlement_was_posted(
        self, db: PayoutsStore
    ) -> None:
        creator = uid("cr")
        created = new_payout(uid("deal"), creator, acct(creator))
        sent = lifecycle.mark_sent(created.payout, "tr_tax")
        settled = lifecycle.settle(sent.payout)
        unsettled = new_payout(uid("deal"), creator, acct(creator))
        async with db.transaction() as repo:
            for payout in (created.payout, unsettled.payout):
                await add_payout(repo, payout)
            await repo.post([*created.transfers, *unsettled.transfers])
            await repo.save_payouts([(settled.payout, "scheduled")])
            await repo.post([*sent.transfers, *settled.transfers])
        now = datetime.now(UTC)
        async with db.snapshot() as repo:
            found = await repo.settled_between(now - timedelta(hours=1), now + timedelta(hours=1))
            later = await repo.settled_between(now + timedelta(hours=1), now + timedelta(hours=2))
        assert [p for p in found if p.creator_id == creator] == [settled.payout]
        assert [p for p in later if p.creator_id == creator] == []
        # Returned after it settled: paid nothing, until settled again (then counted once).
        back = lifecycle.returned(settled.payout, "wise: transfer bounced_back")
        async with db.transaction() as repo:
            await repo.save_payouts([(back.payout, "settled")])
            await repo.post(back.transfers)
            returned = await repo.settled_between(
                now - timedelta(hours=1), now + timedelta(hours=1)
            )
        assert [p for p in returned if p.creator_id == creator] == []
        again = lifecycle.retry(back.payout, acct(creator), now)
        claimed = lifecycle.claim(again.payout, acct(creator), now, timedelta(seconds=30))
        resent = lifecycle.mark_sent(claimed.payout, "tr_tax_2")
        resettled = lifecycle.settle(resent.payout)
        async with db.transaction() as repo:
            await repo.save_payouts([(resettled.payout, "failed")])
            await repo.post([*resent.transfers, *resettled.transfers])
            paid = await repo.settled_between(now - timedelta(hours=1), now + timedelta(hours=1))
        assert [p for p in paid if p.creator_id == creator] == [resettled.payout]

    async def test_dated_payouts_are_dated_by_when_owed_and_when_settled(
        self, db: PayoutsStore
    ) -> None:
        creator, deal = uid("cr"), uid("deal")
        created = new_payout(deal, creator, acct(creator))  # owed at LONG_AGO
        sent = lifecycle.mark_sent(created.payout, "tr_statement")
        settled = lifecycle.settle(sent.payout)
        waiting = new_payout(uid("deal"), creator, None)  # held: no account
        taken = lifecycle.clawback(
            terms(deal, creator), "adjustment-1", Money.of("4.00", "USD"), Money.of("0.04", "USD")
        )
        someone_elses = new_payout(uid("deal"), uid("cr"), None)
        before = datetime.now(UTC)
        async with db.transaction() as repo:
            for payout in (created.payout, waiting.payout, someone_elses.payout):
                await add_payout(repo, payout)
            assert await repo.add_payout(taken.payout)
            await repo.post([*created.transfers, *taken.transfers])
            await repo.save_payouts([(settled.payout, "scheduled")])
            await repo.post([*sent.transfers, *settled.transfers])
        after = datetime.now(UTC)
        async with db.snapshot() as repo:
            dated = await repo.dated_payouts_of(creator)
        by_id = {d.payout.payout_id: d for d in dated}
        assert set(by_id) == {
            settled.payout.payout_id,
            waiting.payout.payout_id,
            taken.payout.payout_id,
        }
        assert [d.owed_at for d in dated] == sorted(d.owed_at for d in dated)
        paid = by_id[settled.payout.payout_id]
        assert paid.payout == settled.payout and paid.owed_at == LONG_AGO
        assert paid.settled_at is not None and before <= paid.settled_at <= after
        assert by_id[waiting.payout.payout_id].settled_at is None
        # A clawback has no rate locked: dated when it was recorded; settled at once, with no
        # settlement posted.
        clawed = by_id[taken.payout.payout_id]
        assert before <= clawed.owed_at <= after and clawed.settled_at is None
        # Returned after it settled: no longer dated as settled.
        back = lifecycle.returned(settled.payout, "wise: transfer bounced_back")
        async with db.transaction() as repo:
            await repo.save_payouts([(back.payout, "settled")])
            await repo.post(back.transfers)
            returned = {d.payout.payout_id: d for d in await repo.dated_payouts_of(creator)}
        assert returned[settled.payout.payout_id].settled_at is None
        assert returned[settled.payout.payout_id].payout.status == "failed"

    # Creators' payout e-mails (notices.py). The database may hold other tests' rows:
    # claims take many and keep this test's own.

    async def test_a_status_change_queues_one_email_for_a_creator_with_an_address(
        self, db: PayoutsStore
    ) -> None:
        creator, silent = uid("cr"), uid("cr")
        async with db.transaction() as repo:
            await repo.save_account(replace(acct(creator), email=f"{creator}@x.test"))
            await repo.save_account(acct(silent))
        created = new_payout(uid("deal"), creator, acct(creator))
        unheard = new_payout(uid("deal"), silent, acct(silent))
        for _ in range(2):  # the same change published again (a replayed step) adds nothing
            async with db.transaction() as repo:
                for transition in (created, unheard):
                    await add_payout(repo, transition.payout)
                    await repo.enqueue([status_event(transition.payout)])
        async with db.snapshot() as repo:
            emails = await repo.emails_of(created.payout.payout_id)
            assert await repo.emails_of(unheard.payout.payout_id) == []
        assert [(n.status, n.event_id, state) for n, state in emails] == [
            ("scheduled", created.payout.event_id(), "pending")
        ]
        notice = emails[0][0]
        assert notice.amount == created.payout.net and notice.converted
        assert (notice.creator_id, notice.kind) == (creator, "fee")

    async def test_a_held_payouts_email_says_why_it_waits(self, db: PayoutsStore) -> None:
        creator = uid("cr")
        account = replace(acct(creator, status="pending"), email=f"{creator}@x.test")
        held = new_payout(uid("deal"), creator, account)
        assert held.payout.hold is not None
        # The e-mail tells the hold its event was published with, whatever the payout's row
        # says by the time the transaction ends.
        published = replace(held.payout, hold=replace(held.payout.hold, code=HoldCode.FX_RATE))
        async with db.transaction() as repo:
            await repo.save_account(account)
            await add_payout(repo, held.payout)
            await repo.enqueue([status_event(published)])
        async with db.snapshot() as repo:
            [(notice, _)] = await repo.emails_of(held.payout.payout_id)
        assert (notice.status, notice.hold_code) == ("held", HoldCode.FX_RATE.value)

    async def test_an_email_is_written_with_its_change_or_not_at_all(
        self, db: PayoutsStore
    ) -> None:
        creator = uid("cr")
        async with db.transaction() as repo:
            await repo.save_account(replace(acct(creator), email=f"{creator}@x.test"))
        created = new_payout(uid("deal"), creator, acct(creator))
        with pytest.raises(RuntimeError):
            async with db.transaction() as repo:
                await add_payout(repo, created.payout)
                await repo.enqueue([status_event(created.payout)])
                raise RuntimeError("the transaction fails after the change")
        async with db.snapshot() as repo:
            assert await repo.emails_of(created.payout.payout_id) == []

    async def test_a_claim_leases_its_emails_until_the_lease_ends(self, db: PayoutsStore) -> None:
        creator, payout_id = await self._emailed_payout(db)
        lease = timedelta(seconds=90)
        first = await self._claim(db, payout_id, NOW, lease)
        assert [d.email.get_secret_value() for d in first if d.email] == [f"{creator}@x.test"]
        assert await self._claim(db, payout_id, NOW + lease - timedelta(seconds=1), lease) == []
        second = await self._claim(db, payout_id, NOW + lease, lease)
        assert [d.notice for d in second] == [d.notice for d in first]
        assert second[0].claim_id != first[0].claim_id
        assert first[0].cooling_off_until is None  # no new destination cooling off
        until = NOW + timedelta(days=1)
        _, cooling = await self._emailed_payout(db, cooling_off_until=until)
        assert [d.cooling_off_until for d in await self._claim(db, cooling, NOW, lease)] == [until]
        async with db.transaction() as repo:
            # The first claim lost its lease: it may not start the e-mail any more.
            assert not await repo.start_email(first[0].notice.event_id, first[0].claim_id, NOW)
            assert await repo.start_email(second[0].notice.event_id, second[0].claim_id, NOW)
            assert not await repo.start_email(second[0].notice.event_id, second[0].claim_id, NOW)
        assert await self._states(db, payout_id) == ["sending"]

    async def test_an_email_sending_past_its_lease_is_unknown_and_never_claimed_again(
        self, db: PayoutsStore
    ) -> None:
        _, payout_id = await self._emailed_payout(db)
        (due,) = await self._claim(db, payout_id, NOW, timedelta(seconds=90))
        until = NOW + timedelta(seconds=90)
        async with db.transaction() as repo:
            assert await repo.start_email(due.notice.event_id, due.claim_id, until)
            early = await repo.emails_in_doubt(until - timedelta(seconds=1))
        assert due.notice not in early
        async with db.transaction() as repo:
            doubtful = await repo.emails_in_doubt(until)
        assert due.notice in doubtful
        assert await self._states(db, payout_id) == ["unknown"]
        assert await self._claim(db, payout_id, until + timedelta(days=1), timedelta(1)) == []
        async with db.transaction() as repo:  # a late "sent" from the stopped sender is refused
            assert not await repo.end_email(due.notice.event_id, "sent", until)
        assert await self._states(db, payout_id) == ["unknown"]

    async def test_a_refused_email_is_claimed_again_from_its_retry_time_with_its_attempts(
        self, db: PayoutsStore
    ) -> None:
        _, payout_id = await self._emailed_payout(db)
        lease = timedelta(seconds=90)
        (due,) = await self._claim(db, payout_id, NOW, lease)
        assert due.attempts == 0
        retry_at = NOW + timedelta(minutes=5)
        async with db.transaction() as repo:
            assert await repo.start_email(due.notice.event_id, due.claim_id, NOW + lease)
            assert await repo.end_email(
                due.notice.event_id, "pending", NOW, error="SMTP 451", retry_at=retry_at
            )
        assert await self._claim(db, payout_id, retry_at - timedelta(seconds=1), lease) == []
        (again,) = await self._claim(db, payout_id, retry_at, lease)
        assert again.attempts == 1
        async with db.transaction() as repo:
            assert await repo.start_email(again.notice.event_id, again.claim_id, retry_at + lease)
            assert await repo.end_email(again.notice.event_id, "sent", retry_at)
        assert await self._states(db, payout_id) == ["sent"]
        assert await self._claim(db, payout_id, retry_at + timedelta(days=1), lease) == []

    async def test_sent_payouts_fall_due_for_a_settlement_check_when_told(
        self, db: PayoutsStore
    ) -> None:
        creator = uid("cr")
        account = acct(creator)
        sent = []
        async with db.transaction() as repo:
            await repo.save_account(account)
        for n in range(2):
            created = new_payout(uid("deal"), creator, account)
            claimed = lifecycle.claim(created.payout, account, NOW, timedelta(seconds=30))
            sent.append(lifecycle.mark_sent(claimed.payout, f"tr_{n}").payout)
            async with db.transaction() as repo:
                await add_payout(repo, created.payout)
                await repo.save_payouts([(sent[-1], "scheduled")])
        first, second = (p.payout_id for p in sent)

        async def due(at: datetime) -> list[tuple[str, int]]:
            async with db.transaction() as repo:
                found = await repo.sent_due_for_update(at, 100_000)
            return [(p.payout_id, checks) for p, checks in found if p.payout_id in (first, second)]

        assert await due(NOW) == [(first, 0), (second, 0)]  # never asked: due at once
        async with db.transaction() as repo:
            await repo.settlement_checks_ahead(
                {first: NOW + timedelta(seconds=2), second: NOW + timedelta(seconds=1)}
            )
        assert await due(NOW) == []
        assert await due(NOW + timedelta(seconds=1)) == [(second, 1)]
        assert await due(NOW + timedelta(seconds=2)) == [(first, 1), (second, 1)]  # sent order
        back = lifecycle.returned(sent[0], "bounced").payout
        async with db.transaction() as repo:
            await repo.save_payouts([(back, "sent")])
            await repo.settlement_checks_ahead({first: NOW})  # no longer sent: left alone
        assert await due(NOW + timedelta(days=1)) == [(second, 1)]
        again = lifecycle.retry(back, account, NOW).payout
        claimed = lifecycle.claim(again, account, NOW, timedelta(seconds=30)).payout
        async with db.transaction() as repo:
            await repo.save_payouts([(again, "failed")])
            await repo.save_payouts([(claimed, again.status)])
            await repo.save_payouts([(lifecycle.mark_sent(claimed, "tr_2").payout, claimed.status)])
        assert await due(NOW) == [(first, 0)]  # sent again: asked at once, counted afresh

    async def test_a_failure_after_sent_is_told_as_a_return(self, db: PayoutsStore) -> None:
        creator = uid("cr")
        account = replace(acct(creator), email=f"{creator}@x.test")
        created = new_payout(uid("deal"), creator, account)
        claimed = lifecycle.claim(created.payout, account, NOW, timedelta(seconds=30))
        sent = lifecycle.mark_sent(claimed.payout, "tr_1")
        back = lifecycle.returned(sent.payout, "bounced")
        async with db.transaction() as repo:
            await repo.save_account(account)
            await add_payout(repo, created.payout)
            await repo.enqueue([status_event(created.payout)])
        async with db.transaction() as repo:
            await repo.save_payouts([(sent.payout, "scheduled")])
            await repo.enqueue([status_event(sent.payout)])
        async with db.transaction() as repo:
            await repo.save_payouts([(back.payout, "sent")])
            await repo.enqueue([status_event(back.payout)])
        async with db.snapshot() as repo:
            emails = await repo.emails_of(created.payout.payout_id)
        assert [(n.status, n.returned) for n, _ in emails] == [
            ("scheduled", False),
            ("sent", False),
            ("failed", True),
        ]

    async def test_a_held_payouts_email_says_why_from_its_hold_code(self, db: PayoutsStore) -> None:
        creator = uid("cr")
        async with db.transaction() as repo:
            await repo.save_account(
                replace(acct(creator, status="pending"), email=f"{creator}@x.test")
            )
        held = new_payout(uid("deal"), creator, acct(creator, status="pending"))
        assert held.payout.status == "held"
        async with db.transaction() as repo:
            await add_payout(repo, held.payout)
            await repo.enqueue([status_event(held.payout)])
        async with db.snapshot() as repo:
            ((notice, _),) = await repo.emails_of(held.payout.payout_id)
        assert (notice.status, notice.hold_code) == ("held", HoldCode.TAX_FORM.value)

    async def _emailed_payout(
        self, db: PayoutsStore, cooling_off_until: datetime | None = None
    ) -> tuple[str, str]:
        creator = uid("cr")
        account = replace(
            acct(creator), email=f"{creator}@x.test", cooling_off_until=cooling_off_until
        )
        created = new_payout(uid("deal"), creator, account)
        async with db.transaction() as repo:
            await repo.save_account(account)
            await add_payout(repo, created.payout)
            await repo.enqueue([status_event(created.payout)])
        return creator, created.payout.payout_id

    async def _claim(
        self, db: PayoutsStore, payout_id: str, now: datetime, lease: timedelta
    ) -> list[DueEmail]:
        async with db.transaction() as repo:
            claimed = await repo.claim_emails(now, lease, 10_000)
        return [d for d in claimed if d.notice.payout_id == payout_id]

    async def _states(self, db: PayoutsStore, payout_id: str) -> list[str]:
        async with db.snapshot() as repo:
            return [state for _, state in await repo.emails_of(payout_id)]


def status_event(payout: lifecycle.Payout) -> CloudEvent[Any]:
    """The `payout.<status>` event the service publishes for the payout as it is."""
    return make_event(status_data(payout), source="payouts", id=payout.event_id(), time=NOW)
