"""The tracking service on the embedded Kafka, PostgreSQL and Redis, driven through the
broker like production: events in as raw bytes, results read from the output topics and the
database. One service instance for the whole module.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from typer.testing import CliRunner

from services.tracking.app import SERVICE
from services.tracking.domain.campaign_report import campaign_report
from services.tracking.store.postgres import PostgresTrackingStore
from shared.contract.events import CloudEvent, EventType, Topic, dlq_topic
from shared.contract.money import Money
from shared.contract.signing import Party
from shared.runtime import fx_store
from shared.runtime.service import ServiceRuntime
from shared.tools.cli.main import app as creatorflow
from shared.tools.infra import InfraUrls
from shared.tools.infra.smoke import read_dead_letters
from shared.tools.signing import PartyKeys
from tests.support.kafka_io import produce_events, read_topic
from tests.support.waiting import eventually
from tests.unit.tracking.builders import (
    T0,
    click_event,
    confirmation_event,
    deal_event,
    fx_event,
    model_event,
    order_event,
    post_event,
    refund_event,
    visitor,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def events_of(infra: InfraUrls, topic: str, deal_ids: set[str]) -> list[CloudEvent[Any]]:
    return [
        e
        for e in await read_topic(infra.kafka_bootstrap_servers, topic)
        if e.data.deal_id in deal_ids
    ]


async def dead_letters(infra: InfraUrls, topic: str) -> bytes:
    """Every record tracking dead-lettered from `topic`, joined: a test looks for an event id."""
    letters = await read_dead_letters(
        infra.kafka_bootstrap_servers, [dlq_topic(topic)], service=SERVICE
    )
    return b"\n".join(letter.value for letter in letters)


def unused_fx_hour() -> datetime:
    """A random hour in the 1870s-80s: no other test's FX snapshot is in force then, and ours
    never become anyone's latest (see tests/unit/tracking/store_contract.py)."""
    return datetime(1870, 1, 1, tzinfo=UTC) + timedelta(hours=random.randrange(1, 150_000))


def deal_in(
    deal_id: str, tag: str, *, currency: str, fee: str, code: str, start: datetime
) -> CloudEvent[Any]:
    """A deal paid in `currency` from `start`, of its own campaign and creator, with one code."""
    return deal_event(
        deal_id,
        campaign_id=f"cmp-{tag}",
        creator_id=f"cr-{tag}",
        currency=currency,
        fee=fee,
        promo_codes=(code,),
        starts_at=start,
    )


def seed_campaign(tag: str) -> tuple[list[CloudEvent[Any]], dict[str, int]]:
    """35 creators, $4,000 of fees + 5 % commission on $20,000 of attributed revenue."""
    rng = random.Random(35)
    campaign = f"cmp-seed-{tag}"
    fees = [Decimal("114.00")] * 34 + [Decimal("124.00")]
    events: list[CloudEvent[Any]] = []
    reach = likes = 0
    for n in range(35):
        deal_id, creator = f"deal-{tag}-{n}", f"cr-{tag}-{n}"
        code = f"SEED{n}-{tag}"
        events.append(
            deal_event(
                deal_id,
                campaign_id=campaign,
                creator_id=creator,
                fee=str(fees[n]),
                commission_rate="0.05",
                promo_codes=(code,),
                deliverables=(("dl-reel", "reel", 1),),
            )
        )
        for p in range(2):
            post_id = f"post-{tag}-{n}-{p}"
            final = (rng.randint(1200, 2500), rng.randint(120, 250))
            # Cumulative snapshots: two earlier ones with smaller numbers, sent after it.
            for hours, share in ((72, 1.0), (24, 0.5), (48, 0.8)):
                events.append(
                    post_event(
                        post_id,
                        creator_id=creator,
                        kind="reel" if p == 0 else "story",
                        tags=("#AD",),
                        observed_at=T0 + timedelta(days=1, hours=hours),
                        reach=int(final[0] * share),
                        likes=int(final[1] * share),
                    )
                )
            reach, likes = reach + final[0], likes + final[1]
    # 400 orders of $50 spread over the deals, some redeemed twice under new event ids.
    for k in range(400):
        n = k % 35
        order = order_event(
            f"ord-{tag}-{k}",
            promo_code=f"SEED{n}-{tag}",
            occurred_at=T0 + timedelta(days=2, minutes=k),
        )
        events.append(order)
        if k % 9 == 0:
            events.append(
                order_event(
                    order.data.order_id,
                    promo_code=order.data.promo_code,
                    occurred_at=order.data.occurred_at,
                )
            )
    # One refunded order (net zero), one unknown code, one after the attribution window.
    events.append(order_event(f"ord-{tag}-refunded", promo_code=f"SEED0-{tag}", amount="80.00"))
    events.append(refund_event(f"ord-{tag}-refunded", promo_code=f"SEED0-{tag}", amount="80.00"))
    events.append(order_event(f"ord-{tag}-unknown", promo_code=f"NOPE-{tag}"))
    events.append(
        order_event(
            f"ord-{tag}-late", promo_code=f"SEED1-{tag}", occurred_at=T0 + timedelta(days=38)
        )
    )
    # Redeliveries of whole events (same ids).
    events += rng.sample(events, 60)
    return events, {"reach": reach, "likes": likes}


