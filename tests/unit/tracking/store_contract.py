"""The tracking store contract: one suite, run against the in-memory store (unit tests) and
the PostgreSQL adapter (integration tests). Subclasses provide the `store` fixture.

Ids are unique per test and times lie in a random hour of the 19th century, because the
PostgreSQL schema (and its FX table) is shared by the whole test module: no other
test's FX snapshot can be in force then, and ours are never anyone's latest.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from services.tracking.domain.attribution import (
    DealAttribution,
    DealFacts,
    Engagement,
    attribute,
    with_leaks,
)
from services.tracking.domain.campaigns import (
    Unattributed,
    UnattributedChange,
    campaign_attribution,
)
from services.tracking.domain.credit import Click, Model, ModelSetting
from services.tracking.domain.deals import Cancellation, DealTerms
from services.tracking.domain.deliverables import AUTO, Confirmation
from services.tracking.domain.leaks import (
    CodeJudgement,
    Evidence,
    LeakedOrders,
    LeakOrder,
    LeakRule,
    LeakThresholds,
    LeakTotals,
    judgement_inputs,
)
from services.tracking.domain.orders import (
    Order,
    OrderReason,
    OrderStatus,
    Refund,
    evaluate_order,
)
from services.tracking.domain.posts import PostSnapshot
from services.tracking.store.port import AffectedOrders, LeakAlert, TrackingStore
from services.tracking.translate import deal_terms, post_snapshot
from shared.contract.money import FxSnapshot, Money
from tests.unit.tracking.builders import (
    amendment_event,
    deal_event,
    delivered,
    order_event,
    post_event,
    visitor,
)

MOVE = Decimal("0.25")  # FX_MAX_RATE_MOVE


class Ids:
    """Unique names and a unique time base for one test."""

    def __init__(self) -> None:
        self.tag = uuid.uuid4().hex[:10]
        self.t0 = datetime(1800, 1, 1, tzinfo=UTC) + timedelta(hours=random.randrange(1, 600_000))

    def __call__(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def at(self, **delta: float) -> datetime:
        return self.t0 + timedelta(**delta)


@pytest.fixture
def ids() -> Ids:
    return Ids()


def creators_deal(ids: Ids, **fields: Any) -> DealTerms:
    """The terms of deal `ids("deal")` of creator `ids("cr")`, with `fields` as given."""
    return deal_terms(deal_event(ids("deal"), creator_id=ids("cr"), **fields))


def deal_with_code(ids: Ids, code: str, **fields: Any) -> DealTerms:
    """The terms of a deal of creator `ids("cr")` with promo code `code`, starting at `ids.at()`."""
    return creators_deal(ids, promo_codes=(code,), starts_at=ids.at(), **fields)


class StoreContract:
    @pytest.fixture
    def store(self) -> TrackingStore:
        raise NotImplementedError

    async def test_claim_returns_only_first_sightings(self, store: TrackingStore, ids: Ids) -> None:
        events = [order_event(ids("o1")), order_event(ids("o2"))]
        async with store.transaction() as tx:
            assert await tx.claim(delivered(events)) == {e.identity for e in events}
        more = [events[1], order_event(ids("o3"))]
        async with store.transaction() as tx:
            assert await tx.claim(delivered(more)) == {more[1].identity}

    async def test_equal_ids_from_two_sources_are_two_events(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        first = order_event(ids("o"))
        second = first.model_copy(update={"source": "https://other-shop.example"})
        async with store.transaction() as tx:
            assert await tx.claim(delivered([first, second])) == {
                first.identity,
                second.identity,
            }

    async def test_deals_are_found_by_any_of_their_codes(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        code, other = ids("CODE"), ids("OTHER")
        first = deal_terms(deal_event(ids("deal-a"), promo_codes=(code, other)))
        second = deal_terms(deal_event(ids("deal-b"), brand_id="br-2", promo_codes=(other,)))
        async with store.transaction() as tx:
            await tx.add_deals([first, second])
            assert await tx.deals_with_codes([code]) == [first]
            found = await tx.deals_with_codes([code, other, ids("NONE")])
            assert sorted(d.deal_id for d in found) == sorted([first.deal_id, second.deal_id])
            assert await tx.deals_with_codes([]) == []

    async def test_a_failed_transaction_leaves_nothing_behind(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        event = order_event(ids("o"))
        deal = creators_deal(ids)
        with pytest.raises(RuntimeError):
            async with store.transaction() as tx:
                await tx.claim(delivered([event]))
                await tx.add_deals([deal])
                raise RuntimeError("boom")
        async with store.transaction() as tx:
            assert await tx.claim(delivered([event])) == {event.identity}
            assert await tx.deals_of_creators([ids("cr")]) == []

    async def test_deals_are_stored_once_and_conflicting_terms_reported(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        first = creators_deal(ids, time=ids.at(hours=2))
        resent = creators_deal(ids, time=ids.at(hours=1))
        changed = creators_deal(ids, fee="999.00")
        async with store.transaction() as tx:
            added = await tx.add_deals([first])
            assert (added.added, added.repeated, added.conflicting) == ([first], set(), set())
        async with store.transaction() as tx:
            again = await tx.add_deals([resent])
            assert (again.added, again.repeated, again.conflicting) == ([], {first.deal_id}, set())
            clash = await tx.add_deals([changed])
            assert clash.conflicting == {first.deal_id}
            # Round trip, keeping the earliest announcement of the same terms.
            assert await tx.deals_of_creators([ids("cr")]) == [resent]

    async def test_deal_versions_and_cancellations_are_kept_and_terms_put_in_force(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        signed = creators_deal(ids, time=ids.at(hours=1), promo_codes=(ids("OLD"),))
        amended = deal_terms(
            amendment_event(
                signed.deal_id,
                2,
                time=ids.at(hours=3),
                creator_id=ids("cr"),
                fee="700.00",
                promo_codes=(ids("NEW"),),
            )
        )
        late = Cancellation(signed.deal_id, "br-1", ids.at(hours=9))
        early = Cancellation(signed.deal_id, "br-1", ids.at(hours=5))
        foreign = Cancellation(signed.deal_id, "br-2", ids.at(hours=1))
        async with store.transaction() as tx:
            # Kept before the deal is stored, the first of each version, the earliest per brand.
            await tx.keep_deal_changes([amended], [late, foreign])
            await tx.keep_deal_changes([replace(amended, fee=signed.fee)], [early])
            assert (await tx.add_deals([signed])).added == [signed]
            await tx.keep_deal_changes([signed], [])
            assert await tx.deal_changes([signed.deal_id, ids("none")]) == {
                signed.deal_id: ([signed, amended], [early, foreign])
            }
            in_force = replace(
                amended, signed_at=signed.signed_at, sent_at=None, cancelled_at=early.cancelled_at
            )
            await tx.save_terms([in_force])
            assert await tx.deals([signed.deal_id, ids("none")]) == {signed.deal_id: in_force}
            assert await tx.deals_with_codes([ids("NEW")]) == [in_force]
            assert await tx.deals_with_codes(list(signed.promo_codes)) == []
            # The signed deal sent again is compared with what was signed, not what is in force.
            again = await tx.add_deals([signed])
            assert (again.repeated, again.conflicting) == ({signed.deal_id}, set())
            assert await tx.deals([signed.deal_id]) == {signed.deal_id: in_force}

    async def test_posts_keep_their_latest_snapshot(self, store: TrackingStore, ids: Ids) -> None:
        def snap(observed_hours: int, event_id: str, likes: int) -> PostSnapshot:
            return post_snapshot(
                post_event(
                    ids("p"),
                    creator_id=ids("cr"),
                    caption="with #AD and @Brand",
                    posted_at=ids.at(),
                    observed_at=ids.at(hours=observed_hours),
                    likes=likes,
                    event_id=event_id,
                )
            )

        middle, old, tie = snap(5, "e-5", 50), snap(2, "e-9", 20), snap(5, "e-6", 60)
        async with store.transaction() as tx:
            assert await tx.upsert_posts([middle]) == [middle]
            assert await tx.upsert_posts([old]) == []
            assert await tx.upsert_posts([tie]) == [tie]
            assert await tx.upsert_posts([middle]) == []
            assert await tx.posts_of_creators([ids("cr")]) == [tie]
            # An older snapshot still adds the tags it carried.
            older = post_snapshot(
                post_event(
                    ids("p"),
                    creator_id=ids("cr"),
                    tags=("#Late",),
                    posted_at=ids.at(),
                    observed_at=ids.at(hours=1),
                    likes=1,
                )
            )
            merged = replace(tie, tags=tie.tags | {"#late"})
            assert await tx.upsert_posts([older]) == [merged]
            assert await tx.posts_of_creators([ids("cr")]) == [merged]

    async def test_memberships_are_replaced_per_post(self, store: TrackingStore, ids: Ids) -> None:
        d1, d2, p1, p2 = ids("d1"), ids("d2"), ids("p1"), ids("p2")
        async with store.transaction() as tx:
            assert await tx.add_memberships({(d1, p1), (d1, p2)}) == {d1}
            assert await tx.add_memberships({(d1, p1)}) == set()
            assert await tx.replace_memberships({p1}, {(d2, p1)}) == {d1, d2}
            assert await tx.replace_memberships({p2}, set()) == {d1}
            assert await tx.replace_memberships(set(), set()) == set()

    async def test_stored_orders_and_clicks_read_back_as_they_were_sent(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        # What a later order or click under the same id is compared with: every detail.
        order = Order(
            ids("o"),
            ids("CODE"),
            Money.of("10.50", "EUR"),
            ids.at(hours=1),
            brand_id="br-1",
            visitor_id=visitor(1),
            click_id=ids("clk"),
            shipping_country="DE",
            referrer="example.com",  # an order's referrer is its host (translate.order_of)
        )
        plain = Order(ids("o2"), ids("CODE"), Money.of("7.00", "USD"), ids.at(hours=2))
        click = Click(ids("clk"), ids("deal"), visitor(1), ids.at(hours=1), "br-1")
        async with store.transaction() as tx:
            await tx.add_orders([order, plain])
            await tx.add_clicks([click])
        async with store.transaction() as tx:
            wanted = [order.order_id, plain.order_id, ids("unknown")]
            assert await tx.stored_orders(wanted) == {order.order_id: order, plain.order_id: plain}
            assert await tx.stored_clicks([click.click_id, ids("unknown")]) == {
                click.click_id: click
            }
            assert await tx.stored_orders([]) == {} and await tx.stored_clicks([]) == {}

    async def test_a_campaign_report_reads_one_brand_when_brands_share_the_campaign_id(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        deals = [
            deal_terms(
                deal_event(
                    ids(f"deal-{brand}"),
                    campaign_id=ids("cmp"),
                    brand_id=ids(brand),
                    creator_id=ids(f"cr-{brand}"),
                    promo_codes=(ids(f"CODE-{brand}"),),
                    starts_at=ids.at(),
                    time=ids.at(),
                )
            )
            for brand in ("br-a", "br-b")
        ]
        async with store.transaction() as tx:
            await tx.add_deals(deals)
            facts = await tx.deal_facts({d.deal_id for d in deals})
            await tx.save_attributions([attribute(f) for f in facts])
        mine, theirs = deals
        assert await store.campaign_brands(ids("cmp")) == {ids("br-a"), ids("br-b")}
        assert await store.campaign_brands(ids("unknown")) == set()
        both = await store.campaign_attributions(ids("cmp"))
        assert [a.deal_id for a in both] == sorted([mine.deal_id, theirs.deal_id])
        only = await store.campaign_attributions(ids("cmp"), ids("br-a"))
        assert [a.deal_id for a in only] == [mine.deal_id]
        assert await store.campaign_attributions(ids("cmp"), ids("br-c")) == []

    async def test_orders_and_refunds_are_deduplicated_on_business_keys(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        order = Order(ids("o"), ids("CODE"), Money.of("10.00", "USD"), ids.at(hours=1))
        twin = Order(ids("o"), ids("CODE"), Money.of("99.00", "USD"), ids.at(hours=2))
        refund = Refund(ids("o"), Money.of("4.00", "USD"), ids.at(hours=3), "br-1")
        # The same refund from a shop naming another brand: a refund is (order, time, amount).
        again = Refund(ids("o"), Money.of("4.00", "USD"), ids.at(hours=3), "br-2")
        async with store.transaction() as tx:
            assert await tx.add_orders([order]) == {order.order_id}
            assert await tx.add_orders([twin]) == set()
            assert await tx.add_refunds({refund}) == {order.order_id}
            assert await tx.add_refunds({refund}) == set()
            assert await tx.add_refunds({again}) == set()
            [context] = await tx.orders_to_evaluate(AffectedOrders(order_ids={order.order_id}))
        assert context.order == order
        assert context.refunds == (refund,)
        assert context.current is None

    async def test_one_refund_twice_in_a_batch_keeps_the_same_brand_on_every_store(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        order = Order(ids("o"), ids("CODE"), Money.of("10.00", "USD"), ids.at(hours=1))
        at = ids.at(hours=3)
        twins = [Refund(ids("o"), Money.of("4.00", "USD"), at, brand) for brand in ("br-2", "br-1")]
        async with store.transaction() as tx:
            await tx.add_orders([order])
            assert await tx.add_refunds(twins) == {order.order_id}
            [context] = await tx.orders_to_evaluate(AffectedOrders(order_ids={order.order_id}))
        # Whichever order the batch came in: the smallest brand id is kept, as on a replay.
        assert [r.brand_id for r in context.refunds] == ["br-1"]

    async def test_orders_to_evaluate_brings_everything_an_outcome_depends_on(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        code = ids("CODE")
        deal = deal_with_code(ids, code, currency="EUR", fee="100.00")
        order = Order(ids("o"), code, Money.of("64.90", "USD"), ids.at(hours=10))
        jpy_only = FxSnapshot("USD", {"JPY": Decimal("151")}, ids.at(hours=1), "ecb")
        with_eur = FxSnapshot("USD", {"EUR": Decimal("0.9215")}, ids.at(hours=2), "ecb")
        async with store.transaction() as tx:
            await tx.add_deals([deal])
            await tx.add_orders([order])
            assert await tx.add_fx_snapshots([(jpy_only, ids("fx1"))], MOVE) == [jpy_only]
            assert await tx.add_fx_snapshots([(jpy_only, ids("fx1"))], MOVE) == []
            [context] = await tx.orders_to_evaluate(AffectedOrders(promo_codes={code}))
            assert context.candidates == (deal,)
            assert context.snapshot == jpy_only
            pending = evaluate_order(order, context.refunds, context.candidates, context.snapshot)
            assert pending.reason is OrderReason.NO_FX_RATE
            await tx.save_order_outcomes([pending])
            [context] = await tx.orders_to_evaluate(AffectedOrders(order_ids={order.order_id}))
            assert context.current == pending

            # A snapshot closer to occurred_at brings the waiting order back.
            assert await tx.add_fx_snapshots([(with_eur, ids("fx2"))], MOVE) == [with_eur]
            [context] = await tx.orders_to_evaluate(AffectedOrders(converted_since=with_eur.as_of))
            assert context.snapshot == with_eur
            converted = evaluate_order(order, (), context.candidates, context.snapshot)
            assert converted.status is OrderStatus.ATTRIBUTED
            await tx.save_order_outcomes([converted])
            [context] = await tx.orders_to_evaluate(AffectedOrders(converted_since=ids.at(hours=2)))
            assert context.current == converted
            # Orders before the new snapshot's time are not affected by it.
            later = AffectedOrders(converted_since=ids.at(hours=11))
            assert await tx.orders_to_evaluate(later) == []

    async def test_new_orders_come_with_their_context_and_are_stored_with_outcomes(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        code = ids("CODE")
        deal = deal_with_code(ids, code, currency="EUR")
        # The shop's brand, when given, is kept with the order (it scopes the code).
        stored = Order(ids("o1"), code, Money.of("10.00", "USD"), ids.at(hours=1), "br-1")
        new = Order(ids("o2"), code, Money.of("64.90", "USD"), ids.at(hours=10), "br-1")
        refund = Refund(new.order_id, Money.of("4.90", "USD"), ids.at(hours=11))
        with_eur = FxSnapshot("USD", {"EUR": Decimal("0.9215")}, ids.at(hours=2), "ecb")
        async with store.transaction() as tx:
            await tx.add_deals([deal])
            await tx.add_orders([stored])
            await tx.add_refunds({refund})
            await tx.add_fx_snapshots([(with_eur, ids("fx"))], MOVE)
            [context] = await tx.new_order_contexts([stored, new])
            assert context.order == new
            assert context.refunds == (refund,)
            assert context.candidates == (deal,)
            assert context.snapshot == with_eur
            assert context.current is None
            outcome = evaluate_order(new, context.refunds, context.candidates, context.snapshot)
            assert outcome.status is OrderStatus.ATTRIBUTED
            assert await tx.add_orders([new], [outcome]) == {new.order_id}
            assert await tx.add_orders([new], [outcome]) == set()
            assert await tx.new_order_contexts([stored, new]) == []
            [context] = await tx.orders_to_evaluate(AffectedOrders(order_ids={new.order_id}))
            assert context.order == new
            assert context.current == outcome
            [context] = await tx.orders_to_evaluate(AffectedOrders(order_ids={stored.order_id}))
            assert context.order == stored
            [facts] = await tx.deal_facts({deal.deal_id})
        assert facts.orders == 1
        assert facts.revenue == outcome.net_revenue

    async def test_promo_codes_match_exactly_case_included(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        # Codes are compared as the shop reports them (the contract keeps their case): an
        # order with another case of a deal's code has no candidate deal (unknown_code).
        code = ids("CODE")
        deal = deal_with_code(ids, code)
        lower = Order(ids("o"), code.lower(), Money.of("10.00", "USD"), ids.at(hours=1))
        async with store.transaction() as tx:
            await tx.add_deals([deal])
            [context] = await tx.new_order_contexts([lower])
        assert context.candidates == ()
        outcome = evaluate_order(lower, context.refunds, context.candidates, context.snapshot)
        assert outcome.reason is OrderReason.UNKNOWN_CODE

    async def test_deal_facts_sum_member_posts_and_counted_orders(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        code = ids("CODE")
        deal = deal_terms(
            deal_event(
                ids("deal"),
                campaign_id=ids("cmp"),
                creator_id=ids("cr"),
                promo_codes=(code,),
                fee="100.00",
                commission_rate="0.10",
                starts_at=ids.at(),
                time=ids.at(),
            )
        )
        posts = [
            post_snapshot(
                post_event(
                    ids(f"p{n}"),
                    creator_id=ids("cr"),
                    posted_at=ids.at(hours=1),
                    observed_at=ids.at(hours=2 + n),
                    likes=10 * (n + 1),
                    followers=1000 * n,
                )
            )
            for n in range(3)
        ]
        kept = Order(ids("o1"), code, Money.of("300.00", "USD"), ids.at(hours=3))
        refunded = Order(ids("o2"), code, Money.of("50.00", "USD"), ids.at(hours=4))
        refund = Refund(refunded.order_id, Money.of("50.00", "USD"), ids.at(hours=9))
        async with store.transaction() as tx:
            await tx.add_deals([deal])
            await tx.upsert_posts(posts)
            await tx.add_memberships({(deal.deal_id, p.post_id) for p in posts})
            await tx.add_orders([kept, refunded])
            await tx.save_order_outcomes(
                [
                    evaluate_order(kept, (), [deal], None),
                    evaluate_order(refunded, [refund], [deal], None),
                ]
            )
            [facts] = await tx.deal_facts({deal.deal_id, ids("unknown")})
        assert facts.engagement.posts == 3
        assert facts.engagement.likes == 60
        assert facts.engagement.rated_posts == 2
        assert facts.orders == 1
        assert facts.revenue == Money.of("300.00", "USD")
        assert facts.as_of == ids.at(hours=9)
        result = attribute(facts)
        assert result.performance.spend == Money.of("130.00", "USD")

        async with store.transaction() as tx:
            assert await tx.save_attributions([result]) == [result]
            assert await tx.save_attributions([result]) == []
        assert await store.campaign_attributions(ids("cmp")) == [result]

        # Published, a deal's `as_of` never goes back: figures reflecting older inputs only
        # (worked out again under new terms) keep the `as_of` published before them; and
        # each update is numbered, one more than the deal's last.
        def dated(hours: int, sequence: int | None = None) -> DealAttribution:
            return replace(
                result,
                performance=replace(result.performance, as_of=ids.at(hours=hours)),
                sequence=sequence,
            )

        async with store.transaction() as tx:
            [first] = await tx.published([result])
            assert first == replace(result, sequence=1)
            await tx.save_attributions([dated(5)])
            [older] = await tx.published([dated(5)])
            assert older == dated(9, sequence=2)
            await tx.save_attributions([dated(12)])
            [later] = await tx.published([dated(12)])
            assert later == dated(12, sequence=3)
            with pytest.raises(ValueError, match="one attribution per deal"):
                await tx.published([dated(12), dated(13)])
        assert await store.campaign_attributions(ids("cmp")) == [dated(12)]

    async def test_clicks_bring_back_their_visitors_orders_with_credits_per_deal(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        code, visitor = ids("CODE"), uuid.uuid4().hex * 2
        campaign = ids("cmp")
        home = deal_with_code(ids, code, campaign_id=campaign)
        other = deal_terms(
            deal_event(
                ids("deal-b"),
                campaign_id=campaign,
                creator_id=ids("cr-b"),
                promo_codes=(ids("B"),),
                starts_at=ids.at(),
            )
        )
        order = Order(ids("o"), code, Money.of("100.01", "USD"), ids.at(hours=10), None, visitor)
        first = Click(ids("c1"), other.deal_id, visitor, ids.at(hours=1))
        second = Click(ids("c2"), home.deal_id, visitor, ids.at(hours=2))
        named = Click(ids("c3"), other.deal_id, uuid.uuid4().hex * 2, ids.at(hours=3))
        linear = ModelSetting(campaign, "br-1", Model.LINEAR, 30, 7, ids.at(), ids("ev"))
        async with store.transaction() as tx:
            await tx.add_deals([home])
            await tx.add_orders([order])
            assert await tx.add_clicks([first, second]) == [first, second]
            assert await tx.add_clicks([first]) == []
            assert await tx.clicks_on_deals({other.deal_id}) == [first]
            # Clicks of another visitor, or on no order's click, bring nothing back.
            assert await tx.orders_to_evaluate(AffectedOrders(clicks=[named])) == []
            assert await tx.save_model_settings([linear]) == [linear]
            await tx.add_deals([other])
            [context] = await tx.orders_to_evaluate(AffectedOrders(clicks=[first]))
            assert sorted(context.clicks.clicks, key=lambda c: c.click_id) == [first, second]
            assert context.clicks.deals[other.deal_id] == other
            assert context.clicks.settings[(campaign, "br-1")] == linear
            outcome = evaluate_order(
                order, context.refunds, context.candidates, context.snapshot, context.clicks
            )
            assert outcome.model is Model.LINEAR
            # Equal remainders: the odd cent goes to the smaller deal id.
            low, high = sorted([home.deal_id, other.deal_id])
            assert [(c.deal_id, c.revenue) for c in outcome.credits] == [
                (low, Money.of("50.01", "USD")),
                (high, Money.of("50.00", "USD")),
            ]
            await tx.save_order_outcomes([outcome])
            [context] = await tx.orders_to_evaluate(AffectedOrders(order_ids={order.order_id}))
            assert context.current == outcome
            # The order's click id alone finds it too, and a campaign's new model does.
            with_click = replace(named, click_id=ids("c4"))
            await tx.add_orders([replace(order, order_id=ids("o2"), click_id=with_click.click_id)])
            found = await tx.orders_to_evaluate(AffectedOrders(clicks=[with_click]))
            assert [c.order.order_id for c in found] == [ids("o2")]
            by_campaign = await tx.orders_to_evaluate(AffectedOrders(campaign_ids={campaign}))
            assert [c.order.order_id for c in by_campaign] == [order.order_id]
            facts = {f.deal_id: f for f in await tx.deal_facts({home.deal_id, other.deal_id})}
        assert (facts[home.deal_id].orders, facts[other.deal_id].orders) == (1, 1)
        assert facts[low].revenue == Money.of("50.01", "USD")
        assert (facts[home.deal_id].model, facts[home.deal_id].setting_id) == (
            Model.LINEAR,
            ids("ev"),
        )

    async def test_the_newest_model_setting_per_campaign_and_brand_counts(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        campaign = ids("cmp")
        deal = deal_with_code(ids, ids("CODE"), campaign_id=campaign)
        older = ModelSetting(campaign, "br-1", Model.LINEAR, 30, 7, ids.at(), ids("a"))
        newer = replace(older, model=Model.LAST_CLICK, set_at=ids.at(hours=1))
        rival = replace(older, brand_id="br-2", model=Model.FIRST_CLICK)
        async with store.transaction() as tx:
            await tx.add_deals([deal])
            assert await tx.save_model_settings([newer, older]) == [newer]
            assert await tx.save_model_settings([older]) == []
            assert await tx.save_model_settings([rival]) == [rival]
            assert await tx.brands_of_campaigns({campaign, ids("none")}) == {campaign: {"br-1"}}
            assert await tx.deals_of_campaigns({(campaign, "br-1")}) == {deal.deal_id}
            assert await tx.deals_of_campaigns({(campaign, "br-2")}) == set()
            [facts] = await tx.deal_facts({deal.deal_id})
        assert (facts.model, facts.setting_id) == (Model.LAST_CLICK, ids("a"))
        result = attribute(facts)
        async with store.transaction() as tx:
            assert await tx.save_attributions([result]) == [result]
            # The same figures under another model are a change to publish.
            again = replace(result, model=Model.LINEAR, setting_id=ids("b"))
            assert await tx.save_attributions([again]) == [again]
        assert await store.campaign_attributions(campaign) == [again]

    async def test_a_deals_audience_countries_are_part_of_its_terms(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        deal = deal_with_code(ids, ids("CODE"), audience_countries=("US", "CA"))
        elsewhere = replace(deal, audience_countries=("DE",))
        async with store.transaction() as tx:
            assert (await tx.add_deals([deal])).added == [deal]
            assert (await tx.add_deals([deal])).repeated == {deal.deal_id}
            assert (await tx.add_deals([elsewhere])).conflicting == {deal.deal_id}
            assert await tx.deals_with_codes(deal.promo_codes) == [deal]

    async def test_a_deal_without_promo_codes_has_leak_facts_without_orders(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        deal = creators_deal(ids, promo_codes=())
        async with store.transaction() as tx:
            await tx.add_deals([deal])
            [facts] = await tx.leak_facts({deal.deal_id})
            assert (facts.deal, facts.orders, facts.judgements) == (deal, (), {})

    async def test_a_leak_judgement_stands_until_an_order_joins_before_its_last(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        code = ids("CODE")
        deal = replace(deal_with_code(ids, code), audience_countries=("US",))

        def order(name: str, minutes: int) -> Order:
            at = ids.at(days=8, minutes=minutes)
            return Order(ids(name), code, Money.of("10.00", "USD"), at)

        first, second, later, late = (
            order("o1", 60),
            order("o2", 120),
            order("o3", 180),
            order("o0", 30),
        )
        rules = LeakThresholds()
        judgement = CodeJudgement(
            (second.occurred_at, second.order_id),
            judgement_inputs(deal.audience_countries, rules),
            0,
            (),
            2,
        )

        async def facts_now() -> tuple[dict[str, CodeJudgement], set[str]]:
            [facts] = await tx.leak_facts({deal.deal_id}, rules)
            return dict(facts.judgements), {o.order_id for o in facts.orders}

        # Out of the window of the orders judged on: never read with the judgement.
        ancient = order("old", 60 - 8 * 24 * 60)
        assert ancient.occurred_at >= deal.starts_at
        async with store.transaction() as tx:
            await tx.add_deals([deal])
            orders = [ancient, first, second]
            await tx.add_orders(orders, [evaluate_order(o, (), [deal], None) for o in orders])
            both = {first.order_id, second.order_id}
            assert await facts_now() == ({}, both | {ancient.order_id})
            await tx.save_leak_judgements([(deal.deal_id, code, judgement)])
            # Nothing after the last order judged: nothing to read.
            assert await facts_now() == ({code: judgement}, set())
            # Other thresholds: judged again from every order.
            [facts] = await tx.leak_facts({deal.deal_id}, replace(rules, abroad_min_orders=3))
            assert facts.judgements == {}
            # A later order leaves the judgement standing, and is read with the order that
            # leaves the hour up to it (the second) and the first order still in each window.
            await tx.add_orders([later], [evaluate_order(later, (), [deal], None)])
            everything = {first.order_id, second.order_id, later.order_id}
            assert await facts_now() == ({code: judgement}, everything)
            await tx.add_orders([late], [evaluate_order(late, (), [deal], None)])
            assert await facts_now() == ({}, everything | {late.order_id, ancient.order_id})

    async def test_leak_facts_flags_alerts_and_totals(self, store: TrackingStore, ids: Ids) -> None:
        code, other = ids("CODE"), ids("OTHER")
        deal = replace(
            deal_with_code(ids, code, campaign_id=ids("cmp")),
            promo_codes=(code, other),
            audience_countries=("US",),
        )
        posts = [
            post_snapshot(post_event(ids(f"p{n}"), creator_id=ids("cr"), reach=1_000 + n))
            for n in range(2)
        ]
        abroad = Order(
            ids("o1"),
            code,
            Money.of("30.00", "USD"),
            ids.at(hours=1),
            None,
            None,
            None,
            "DE",
            "www.retailmenot.com",
        )
        home = Order(ids("o2"), other, Money.of("20.00", "USD"), ids.at(hours=2))
        refund = Refund(abroad.order_id, Money.of("5.00", "USD"), ids.at(hours=3))
        withhold = ModelSetting(
            deal.campaign_id,
            deal.brand_id,
            Model.PROMO_CODE,
            30,
            7,
            ids.at(),
            ids("m"),
            LeakedOrders.WITHHOLD,
        )
        async with store.transaction() as tx:
            await tx.add_deals([deal])
            await tx.upsert_posts(posts)
            await tx.add_memberships({(deal.deal_id, p.post_id) for p in posts})
            await tx.add_orders([abroad, home])
            await tx.add_refunds({refund})
            await tx.save_order_outcomes(
                [
                    evaluate_order(abroad, [refund], [deal], None),
                    evaluate_order(home, (), [deal], None),
                ]
            )
            [facts] = await tx.leak_facts({deal.deal_id, ids("unknown")})
            assert (facts.deal, facts.reach, facts.policy) == (deal, 2_001, LeakedOrders.CREDIT)
            assert sorted(facts.orders, key=lambda o: o.order_id) == [
                LeakOrder(abroad.order_id, abroad.occurred_at, "DE", abroad.referrer, code),
                LeakOrder(home.order_id, home.occurred_at, None, None, other),
            ]
            assert facts.suspected == frozenset()
            assert await tx.leak_totals({deal.deal_id}) == {}

            assert await tx.mark_leak_suspects({abroad.order_id}, {home.order_id}) == {deal.deal_id}
            assert await tx.mark_leak_suspects({abroad.order_id}, set()) == set()
            [facts] = await tx.leak_facts({deal.deal_id})
            assert facts.suspected == {abroad.order_id}
            credited = LeakTotals(True, 1, 0, Decimal(0))
            assert await tx.leak_totals({deal.deal_id}) == {deal.deal_id: credited}
            # Under withhold, the order's credit net of its refund is withheld.
            await tx.save_model_settings([withhold])
            [facts] = await tx.leak_facts({deal.deal_id})
            assert facts.policy is LeakedOrders.WITHHOLD
            withheld = LeakTotals(True, 1, 1, Decimal("25.00"))
            assert await tx.leak_totals({deal.deal_id}) == {deal.deal_id: withheld}

            fired = Evidence(
                LeakRule.COUPON_SITE,
                abroad.order_id,
                abroad.occurred_at,
                abroad.occurred_at,
                abroad.occurred_at,
                1,
                1,
                Decimal(1),
                Decimal("0.3"),
            )
            alert = LeakAlert(deal.deal_id, code, fired)
            burst = LeakAlert(deal.deal_id, code, replace(fired, rule=LeakRule.BURST, reach=9))
            assert await tx.add_leak_alerts([alert]) == [alert]
            assert await tx.add_leak_alerts([alert, burst]) == [burst]

            [deal_facts] = await tx.deal_facts({deal.deal_id})
            result = attribute(with_leaks(deal_facts, withheld))
            assert result.performance.revenue == Money.of("20.00", "USD")
            assert await tx.save_attributions([result]) == [result]
            assert await tx.save_attributions([result]) == []
            # The same figures with another leak state are a change to publish.
            cleared = replace(result, leaks=replace(withheld, suspected=False))
            assert await tx.save_attributions([cleared]) == [cleared]

            assert await tx.mark_leak_suspects(set(), {abroad.order_id}) == {deal.deal_id}
            assert await tx.leak_totals({deal.deal_id}) == {}
        assert await store.campaign_attributions(deal.campaign_id) == [cleared]

    async def test_confirmations_happen_once_per_deliverable(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        deal = creators_deal(ids, deliverables=(("dl-1", "reel", 1), ("dl-2", "story", 2)))
        post = post_snapshot(post_event(ids("p"), creator_id=ids("cr")))
        at = ids.at()
        auto = Confirmation(deal.deal_id, "dl-1", (post.post_id,), AUTO, at)
        manual = Confirmation(deal.deal_id, "dl-1", (), "brand-user", at)
        async with store.transaction() as tx:
            await tx.add_deals([deal])
            await tx.upsert_posts([post])
            await tx.add_memberships({(deal.deal_id, post.post_id)})
            assert await tx.add_auto_confirmations([auto]) == [auto]
            assert await tx.add_manual_confirmations([manual]) == set()
            assert await tx.add_auto_confirmations([auto]) == []
            other = Confirmation(deal.deal_id, "dl-2", (), "brand-user", at)
            assert await tx.add_manual_confirmations([other]) == {deal.deal_id}
            [state] = await tx.open_deliverables({deal.deal_id})
            assert state.deal == deal
            assert state.posts == (post,)
            assert dict(state.confirmed) == {"dl-1": (post.post_id,), "dl-2": ()}
            await tx.close_deals({deal.deal_id})
            assert await tx.open_deliverables({deal.deal_id}) == []

    async def test_early_confirmations_count_only_for_the_deals_brand(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        deal = creators_deal(
            ids, deliverables=(("dl-1", "reel", 1), ("dl-2", "story", 2), ("dl-3", "story", 3))
        )
        at = ids.at()
        rival = Confirmation(deal.deal_id, "dl-1", (), "rival-user", at)
        own = Confirmation(deal.deal_id, "dl-1", (), "brand-user", at + timedelta(seconds=1))
        alone = Confirmation(deal.deal_id, "dl-2", (), "rival-user", at)
        unsigned = Confirmation(deal.deal_id, "dl-3", (), "someone", at)
        async with store.transaction() as tx:
            await tx.keep_early_confirmations(
                [(rival, "br-rival"), (own, deal.brand_id), (alone, "br-rival"), (unsigned, "")]
            )
            await tx.keep_early_confirmations([(rival, "br-rival")])
            assert await tx.take_early_confirmations([]) == set()
            await tx.add_deals([deal])
            assert await tx.take_early_confirmations([deal]) == {deal.deal_id}
            [state] = await tx.open_deliverables({deal.deal_id})
            assert dict(state.confirmed) == {"dl-1": (), "dl-3": ()}
            assert await tx.take_early_confirmations([deal]) == set()
            # dl-1 is the brand's own: a later automatic confirmation of it changes nothing
            auto = Confirmation(deal.deal_id, "dl-1", (), AUTO, at)
            assert await tx.add_auto_confirmations([auto]) == []

    async def test_campaign_facts_sum_the_deals_stored_figures_per_currency(
        self, store: TrackingStore, ids: Ids
    ) -> None:
        brand, campaign = ids("br"), ids("cmp")
        # The EUR deal is signed first: EUR is the campaign's reporting currency.
        eur_deal = deal_terms(
            deal_event(
                ids("deal-e"), campaign_id=campaign, brand_id=brand, creator_id=ids("cr-e"),
                fee="300.00", currency="EUR", promo_codes=(ids("E"),), time=ids.at(),
            )
        )  # fmt: skip
        usd_deals = [
            deal_terms(
                deal_event(
                    ids(f"deal-u{n}"),
                    campaign_id=campaign,
                    brand_id=brand,
                    creator_id=ids(f"cr-u{n}"),
                    fee="100.00",
                    promo_codes=(ids(f"U{n}"),),
                    time=ids.at(hours=1),
                )
            )
            for n in range(2)
        ]
        other = deal_terms(
            deal_event(
                ids("deal-o"), campaign_id=ids("cmp-o"), brand_id=brand, creator_id=ids("cr-o"),
                promo_codes=(ids("O"),), time=ids.at(),
            )
        )  # fmt: skip
        snapshot = FxSnapshot("USD", {"EUR": Decimal("0.9215")}, ids.at(hours=1), "ecb")

        def facts(deal: DealTerms, orders: int, revenue: str) -> DealFacts:
            return DealFacts(
                deal.deal_id, deal.campaign_id, deal.creator_id, deal.fee, deal.commission_rate,
                Engagement(posts=1, impressions=1000, likes=10), orders,
                Money.of(revenue, deal.currency), 0, ids.at(hours=2 + orders),
            )  # fmt: skip

        attributions = [
            attribute(facts(eur_deal, 1, "50.00")),
            attribute(facts(usd_deals[0], 2, "80.00")),
            attribute(facts(usd_deals[1], 3, "20.00")),
            attribute(facts(other, 0, "0.00")),
        ]
        key = (campaign, brand)
        async with store.transaction() as tx:
            await tx.add_deals([eur_deal, *usd_deals, other])
            await tx.add_fx_snapshots([(snapshot, ids("fx"))], MOVE)
            await tx.save_attributions(attributions)
            assert await tx.campaigns_of_deals({usd_deals[0].deal_id, ids("nope")}) == {key}
            assert await tx.campaigns_of_brands({brand}) == {key, (ids("cmp-o"), brand)}
            changes = [
                UnattributedChange(brand, 1, Money.of("20.00", "USD")),
                UnattributedChange(brand, 1, Money.of("5.00", "EUR")),
                UnattributedChange(brand, 1, Money.of("7.00", "USD")),
                UnattributedChange(brand, -1, Money.of("-5.00", "EUR")),
                UnattributedChange(ids("br-2"), 1, Money.of("1.00", "USD")),
            ]
            assert await tx.add_unattributed(changes) == {brand, ids("br-2")}
            [found] = await tx.campaign_facts({key, (ids("cmp-none"), brand)})
        assert (found.campaign_id, found.brand_id, found.reporting_currency) == (*key, "EUR")
        eur, usd = found.totals
        assert (eur.deals, eur.fees, eur.performance.orders) == (1, Money.of("300.00", "EUR"), 1)
        assert eur.performance.revenue == Money.of("50.00", "EUR")
        assert (usd.deals, usd.fees, usd.performance.orders) == (2, Money.of("200.00", "USD"), 5)
        assert usd.performance.revenue == Money.of("100.00", "USD")
        assert usd.performance.spend == Money.of("210.00", "USD")  # 200 + 10 % of 100
        assert usd.performance.engagement.impressions == 2000
        # Counts are whole numbers, as the event's fields require.
        assert {type(usd.performance.orders), type(usd.performance.engagement.reach)} == {int}
        assert found.as_of == ids.at(hours=5)
        # The snapshot in force at the campaign's as_of; the EUR entry that netted to zero
        # is gone, the other brand's orders are not this one's.
        assert found.snapshot == snapshot
        assert found.unattributed == Unattributed(2, (Money.of("27.00", "USD"),))

        first = campaign_attribution(found)
        assert first.reporting is not None and first.reporting.revenue.currency == "EUR"
        async with store.transaction() as tx:
            [saved] = await tx.save_campaign_attributions([first])
            assert saved.sequence == 1 and saved == first
            assert await tx.save_campaign_attributions([first]) == []
            assert await tx.campaigns_converted_since(ids.at(hours=5)) == {key}
            assert key not in await tx.campaigns_converted_since(ids.at(hours=6))
            # A change of figures is the next version.
            moved = campaign_attribution(replace(found, unattributed=Unattributed()))
            [again] = await tx.save_campaign_attributions([moved])
            assert again.sequence == 2
