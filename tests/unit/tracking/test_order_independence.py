"""Order independence: the same multiset of events (with ~30 % redeliveries), in any order
and any split into batches, yields the same attribution, order outcomes and confirmations;
also with clicks, orders naming visitors and clicks, and the campaign's attribution model
changed several times, and deals amended and cancelled (a cancelled deal's confirmations
aside: those made before its cancellation was known stay); and the same leaked-code flags,
with each alert sent at most once;
and the same campaign attribution (per currency, in its reporting currency, with its
brand's unattributed orders), its last `campaign.attribution.updated` carrying it.

Runs the real handler (services.tracking.handlers) on the in-memory store: through
`apply_batch`, or through the service's unit of work with each batch read ahead.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.tracking.app import SERVICE
from services.tracking.domain.leaks import LeakThresholds
from services.tracking.domain.orders import OrderReason
from services.tracking.handlers import apply_batch, make_handler, read_ahead
from services.tracking.store.memory import MemoryTrackingStore
from services.tracking.translate import attribution_event, campaign_attribution_event
from shared.contract.events import (
    CloudEvent,
    DealAmended,
    EventType,
    decode,
    encode,
    make_event,
    spec_for_type,
)
from shared.contract.money import Money
from shared.runtime.unit_of_work import UnitsOfWork
from tests.unit.tracking.builders import (
    T0,
    cancellation_event,
    click_event,
    confirmation_event,
    deal_event,
    delivered,
    fx_event,
    model_event,
    order_event,
    post_event,
    refund_event,
    visitor,
)

NOW = T0 + timedelta(days=100)


def deals() -> list[CloudEvent[Any]]:
    return [
        deal_event(
            "deal-1",
            creator_id="cr-a",
            promo_codes=("SHARED", "ONE"),
            deliverables=(
                ("dl-reel", "reel", 1),
                ("dl-stories", "story", 2),
                ("dl-story", "story", 1),
                ("dl-vid", "video", 1),
            ),
            commission_rate="0.10",
            days=20,
            window_days=5,
            audience_countries=("US",),
        ),
        deal_event(
            "deal-2",
            creator_id="cr-a",
            currency="EUR",
            fee="300.00",
            promo_codes=("TWO",),
            deliverables=(("dl-post", "post", 1), ("dl-vid", "video", 1)),
            required_tags=("#ad", "#brand"),
            starts_at=T0 + timedelta(days=10),
            days=20,
            commission_rate="0.15",
        ),
        deal_event(
            "deal-3",
            creator_id="cr-b",
            fee="0.00",
            promo_codes=("SHARED",),
            deliverables=(("dl-reel", "reel", 2),),
            starts_at=T0 + timedelta(days=15),
            days=10,
            window_days=0,
            audience_countries=("US", "CA"),
        ),
    ]


def deal_changes() -> list[CloudEvent[Any]]:
    """deal-1 amended twice (fee, rate and window; then its codes: ONE out, LATE in); deal-2
    cancelled on day 22, then amended after that (stale, whatever the order); a deal never
    signed cancelled (kept, counting for nothing)."""
    one, two = (deal.data for deal in deals()[:2])
    # An amendment states every term: version 3 repeats the rate and window version 2 set.
    rate_and_window = {"commission_rate": Decimal("0.20"), "attribution_window_days": 8}
    return [
        amended(one, 2, day=1, fee=Money.of("650.00", "USD"), **rate_and_window),
        amended(
            one,
            3,
            day=2,
            fee=Money.of("700.00", "USD"),
            promo_codes=("SHARED", "LATE"),
            **rate_and_window,
        ),
        cancellation_event("deal-2", time=T0 + timedelta(days=22)),
        amended(two, 2, day=23, fee=Money.of("1.00", "EUR")),
        cancellation_event("deal-404", time=T0 + timedelta(days=3)),
    ]


def amended(data: Any, version: int, *, day: int, **changes: Any) -> CloudEvent[Any]:
    return make_event(
        DealAmended(**{**dict(data), **changes, "version": version}),
        source="tests/tracking",
        time=T0 + timedelta(days=day),
    )


# A post's creator, kind, deal and posting time are fixed; its metrics grow and its tags
# may differ between snapshots.
identities = st.tuples(
    st.sampled_from(["cr-a", "cr-a", "cr-b"]),
    st.sampled_from(["story", "story", "reel", "post"]),
    st.sampled_from([None, None, "deal-1", "deal-2"]),
    st.integers(-2, 32),
)
snapshots = st.tuples(
    st.integers(0, 5),
    st.sampled_from([("#ad",), ("#ad",), ("#AD", "#Brand"), ()]),
    st.integers(0, 48),
    st.integers(0, 5000),
    st.integers(0, 20_000),
)


def post_events(
    ids: list[tuple[str, str, str | None, int]],
    specs: list[tuple[int, tuple[str, ...], int, int, int]],
) -> list[CloudEvent[Any]]:
    events = []
    for n, tags, seen, likes, followers in specs:
        creator, kind, deal, day = ids[n]
        events.append(
            post_event(
                f"post-{n}",
                creator_id=creator,
                kind=kind,
                deal_id=deal,
                tags=tags,
                posted_at=T0 + timedelta(days=day),
                observed_at=T0 + timedelta(days=day, hours=seen),
                likes=likes,
                comments=likes // 10,
                shares=likes // 20,
                impressions=likes * 30,
                reach=likes * 12,
                followers=followers,
            )
        )
    return events


orders = st.tuples(
    st.sampled_from(["SHARED", "ONE", "ONE", "TWO", "NOPE", "LATE"]),
    st.sampled_from(["10.00", "64.90", "199.99", "0.00"]),
    st.sampled_from(["USD", "USD", "EUR"]),
    # Often when every deal accepts orders, so clicks on several deals share the credit.
    st.one_of(st.integers(15, 24), st.integers(-2, 40)),
    st.sampled_from([None, "all", "part"]),
    # The buyer's visitor (None: the shop sent none) and the click it names, if any.
    st.sampled_from([None, 0, 0, 1]),
    st.sampled_from([None, None, 0, 3]),
)

# Clicks: the deal (one not signed, too), the visitor, the hour from T0.
clicks = st.tuples(
    st.sampled_from(["deal-1", "deal-3", "deal-3", "deal-2", "deal-404"]),
    st.sampled_from([0, 0, 1]),
    st.one_of(st.integers(14 * 24, 24 * 24), st.integers(-48, 40 * 24)),
)

# The brand sets the campaign's model: model, lookback days, half-life days, hour of setting,
# and whether suspected orders earn commission.
models = st.tuples(
    st.sampled_from(
        ["promo_code", "last_click", "first_click", "linear", "position_based", "time_decay"]
    ),
    st.sampled_from([2, 30, 30]),
    st.sampled_from([1, 7]),
    st.integers(0, 3),
    st.sampled_from(["credit", "withhold"]),
)

# Where an order ships, where its buyer came from, and minutes added to its time (so that
# several may fall within one hour): what the leaked-code rules read; and the shop's brand
# (the campaign's, another, or none), which decides whose unattributed orders it may be.
origins = st.tuples(
    st.sampled_from([None, "US", "DE", "DE", "DE"]),
    st.sampled_from([None, "https://www.instagram.com/", "https://www.groupon.com/deals/x"]),
    st.integers(0, 50),
    st.sampled_from([None, "br-1", "br-1", "br-9"]),
)
# Thresholds low enough for a handful of orders to fire every rule.
LEAK_RULES = LeakThresholds(
    window=timedelta(days=10),
    abroad_share=Decimal("0.4"),
    abroad_min_orders=2,
    coupon_min_orders=2,
    burst_min_orders=2,
    burst_share_of_reach=Decimal("0.00001"),
)


def click_events(specs: list[tuple[str, int, int]]) -> list[CloudEvent[Any]]:
    return [
        click_event(
            f"clk-{n}",
            deal,
            visitor_id=visitor(who),
            clicked_at=T0 + timedelta(hours=hour),
        )
        for n, (deal, who, hour) in enumerate(specs)
    ]


def model_events(specs: list[tuple[str, int, int, int, str]]) -> list[CloudEvent[Any]]:
    return [
        model_event(
            model,
            lookback_days=lookback,
            half_life_days=half_life,
            time=T0 + timedelta(hours=h),
            leaked_orders=leaked,
        )
        for model, lookback, half_life, h, leaked in specs
    ]


# "92.15" is a poisoned rate (x 100): suspect, whatever order the snapshots arrive in.
fx = st.tuples(st.integers(-3, 30), st.sampled_from(["0.9215", "0.95", "1.1", "92.15"]))


OrderSpec = tuple[str, str, str, int, str | None, int | None, int | None]


Origin = tuple[str | None, str | None, int, str | None]


def order_events(
    specs: list[OrderSpec], origins: list[Origin] | None = None
) -> list[CloudEvent[Any]]:
    events = []
    for n, (code, amount, currency, day, refund, who, clicked) in enumerate(specs):
        country, referrer, minutes, brand = (None, None, 0, None) if origins is None else origins[n]
        at = T0 + timedelta(days=day, hours=n, minutes=minutes)
        events.append(
            order_event(
                f"ord-{n}",
                promo_code=code,
                amount=amount,
                currency=currency,
                occurred_at=at,
                visitor_id=None if who is None else visitor(who),
                click_id=None if clicked is None else f"clk-{clicked}",
                shipping_country=country,
                referrer=referrer,
                brand_id=brand,
            )
        )
        if refund is not None:
            part = amount if refund == "all" else "5.00"
            events.append(
                refund_event(
                    f"ord-{n}", amount=part, currency=currency, occurred_at=at + timedelta(days=1)
                )
            )
    return events


def fx_events(specs: list[tuple[int, str]]) -> list[CloudEvent[Any]]:
    unique = {day: rate for day, rate in specs}  # one snapshot per as_of
    return [fx_event({"EUR": rate}, as_of=T0 + timedelta(days=day)) for day, rate in unique.items()]


def manual_confirmations(count: int) -> list[CloudEvent[Any]]:
    # Only deliverables no post can fulfil (videos), so manual and automatic never race.
    targets = [("deal-1", "dl-vid"), ("deal-2", "dl-vid"), ("deal-404", "dl-x")]
    return [confirmation_event(deal, dl, confirmed_by="brand-user") for deal, dl in targets[:count]]


def run(batches: list[list[CloudEvent[Any]]], *, ahead: bool = False) -> MemoryTrackingStore:
    """Apply `batches` in turn; with `ahead`, as the service does: each batch one unit of
    work, read ahead before it is applied."""
    store = MemoryTrackingStore()
    units = UnitsOfWork(
        SERVICE,
        store,
        make_handler(leak_rules=LEAK_RULES),
        read_ahead=read_ahead,
        clock=lambda: NOW,
    )

    async def main() -> None:
        offset = 0
        for batch in batches:
            deliveries = delivered(batch, offset=offset)
            if ahead:
                await units.prepare(deliveries)(deliveries)
            else:
                async with store.transaction() as tx:
                    await apply_batch(tx, deliveries, now=NOW, leak_rules=LEAK_RULES)
            offset += len(batch)

    asyncio.run(main())
    return store


def final_state(store: MemoryTrackingStore) -> dict[str, Any]:
    s = store.state
    return {
        "attributions": s.attributions,
        "outcomes": s.outcomes,
        # A cancelled deal (deal-2) confirms nothing once its cancellation is known, and what
        # it confirmed before stays: its confirmations depend on when that was.
        "confirmed": {key for key in s.confirmations if key[0] != "deal-2"},
        "memberships": s.memberships,
        "fx verdicts": {key: snapshot.suspect for key, snapshot in s.snapshots.items()},
        "models": s.models,
        "leak suspects": s.leak_suspects,
        "campaigns": s.campaigns,
        "unattributed": s.unattributed,
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    identities=st.lists(identities, min_size=6, max_size=6),
    posts=st.lists(snapshots, max_size=12),
    orders=st.lists(orders, max_size=8),
    origins=st.lists(origins, min_size=8, max_size=8),
    fx=st.lists(fx, max_size=3),
    manual=st.integers(0, 3),
    clicks=st.lists(clicks, min_size=1, max_size=8),
    models=st.lists(models, max_size=3),
    data=st.data(),
)
def test_any_order_and_batching_gives_the_same_attribution(
    identities: list[tuple[str, str, str | None, int]],
    posts: list[tuple[int, tuple[str, ...], int, int, int]],
    orders: list[OrderSpec],
    origins: list[Origin],
    fx: list[tuple[int, str]],
    manual: int,
    clicks: list[tuple[str, int, int]],
    models: list[tuple[str, int, int, int, str]],
    data: st.DataObject,
) -> None:
    events = (
        deals()
        + post_events(identities, posts)
        + order_events(orders, origins)
        + fx_events(fx)
        + manual_confirmations(manual)
        + click_events(clicks)
        + model_events(models)
        + deal_changes()
    )
    duplicates = data.draw(
        st.lists(
            st.sampled_from(events), min_size=len(events) * 3 // 10, max_size=len(events) * 3 // 10
        )
    )
    shuffled = data.draw(st.permutations(events + duplicates))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(shuffled) - 1)), max_size=6)))
    batches = [shuffled[a:b] for a, b in zip([0, *cuts], [*cuts, len(shuffled)], strict=True)]
    if data.draw(st.integers(0, 3)) == 0:
        # One event per batch: a batch may then change a campaign and nothing else.
        batches = [[event] for event in shuffled]

    reference = run([events])
    replayed = run(batches, ahead=data.draw(st.booleans()))

    assert final_state(replayed) == final_state(reference)
    assert set(replayed.state.attributions) == {"deal-1", "deal-2", "deal-3"}
    assert set(replayed.state.campaigns) == {("cmp-1", "br-1")}
    # The campaign's unattributed orders are exactly the brand's orders of unknown codes.
    unknown = [
        replayed.state.orders[o.order_id]
        for o in replayed.state.outcomes.values()
        if o.reason is OrderReason.UNKNOWN_CODE
    ]
    campaign = replayed.state.campaigns[("cmp-1", "br-1")]
    assert campaign.unattributed.orders == sum(o.brand_id == "br-1" for o in unknown)
    # Every order's credits sum exactly to it, in its own currency before conversion.
    for order_id, outcome in replayed.state.outcomes.items():
        order = replayed.state.orders[order_id]
        if outcome.credits and {c.revenue.currency for c in outcome.credits} == {
            order.amount.currency
        }:
            assert (
                sum((c.revenue for c in outcome.credits), Money.zero(order.amount.currency))
                == order.amount
            )

    # The last attribution.updated of each deal carries its final figures.
    last: dict[str, Any] = {}
    sequences: list[int] = []
    last_campaign: Any = None
    confirmations: Counter[tuple[str, str]] = Counter()
    alerts: Counter[tuple[str, str, str]] = Counter()
    for event in replayed.state.outbox:
        # What is published passes the consumers' own validation.
        spec = spec_for_type(event.type)
        assert decode(spec.topic, encode(event)) == event
        if event.type == EventType.ATTRIBUTION_UPDATED:
            # Consumers keep a deal's figures with the greatest `sequence` (its updates
            # numbered 1, 2, ...), whose `as_of` never goes back.
            before = last.get(event.data.deal_id)
            assert before is None or before.as_of <= event.data.as_of
            assert event.data.sequence == (1 if before is None else before.sequence + 1)
            last[event.data.deal_id] = event.data
        elif event.type == EventType.CAMPAIGN_ATTRIBUTION_UPDATED:
            sequences.append(event.data.sequence)
            last_campaign = event.data
        elif event.type == EventType.PROMO_CODE_LEAK_SUSPECTED:
            alerts[(event.data.deal_id, event.data.promo_code, event.data.rule)] += 1
        else:
            confirmations[(event.data.deal_id, event.data.deliverable_id)] += 1
            assert event.data.confirmed_by == "auto"
    # The last figures published for each deal are its final ones, dated no earlier than
    # their own inputs (later, where figures published before them reflected later inputs).
    final = {
        deal_id: attribution_event(a, now=NOW).data
        for deal_id, a in replayed.state.attributions.items()
    }
    assert set(last) == set(final)
    for deal_id, published in last.items():
        assert published.as_of >= final[deal_id].as_of
        unnumbered = {"as_of": final[deal_id].as_of, "sequence": None}
        assert published.model_copy(update=unnumbered) == final[deal_id]
    # The campaign's versions are numbered 1, 2, ... and the last carries its final figures.
    assert sequences == list(range(1, len(sequences) + 1))
    assert last_campaign == campaign_attribution_event(campaign, now=NOW).data
    # Each rule alerts at most once per code; every rule firing on the final facts alerted
    # (a rule that fired on part of the facts only may have alerted too).
    assert all(n == 1 for n in alerts.values())
    assert set(alerts) >= set(reference.state.leak_alerts)
    # Never confirmed twice, and never re-announced when a brand confirmed it first.
    assert all(n == 1 for n in confirmations.values())
    manual_keys = {("deal-1", "dl-vid"), ("deal-2", "dl-vid")}
    assert not manual_keys & set(confirmations)


def test_redelivering_everything_changes_nothing_and_publishes_nothing() -> None:
    events = [
        *deals(),
        post_event("post-1", creator_id="cr-a"),
        *order_events(
            [
                ("ONE", "64.90", "USD", 3, None, None, None),
                ("TWO", "10.00", "USD", 12, "part", None, None),
            ]
        ),
        *fx_events([(0, "0.9215")]),
    ]
    store = run([events])
    before = final_state(store)
    published = len(store.state.outbox)

    async def again() -> None:
        async with store.transaction() as tx:
            result = await apply_batch(tx, delivered(events), now=NOW)
            assert result.applied == 0

    asyncio.run(again())
    assert final_state(store) == before
    assert len(store.state.outbox) == published


def test_two_shops_may_choose_the_same_event_id() -> None:
    """CloudEvents ids are unique per source: shop B's event "1" is not a replay of shop A's."""
    shop_a = order_event("ord-a", promo_code="ONE", event_id="1", occurred_at=T0)
    shop_b = order_event("ord-b", promo_code="ONE", event_id="1", occurred_at=T0).model_copy(
        update={"source": "https://shop-b.example"}
    )
    for batches in ([[*deals(), shop_a, shop_b]], [deals(), [shop_a], [shop_b, shop_a]]):
        store = run(batches)
        assert set(store.state.outcomes) == {"ord-a", "ord-b"}
        assert store.state.attributions["deal-1"].performance.orders == 2