async def test_seed_arithmetic_through_the_broker(
    infra: InfraUrls, service: ServiceRuntime, pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    campaign = f"cmp-seed-{tag}"
    events, expected = seed_campaign(tag)
    await produce_events(infra.kafka_bootstrap_servers, events)
    store = PostgresTrackingStore(pool, consumer="test-report")

    async def stored_orders() -> dict[str, tuple[str, str | None]]:
        return {
            r["order_id"]: (r["status"], r["reason"])
            for r in await pool.fetch(
                "SELECT order_id, status, reason FROM tracking_orders WHERE order_id LIKE $1",
                f"ord-{tag}-%",
            )
        }

    async def settled() -> bool:
        deals = await store.campaign_attributions(campaign)
        if len(deals) != 35:
            return False
        [total] = campaign_report(campaign, deals).totals
        # Orders are keyed by their code: those without a deal's revenue (an unknown code,
        # one outside the window) may be applied after the deals' totals are complete.
        special = {f"ord-{tag}-{name}" for name in ("unknown", "late", "refunded")}
        return (
            total.performance.revenue == Money.of("20000", "USD")
            and total.performance.engagement.posts == 70
            and special <= (await stored_orders()).keys()
        )

    await eventually(settled)
    report = campaign_report(campaign, await store.campaign_attributions(campaign))
    [total] = report.totals
    assert total.performance.spend == Money.of("5000.00", "USD")
    assert total.performance.revenue == Money.of("20000.00", "USD")
    assert total.performance.orders == 400
    assert total.ratios.roas == Decimal("4.0000")
    assert total.ratios.roi_pct == Decimal("300.00")
    assert total.performance.engagement.reach == expected["reach"]
    assert total.performance.engagement.likes == expected["likes"]
    assert 120_000 <= expected["reach"] <= 140_000 and 12_000 <= expected["likes"] <= 14_000
    assert len(report.creators) == 35

    orders = await stored_orders()
    assert orders[f"ord-{tag}-unknown"] == ("unattributed", "unknown_code")
    assert orders[f"ord-{tag}-late"] == ("unattributed", "outside_window")
    assert orders[f"ord-{tag}-refunded"] == ("attributed", None)

    # Every deal's reel was confirmed automatically, exactly once.
    deal_ids = {f"deal-{tag}-{n}" for n in range(35)}

    async def confirmed() -> list[CloudEvent[Any]]:
        return await events_of(infra, Topic.DELIVERABLES_CONFIRMED, deal_ids)

    async def all_confirmed() -> bool:
        return len(await confirmed()) >= 35

    await eventually(all_confirmed)
    confirmations = await confirmed()
    assert sorted(e.data.deal_id for e in confirmations) == sorted(deal_ids)
    assert {(e.data.deliverable_id, e.data.confirmed_by) for e in confirmations} == {
        ("dl-reel", "auto")
    }

    # The last attribution.updated of each deal carries its stored figures.
    async def updates() -> dict[str, Any]:
        last: dict[str, Any] = {}
        for e in await events_of(infra, Topic.TRACKING_ATTRIBUTION, deal_ids):
            last[e.data.deal_id] = e.data
        return last

    async def published() -> bool:
        last = await updates()
        return len(last) == 35 and sum(d.revenue.amount for d in last.values()) == 20000

    await eventually(published)
    last = await updates()
    assert sum(d.spend.amount for d in last.values()) == Decimal("5000.00")
    assert sum(d.reach for d in last.values()) == expected["reach"]

    # `creatorflow report campaign` prints the same totals.
    runner = CliRunner()
    result = await asyncio.to_thread(
        runner.invoke,
        creatorflow,
        ["report", "campaign", campaign],
        env={"DATABASE_URL": infra.database_url},
    )
    assert result.exit_code == 0, result.output
    assert "TOTAL USD" in result.output
    assert "20,000.00" in result.output and "5,000.00" in result.output
    assert "4.0000" in result.output and "300.00 %" in result.output
    assert f"{expected['reach']:,}" in result.output


async def test_orders_before_their_deal_and_before_their_fx_rate_are_kept_and_then_counted(
    infra: InfraUrls, service: ServiceRuntime, pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    start = unused_fx_hour()
    deal_id, code = f"deal-chf-{tag}", f"CHF-{tag}"
    order = order_event(
        f"ord-{tag}", promo_code=code, amount="64.90", occurred_at=start + timedelta(days=2)
    )

    async def order_row() -> dict[str, Any] | None:
        row = await pool.fetchrow("SELECT * FROM tracking_orders WHERE order_id = $1", f"ord-{tag}")
        return None if row is None else dict(row)

    async def status_is(status: str, reason: str | None) -> bool:
        row = await order_row()
        return row is not None and (row["status"], row["reason"]) == (status, reason)

    # The snapshot in force at the order has no CHF rate.
    no_chf = fx_event({"JPY": "151.2"}, as_of=start - timedelta(hours=1), source=f"test-{tag}")
    await produce_events(infra.kafka_bootstrap_servers, [no_chf, order])
    await eventually(lambda: status_is("unattributed", "unknown_code"))

    deal = deal_in(deal_id, tag, currency="CHF", fee="400.00", code=code, start=start)
    await produce_events(infra.kafka_bootstrap_servers, [deal])
    # Attributed, but waiting for a CHF rate at or before the order.
    await eventually(lambda: status_is("pending_fx", "no_fx_rate"))

    await produce_events(
        infra.kafka_bootstrap_servers,
        [fx_event({"CHF": "0.8812"}, as_of=start, source=f"test-{tag}")],
    )
    await eventually(lambda: status_is("attributed", None))
    row = await order_row()
    assert row is not None
    assert row["deal_id"] == deal_id
    assert row["revenue"] == Decimal("57.19")  # 64.90 x 0.8812 = 57.18988
    assert row["deal_currency"] == "CHF"
    assert (row["fx_rate"], row["fx_as_of"], row["fx_source"]) == (
        Decimal("0.8812"),
        start,
        f"test-{tag}",
    )

    async def last_update() -> Any:
        updates = await events_of(infra, Topic.TRACKING_ATTRIBUTION, {deal_id})
        return updates[-1].data if updates else None

    async def revenue_published() -> bool:
        update = await last_update()
        return update is not None and update.revenue == Money.of("57.19", "CHF")

    await eventually(revenue_published)
    update = await last_update()
    assert update.orders == 1
    assert update.spend == Money.of("405.72", "CHF")  # 400 + 10 % of 57.19 = 405.719


async def test_a_waiting_order_is_counted_when_another_service_stored_the_rate_first(
    infra: InfraUrls, service: ServiceRuntime, pool: asyncpg.Pool
) -> None:
    """Payouts and matching consume fx.rates too and share the FX table: whoever stores a
    snapshot first, tracking re-checks the orders that waited for it. Before, only a snapshot
    tracking stored itself did, and such orders stayed out of revenue for good."""
    tag = uuid.uuid4().hex[:8]
    start = unused_fx_hour()
    code = f"SEK-{tag}"
    deal = deal_in(f"deal-sek-{tag}", tag, currency="SEK", fee="1000.00", code=code, start=start)
    order = order_event(
        f"ord-{tag}", promo_code=code, amount="80.00", occurred_at=start + timedelta(days=1)
    )

    async def status() -> tuple[str, str | None] | None:
        row = await pool.fetchrow(
            "SELECT status, reason FROM tracking_orders WHERE order_id = $1", f"ord-{tag}"
        )
        return None if row is None else (row["status"], row["reason"])

    async def waiting() -> bool:
        now = await status()  # no snapshot at all yet, or none with a SEK rate
        return now is not None and now[0] == "pending_fx"

    await produce_events(infra.kafka_bootstrap_servers, [deal, order])
    await eventually(waiting, what="the order waiting for a SEK rate")

    rate = fx_event({"SEK": "10.5"}, as_of=start, source=f"test-{tag}")
    async with pool.acquire() as conn, conn.transaction():  # as payouts would, first
        stored = await fx_store.save_snapshot(
            conn, fx_store.snapshot_from_event(rate.data), rate.id
        )
    assert stored
    await produce_events(infra.kafka_bootstrap_servers, [rate])

    async def attributed() -> bool:
        return await status() == ("attributed", None)

    await eventually(attributed, what="the order counted once the rate is known")
    revenue = await pool.fetchval(
        "SELECT revenue FROM tracking_orders WHERE order_id = $1", f"ord-{tag}"
    )
    assert revenue == Decimal("840.00")  # 80.00 USD x 10.5


async def test_manual_confirmations_are_remembered_and_never_repeated(
    infra: InfraUrls, service: ServiceRuntime, pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    deal_id, creator = f"deal-{tag}", f"cr-{tag}"
    deal = deal_event(
        deal_id, creator_id=creator, deliverables=(("dl-reel", "reel", 1), ("dl-story", "story", 1))
    )
    manual = confirmation_event(deal_id, "dl-story", confirmed_by="brand-user-7")
    await produce_events(infra.kafka_bootstrap_servers, [manual, deal])

    async def recorded() -> bool:
        return bool(
            await pool.fetchval(
                "SELECT count(*) FROM tracking_confirmations WHERE deal_id = $1", deal_id
            )
        )

    await eventually(recorded)
    posts = [
        post_event(f"story-{tag}", creator_id=creator, kind="story"),
        post_event(f"reel-{tag}", creator_id=creator, kind="reel"),
    ]
    await produce_events(infra.kafka_bootstrap_servers, [*posts, manual])

    async def both_confirmed() -> bool:
        return (
            await pool.fetchval(
                "SELECT count(*) FROM tracking_confirmations WHERE deal_id = $1", deal_id
            )
            == 2
        )

    await eventually(both_confirmed)
    await asyncio.sleep(1.0)  # give the relay time to publish anything it (wrongly) would
    events = await events_of(infra, Topic.DELIVERABLES_CONFIRMED, {deal_id})
    mine = [(e.data.deliverable_id, e.data.confirmed_by) for e in events]
    assert sorted(mine) == [
        ("dl-reel", "auto"),
        ("dl-story", "brand-user-7"),
        ("dl-story", "brand-user-7"),
    ]
    rows = await pool.fetch(
        "SELECT deliverable_id, confirmed_by, post_ids FROM tracking_confirmations "
        "WHERE deal_id = $1 ORDER BY 1",
        deal_id,
    )
    assert [(r["deliverable_id"], r["confirmed_by"], list(r["post_ids"])) for r in rows] == [
        ("dl-reel", "auto", [f"reel-{tag}"]),
        ("dl-story", "brand-user-7", []),
    ]
    assert not await pool.fetchval(
        "SELECT deliverables_open FROM tracking_deals WHERE deal_id = $1", deal_id
    )


async def test_updates_are_coalesced_per_deal_and_conflicting_deals_dead_lettered(
    infra: InfraUrls, service: ServiceRuntime, pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    deal_id, creator = f"deal-{tag}", f"cr-{tag}"
    deal = deal_event(deal_id, creator_id=creator)
    snapshots = [
        post_event(
            f"post-{tag}",
            creator_id=creator,
            observed_at=T0 + timedelta(days=2, minutes=m),
            likes=m,
        )
        for m in range(200)
    ]
    conflicting = deal_event(deal_id, creator_id=creator, fee="999.00")
    await produce_events(infra.kafka_bootstrap_servers, [deal, *snapshots])

    async def final_likes() -> bool:
        updates = await events_of(infra, Topic.TRACKING_ATTRIBUTION, {deal_id})
        return bool(updates) and updates[-1].data.likes == 199

    await eventually(final_likes)
    updates = await events_of(infra, Topic.TRACKING_ATTRIBUTION, {deal_id})
    assert len(updates) < 20, f"{len(updates)} updates for 201 events"
    assert all(u.type == EventType.ATTRIBUTION_UPDATED for u in updates)

    await produce_events(infra.kafka_bootstrap_servers, [conflicting])

    async def rejected() -> bool:
        return conflicting.id.encode() in await dead_letters(infra, Topic.CAMPAIGN_DEALS)

    await eventually(rejected)
    assert await pool.fetchval(
        "SELECT fee_amount FROM tracking_deals WHERE deal_id = $1", deal_id
    ) == Decimal("500.00")


async def test_a_second_order_under_one_id_is_dead_lettered_not_counted(
    infra: InfraUrls, service: ServiceRuntime, pool: asyncpg.Pool
) -> None:
    # Keyed by their codes, the two orders go to different partitions: whichever comes
    # second is refused with its own event, and the deal's revenue is the first one's.
    tag = uuid.uuid4().hex[:8]
    deals = [
        deal_event(f"deal-{n}-{tag}", creator_id=f"cr-{n}-{tag}", promo_codes=(f"C{n}-{tag}",))
        for n in (1, 2)
    ]
    first = order_event(f"ord-{tag}", promo_code=f"C1-{tag}", amount="11.00")
    second = order_event(f"ord-{tag}", promo_code=f"C2-{tag}", amount="22.00")
    await produce_events(infra.kafka_bootstrap_servers, deals)
    await produce_events(infra.kafka_bootstrap_servers, [first])

    async def counted() -> bool:
        query = "SELECT order_id FROM tracking_orders WHERE order_id = $1"
        return await pool.fetchval(query, f"ord-{tag}") is not None

    await eventually(counted)
    await produce_events(infra.kafka_bootstrap_servers, [second])

    async def refused() -> bool:
        return second.id.encode() in await dead_letters(infra, Topic.TRACKING_ORDERS)

    await eventually(refused)
    assert first.id.encode() not in await dead_letters(infra, Topic.TRACKING_ORDERS)
    rows = await pool.fetch(
        "SELECT promo_code, amount FROM tracking_orders WHERE order_id = $1", f"ord-{tag}"
    )
    assert [(r["promo_code"], r["amount"]) for r in rows] == [(f"C1-{tag}", Decimal("11.00"))]


async def test_a_deal_of_another_brand_with_a_code_in_use_is_dead_lettered(
    infra: InfraUrls, service: ServiceRuntime, pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    code = f"SUMMER{tag}"
    held = deal_event(
        f"deal-a-{tag}", brand_id="br-1", creator_id=f"cr-a-{tag}", promo_codes=(code,)
    )
    clashing = deal_event(
        f"deal-b-{tag}", brand_id="br-2", creator_id=f"cr-b-{tag}", promo_codes=(code,)
    )
    await produce_events(infra.kafka_bootstrap_servers, [held])

    async def stored() -> bool:
        query = "SELECT count(*) FROM tracking_deals WHERE deal_id = $1"
        return bool(await pool.fetchval(query, held.data.deal_id))

    await eventually(stored)
    await produce_events(infra.kafka_bootstrap_servers, [clashing])
    reasons: list[str] = []

    async def rejected() -> bool:
        letters = await read_dead_letters(
            infra.kafka_bootstrap_servers, [dlq_topic(Topic.CAMPAIGN_DEALS)], service=SERVICE
        )
        reasons[:] = [letter.reason for letter in letters if clashing.id.encode() in letter.value]
        return bool(reasons)

    await eventually(rejected)
    assert code in reasons[0] and "one brand at a time" in reasons[0]
    assert not await pool.fetchval(
        "SELECT 1 FROM tracking_deals WHERE deal_id = $1", clashing.data.deal_id
    )


async def test_only_the_deal_s_brand_confirms_its_deliverables_by_hand(
    infra: InfraUrls, service: ServiceRuntime, pool: asyncpg.Pool
) -> None:
    """A confirmation names no brand. Signed by another brand than the deal's it is
    dead-lettered (`not_the_deal_owner`) and confirms nothing; sent before the deal, it is kept
    apart and dropped when the deal arrives, so tracking still confirms what it sees itself."""
    tag = uuid.uuid4().hex[:8]
    brand, rival = f"br-{tag}", f"br-rival-{tag}"
    keys = PartyKeys(source="tests/operator")
    keys.key(Party.BRAND, brand)
    keys.key(Party.BRAND, rival)
    await produce_events(infra.kafka_bootstrap_servers, keys.registrations())
    parts = (("dl-reel", "reel", 1), ("dl-story", "story", 1))
    known, late = f"deal-{tag}", f"deal-late-{tag}"
    creator, late_creator = f"cr-{tag}", f"cr-late-{tag}"
    deal = deal_event(known, brand_id=brand, creator_id=creator, promo_codes=(), deliverables=parts)
    await produce_events(infra.kafka_bootstrap_servers, [keys.sign(deal)])

    async def stored() -> bool:
        query = "SELECT count(*) FROM tracking_deals WHERE deal_id = $1"
        return bool(await pool.fetchval(query, known))

    await eventually(stored)
    rival_says = keys.sign(confirmation_event(known, "dl-story", confirmed_by="x"), owner=rival)
    brand_says = keys.sign(confirmation_event(known, "dl-reel", confirmed_by="y"), owner=brand)
    # Before its deal: another brand confirms the reel the creator is about to post.
    early = keys.sign(confirmation_event(late, "dl-reel", confirmed_by="x"), owner=rival)
    await produce_events(infra.kafka_bootstrap_servers, [rival_says, brand_says, early])

    async def kept() -> bool:
        query = "SELECT count(*) FROM tracking_early_confirmations WHERE deal_id = $1"
        return bool(await pool.fetchval(query, late))

    await eventually(kept, what="the early confirmation kept apart")
    late_deal = deal_event(
        late, brand_id=brand, creator_id=late_creator, promo_codes=(), deliverables=parts
    )
    reel = post_event(f"reel-{tag}", creator_id=late_creator, kind="reel")
    await produce_events(infra.kafka_bootstrap_servers, [keys.sign(late_deal), reel])

    async def letters() -> list[Any]:
        found = await read_dead_letters(
            infra.kafka_bootstrap_servers, [dlq_topic(Topic.DELIVERABLES_CONFIRMED)],
            service=SERVICE,
        )  # fmt: skip
        return [x for x in found if x.key in (known.encode(), late.encode())]

    async def settled() -> bool:
        auto = await events_of(infra, Topic.DELIVERABLES_CONFIRMED, {late})
        return bool(await letters()) and any(e.data.confirmed_by == "auto" for e in auto)

    await eventually(settled, what="the rival refused, the late reel confirmed by tracking")
    [letter] = await letters()
    assert letter.error_class == "Untrusted"
    assert letter.reason.startswith("not_the_deal_owner"), letter.reason
    rows = await pool.fetch(
        "SELECT deal_id, deliverable_id, confirmed_by FROM tracking_confirmations "
        "WHERE deal_id = ANY($1) ORDER BY 1, 2",
        [known, late],
    )
    assert [tuple(r) for r in rows] == [(known, "dl-reel", "y"), (late, "dl-reel", "auto")]
    assert not await pool.fetchval(
        "SELECT count(*) FROM tracking_early_confirmations WHERE deal_id = $1", late
    )


async def test_clicks_and_a_brand_s_model_change_recompute_the_campaign(
    infra: InfraUrls, service: ServiceRuntime, pool: asyncpg.Pool
) -> None:
    """Clicks on tracking.clicks and a signed campaign.attribution-model.set on
    campaign.deals: the campaign's deals are recomputed from what is stored and each
    published once with the new model; another brand's setting is dead-lettered."""
    tag = uuid.uuid4().hex[:8]
    brand, rival, campaign = f"br-{tag}", f"br-rival-{tag}", f"cmp-{tag}"
    keys = PartyKeys(source="tests/operator")
    keys.key(Party.BRAND, brand)
    keys.key(Party.BRAND, rival)
    await produce_events(infra.kafka_bootstrap_servers, keys.registrations())
    deal_ids = [f"deal-{tag}-{n}" for n in range(3)]
    deals = [
        keys.sign(
            deal_event(
                deal_id,
                campaign_id=campaign,
                brand_id=brand,
                creator_id=f"cr-{tag}-{n}",
                promo_codes=(f"C{n}-{tag}",),
                fee="100.00",
                commission_rate="0.10",
            )
        )
        for n, deal_id in enumerate(deal_ids)
    ]
    buyer = visitor(tag)
    clicks = [
        click_event(f"clk-{tag}-{n}", deal_id, visitor_id=buyer, clicked_at=T0 + timedelta(days=n))
        for n, deal_id in enumerate(deal_ids)
    ]
    order = order_event(
        f"ord-{tag}",
        promo_code=f"C2-{tag}",
        amount="200.00",
        occurred_at=T0 + timedelta(days=4),
        visitor_id=buyer,
    )
    await produce_events(infra.kafka_bootstrap_servers, [*deals, *clicks, order])

    async def revenues() -> dict[str, Decimal]:
        rows = await pool.fetch(
            "SELECT deal_id, revenue FROM tracking_attribution WHERE campaign_id = $1", campaign
        )
        return {r["deal_id"]: r["revenue"] for r in rows}

    async def code_credited() -> bool:
        return (await revenues()).get(deal_ids[2]) == Decimal("200.00")

    await eventually(code_credited, what="the order credited to its code's deal")
    keys_of_deals = [d.encode() for d in deal_ids]
    marker = await pool.fetchval(
        "SELECT coalesce(max(seq), 0) FROM outbox WHERE kafka_key = ANY($1::bytea[])",
        keys_of_deals,
    )

    model = keys.sign(model_event("position_based", campaign_id=campaign, brand_id=brand))
    await produce_events(infra.kafka_bootstrap_servers, [model])

    async def split() -> bool:
        return await revenues() == {
            deal_ids[0]: Decimal("80.00"),
            deal_ids[1]: Decimal("40.00"),
            deal_ids[2]: Decimal("80.00"),
        }

    await eventually(split, what="40/20/40 of the order over the three clicked deals")
    row = await pool.fetchrow("SELECT model FROM tracking_orders WHERE order_id = $1", f"ord-{tag}")
    assert row is not None and row["model"] == "position_based"
    # One attribution.updated per deal of the campaign, queued with the change.
    queued = await pool.fetch(
        "SELECT event_id, kafka_key FROM outbox WHERE kafka_key = ANY($1::bytea[]) AND seq > $2",
        keys_of_deals,
        marker,
    )
    assert sorted(bytes(r["kafka_key"]).decode() for r in queued) == sorted(deal_ids)
    queued_ids = {r["event_id"] for r in queued}

    async def published() -> list[CloudEvent[Any]]:
        updates = await events_of(infra, Topic.TRACKING_ATTRIBUTION, set(deal_ids))
        return [e for e in updates if e.id in queued_ids]

    async def each_once() -> bool:
        return len(await published()) == 3

    await eventually(each_once, what="every deal of the campaign published again")
    updates = await published()
    assert {e.data.attribution_model for e in updates} == {"position_based"}
    assert sum(e.data.revenue.amount for e in updates) == Decimal("200.00")

    stolen = keys.sign(model_event("last_click", campaign_id=campaign, brand_id=rival), owner=rival)
    await produce_events(infra.kafka_bootstrap_servers, [stolen])

    async def letters() -> list[Any]:
        found = await read_dead_letters(
            infra.kafka_bootstrap_servers, [dlq_topic(Topic.CAMPAIGN_DEALS)], service=SERVICE
        )
        return [x for x in found if stolen.id.encode() in x.value]

    async def refused() -> bool:
        return bool(await letters())

    await eventually(refused, what="the rival's setting dead-lettered")
    [letter] = await letters()
    assert letter.reason.startswith("not_the_deal_owner"), letter.reason
    assert await split()


async def test_a_campaign_s_attribution_is_published_in_its_reporting_currency(
    infra: InfraUrls, service: ServiceRuntime, pool: asyncpg.Pool
) -> None:
    """A USD deal signed first and a EUR deal: the campaign reports in USD at the snapshot in
    force at its as_of (1 EUR = 1/0.9215 USD), and counts its brand's order of an unknown code
    (not another brand's). Versions are numbered without gaps; the last is the stored one."""
    tag = uuid.uuid4().hex[:8]
    start = unused_fx_hour()
    campaign, brand = f"cmp-{tag}", f"br-{tag}"
    placed = start + timedelta(days=2)
    events = [
        deal_event(
            f"deal-u-{tag}",
            campaign_id=campaign,
            brand_id=brand,
            creator_id=f"cr-u-{tag}",
            promo_codes=(f"U-{tag}",),
            starts_at=start,
            time=start,
        ),
        deal_event(
            f"deal-e-{tag}",
            campaign_id=campaign,
            brand_id=brand,
            creator_id=f"cr-e-{tag}",
            fee="300.00",
            currency="EUR",
            commission_rate="0.15",
            promo_codes=(f"E-{tag}",),
            starts_at=start,
            time=start + timedelta(hours=1),
        ),
        fx_event({"EUR": "0.9215"}, as_of=start, source=f"test-{tag}"),
        order_event(f"ord-u-{tag}", promo_code=f"U-{tag}", amount="100.00", occurred_at=placed),
        order_event(
            f"ord-e-{tag}",
            promo_code=f"E-{tag}",
            amount="100.00",
            currency="EUR",
            occurred_at=placed,
        ),
        order_event(f"ord-x-{tag}", promo_code=f"NOPE-{tag}", amount="20.00", brand_id=brand),
        order_event(f"ord-y-{tag}", promo_code=f"NOPE-{tag}", brand_id=f"br-other-{tag}"),
    ]
    await produce_events(infra.kafka_bootstrap_servers, events)

    async def versions() -> list[Any]:
        return [
            e.data
            for e in await read_topic(
                infra.kafka_bootstrap_servers, Topic.TRACKING_CAMPAIGN_ATTRIBUTION
            )
            if e.data.campaign_id == campaign
        ]

    async def settled() -> bool:
        seen = await versions()
        return bool(seen) and seen[-1].orders == 2 and seen[-1].unattributed_orders == 1

    await eventually(settled, what="the campaign's final figures published")
    seen = await versions()
    assert [v.sequence for v in seen] == list(range(1, len(seen) + 1))
    last = seen[-1]
    assert (last.brand_id, last.deals, last.reporting_currency) == (brand, 2, "USD")
    assert [(t.revenue, t.fees, t.spend, t.orders) for t in last.totals] == [
        (Money.of("100.00", "EUR"), Money.of("300.00", "EUR"), Money.of("315.00", "EUR"), 1),
        (Money.of("100.00", "USD"), Money.of("500.00", "USD"), Money.of("510.00", "USD"), 1),
    ]
    # EUR 100.00 -> 108.52, 315.00 -> 341.83, 300.00 -> 325.56 USD.
    assert not last.fx_pending
    assert last.revenue == Money.of("208.52", "USD")
    assert last.spend == Money.of("851.83", "USD")
    assert last.fees == Money.of("825.56", "USD")
    assert last.fx is not None and (last.fx.as_of, last.fx.source) == (start, f"test-{tag}")
    assert (last.cpa, last.roas, last.roi_pct) == (
        Decimal("425.9150"),
        Decimal("0.2448"),
        Decimal("-75.52"),
    )
    assert last.unattributed_revenue == (Money.of("20.00", "USD"),)
    row = await pool.fetchrow(
        "SELECT sequence FROM tracking_campaign_attribution WHERE campaign_id = $1", campaign
    )
    assert row is not None and row["sequence"] == last.sequence
