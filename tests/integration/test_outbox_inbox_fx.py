"""Inbox, outbox and FX store against the real PostgreSQL and broker."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from shared.contract.events import CONTENT_TYPE, CloudEvent, EventIdentity, Topic
from shared.contract.events.examples import valid_example
from shared.contract.money import FxSnapshot, Money
from shared.runtime.config import Settings
from shared.runtime.fx_store import save_judged, save_snapshot, snapshot_at, trusted_before
from shared.runtime.inbox import Claimed, EventIdReused, claim, claim_in
from shared.runtime.kafka import Delivery, make_broker
from shared.runtime.outbox import OutboxRelay, enqueue
from shared.tools.infra import InfraUrls
from tests.support.kafka_io import consumer_from_start, read_until
from tests.support.waiting import eventually

pytestmark = pytest.mark.integration


def _delivery(offset: int) -> Delivery:
    return Delivery(Topic.TRACKING_ORDERS, 0, offset, None, b"", ())


def _order(event_id: str, source: str = "https://shop.example.com") -> CloudEvent[Any]:
    return valid_example("order.redeemed").model_copy(update={"id": event_id, "source": source})


def _ids(identities: set[tuple[str, str]]) -> set[str]:
    return {event_id for _, event_id in identities}


async def test_claim_returns_only_first_sightings(db_pool: asyncpg.Pool) -> None:
    consumer = f"inbox-test-{uuid.uuid4().hex[:8]}"
    a, b, c = (f"{consumer}-{n}" for n in "abc")
    async with db_pool.acquire() as conn:
        async with conn.transaction():
            first = await claim(
                conn,
                consumer,
                [(_order(a), _delivery(1)), (_order(b), _delivery(2)), (_order(a), _delivery(3))],
            )
        async with conn.transaction():
            second = await claim(
                conn, consumer, [(_order(b), _delivery(2)), (_order(c), _delivery(4))]
            )
        with pytest.raises(RuntimeError, match="inside the transaction"):
            await claim(conn, consumer, [(_order(c), _delivery(4))])
    assert _ids(first) == {a, b}
    assert _ids(second) == {c}


async def test_claim_tells_apart_equal_ids_from_different_sources(db_pool: asyncpg.Pool) -> None:
    """CloudEvents ids are unique per source only: a second shop's order "1" is not a replay
    of the first shop's."""
    consumer = f"inbox-test-{uuid.uuid4().hex[:8]}"
    one, other = _order("1", "https://shop-a.example"), _order("1", "https://shop-b.example")
    async with db_pool.acquire() as conn:
        async with conn.transaction():
            first = await claim(conn, consumer, [(one, _delivery(1)), (other, _delivery(2))])
        async with conn.transaction():
            again = await claim(conn, consumer, [(one, _delivery(1)), (other, _delivery(2))])
    assert first == {one.identity, other.identity}
    assert again == set()


async def test_ids_claimed_before_sources_were_recorded_stay_claimed(
    db_pool: asyncpg.Pool,
) -> None:
    """Rows from before migration 0005 have no source: a replay of their event, whatever its
    source, is still a no-op."""
    consumer = f"inbox-test-{uuid.uuid4().hex[:8]}"
    async with db_pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO processed_events
                   (consumer, source, event_id, event_type, topic, kafka_partition, kafka_offset)
               VALUES ($1, '', 'old', 'order.redeemed', 'tracking.orders', 0, 1)""",
            consumer,
        )
        async with conn.transaction():
            fresh = await claim(
                conn, consumer, [(_order("old"), _delivery(1)), (_order("new"), _delivery(2))]
            )
    assert _ids(fresh) == {"new"}


async def test_claim_rolls_back_with_the_transaction(db_pool: asyncpg.Pool) -> None:
    consumer = f"inbox-test-{uuid.uuid4().hex[:8]}"
    async with db_pool.acquire() as conn:
        with pytest.raises(ZeroDivisionError):
            async with conn.transaction():
                assert _ids(await claim(conn, consumer, [(_order("x"), _delivery(1))])) == {"x"}
                raise ZeroDivisionError
        async with conn.transaction():
            assert _ids(await claim(conn, consumer, [(_order("x"), _delivery(1))])) == {"x"}


# The inbox's refusal of a reused id, the same in PostgreSQL and in the stores' memory fake.
Claim = Callable[[list[tuple[CloudEvent[Any], Delivery]]], Awaitable[set[EventIdentity]]]


@pytest.fixture(params=["postgres", "memory"])
async def claim_batch(
    request: pytest.FixtureRequest, db_pool: asyncpg.Pool
) -> AsyncIterator[Claim]:
    """A claim of one consumer's batch in a transaction of its own, rolled back on error; each
    test that takes it runs once against each inbox."""
    consumer = f"inbox-test-{uuid.uuid4().hex[:8]}"
    if request.param == "memory":
        memory: dict[tuple[str, str, str], Claimed] = {}

        async def in_memory(batch: list[tuple[CloudEvent[Any], Delivery]]) -> set[EventIdentity]:
            nonlocal memory
            saved = dict(memory)
            try:
                return claim_in(memory, consumer, batch)
            except BaseException:
                memory = saved
                raise

        yield in_memory
        return
    async with db_pool.acquire() as conn:

        async def in_postgres(batch: list[tuple[CloudEvent[Any], Delivery]]) -> set[EventIdentity]:
            async with conn.transaction():
                return await claim(conn, consumer, batch)

        yield in_postgres


def _amount(event: CloudEvent[Any], amount: str) -> CloudEvent[Any]:
    data = event.data.model_copy(update={"amount": Money.of(amount, "USD")})
    return event.model_copy(update={"data": data})


async def test_an_id_used_again_for_another_event_is_refused(claim_batch: Claim) -> None:
    order = _order("ord-evt-1")
    assert await claim_batch([(order, _delivery(1))]) == {order.identity}
    # The same event again, sent later: a repeat, skipped.
    later = order.model_copy(update={"time": order.time + timedelta(minutes=5)})
    assert await claim_batch([(later, _delivery(9))]) == set()
    with pytest.raises(EventIdReused) as refused:
        await claim_batch(
            [(_order("ord-evt-2"), _delivery(10)), (_amount(order, "1.00"), _delivery(11))]
        )
    assert refused.value.reason.startswith(
        "event id 'ord-evt-1' of source 'https://shop.example.com' was already used by "
        "another order.redeemed (tracking.orders[0]@1)"
    )
    # Refused with the batch, the other event in it is claimed when it comes again.
    assert _ids(await claim_batch([(_order("ord-evt-2"), _delivery(10))])) == {"ord-evt-2"}


async def test_an_id_used_twice_in_one_batch_for_two_events_is_refused(claim_batch: Claim) -> None:
    order = _order("ord-twice")
    same = [(order, _delivery(1)), (order, _delivery(2))]
    assert await claim_batch(same) == {order.identity}
    with pytest.raises(EventIdReused, match=r"tracking.orders\[0\]@3"):
        other = _order("ord-twice-2")
        await claim_batch([(other, _delivery(3)), (_amount(other, "2.00"), _delivery(4))])
    assert await claim_batch([(other, _delivery(3))]) == {other.identity}


async def test_our_own_events_and_secret_carrying_ones_sent_again_are_repeats(
    claim_batch: Claim,
) -> None:
    """Our services announce a fact again under its derived id, fields moved since; and the
    inbox hashes a payout account without its destination: one that moved only that is taken
    for a repeat, one of another creator is refused."""
    ours = _order("derived-1", source="creatorflow/tracking")
    assert await claim_batch([(ours, _delivery(1))]) == {ours.identity}
    assert await claim_batch([(_amount(ours, "3.00"), _delivery(2))]) == set()
    account = valid_example("creator.payout-account.upserted")
    moved = account.data.model_copy(update={"destination": SecretStr("acct_elsewhere")})
    assert await claim_batch([(account, _delivery(3))]) == {account.identity}
    again = account.model_copy(update={"data": moved})
    assert await claim_batch([(again, _delivery(4))]) == set()
    other = account.data.model_copy(update={"creator_id": "cr-another"})
    with pytest.raises(EventIdReused, match=r"another creator\.payout-account\.upserted"):
        await claim_batch([(account.model_copy(update={"data": other}), _delivery(5))])


_PENDING = "SELECT count(*) FROM outbox WHERE event_id LIKE $1 AND published_at IS NULL"


async def test_outbox_publishes_committed_events_in_order_once(
    infra: InfraUrls, topics: None, db_pool: asyncpg.Pool
) -> None:
    tag = uuid.uuid4().hex[:8]
    producer = f"outbox-test-{tag}"
    events = [
        valid_example("payout.scheduled").model_copy(update={"id": f"{tag}-{i}"}) for i in range(20)
    ]
    async with db_pool.acquire() as conn:
        with pytest.raises(ZeroDivisionError):
            async with conn.transaction():
                rolled_back = events[0].model_copy(update={"id": f"{tag}-rolled-back"})
                await enqueue(conn, [rolled_back], producer=producer)
                raise ZeroDivisionError
        async with conn.transaction():
            await enqueue(conn, events[:10], producer=producer)
        async with conn.transaction():
            await enqueue(conn, events[5:], producer=producer)  # the first five again: kept once

    broker = make_broker(Settings(), infra.kafka_bootstrap_servers, logger=None)
    await broker.connect()
    relays = [OutboxRelay(db_pool, broker, producer=producer, poll_seconds=0.2) for _ in range(2)]
    tasks = [asyncio.create_task(r.run()) for r in relays]
    try:
        published = await read_until(
            infra.kafka_bootstrap_servers,
            Topic.PAYOUTS_STATUS,
            lambda e: e.id.startswith(tag),
            count=len(events),
        )
        seen = [e.id for e in published]

        # The broker acknowledges before the relay marks its rows published and counts them;
        # stopping the relays in between would leave them to be published again.
        async def all_marked() -> bool:
            return not await db_pool.fetchval(_PENDING, f"{tag}%")

        await eventually(all_marked, 30, what="every row marked published")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await broker.stop()
    # One key (the deal id of the example), so one partition: the order is the outbox order.
    assert seen == [e.id for e in events]
    assert sum(r.published for r in relays) == len(events)
    assert min(r.published for r in relays) == 0, "only one relay leads at a time"
    assert await db_pool.fetchval(_PENDING, f"{tag}%") == 0


async def test_a_relay_publishes_its_own_services_rows_only(
    infra: InfraUrls, topics: None, db_pool: asyncpg.Pool
) -> None:
    """Tracking's relay never sends payouts' events; rows from before producers were recorded
    (producer '') go out with whichever relay comes first."""
    tag = uuid.uuid4().hex[:8]
    mine, theirs = f"svc-a-{tag}", f"svc-b-{tag}"
    event = valid_example("payout.scheduled")
    a, b, old = (event.model_copy(update={"id": f"{tag}-{n}"}) for n in ("a", "b", "old"))
    async with db_pool.acquire() as conn:
        async with conn.transaction():
            await enqueue(conn, [a], producer=mine)
            await enqueue(conn, [b], producer=theirs)
            await enqueue(conn, [old], producer=mine)
        await conn.execute("UPDATE outbox SET producer = '' WHERE event_id = $1", old.id)
    broker = make_broker(Settings(), infra.kafka_bootstrap_servers, logger=None)
    await broker.connect()
    try:
        assert await OutboxRelay(db_pool, broker, producer=mine).publish_pending() >= 2
    finally:
        await broker.stop()
    pending = await db_pool.fetch(
        "SELECT event_id FROM outbox WHERE event_id LIKE $1 AND published_at IS NULL", f"{tag}-%"
    )
    assert [row["event_id"] for row in pending] == [b.id]


async def test_fx_snapshots_in_force(db_pool: asyncpg.Pool) -> None:
    source = f"test-feed-{uuid.uuid4().hex[:8]}"
    base_time = datetime(2031, 1, 1, tzinfo=UTC)
    older = FxSnapshot("USD", {"EUR": Decimal("0.9"), "JPY": Decimal("150")}, base_time, source)
    newer = FxSnapshot("USD", {"EUR": Decimal("0.95")}, base_time + timedelta(days=1), source)
    async with db_pool.acquire() as conn, conn.transaction():
        assert await save_snapshot(conn, older, "e1")
        assert await save_snapshot(conn, newer, "e2")
        assert not await save_snapshot(conn, newer, "e2-again")
    at = await snapshot_at(db_pool, base_time + timedelta(hours=12))
    assert at is not None and at.source == source and at.rate("USD", "JPY") == Decimal("150")
    latest = await snapshot_at(db_pool, datetime(2200, 1, 1, tzinfo=UTC))
    assert latest is not None and latest.as_of >= newer.as_of
    assert await snapshot_at(db_pool, datetime(1999, 1, 1, tzinfo=UTC)) is None


async def test_fx_snapshots_are_judged_once_against_the_last_trusted_one(
    db_pool: asyncpg.Pool,
) -> None:
    source = f"test-feed-{uuid.uuid4().hex[:8]}"
    at = datetime(2041, 1, 1, tzinfo=UTC)
    limit = Decimal("0.25")

    def snapshot(eur: str, hours: int) -> FxSnapshot:
        return FxSnapshot("USD", {"EUR": Decimal(eur)}, at + timedelta(hours=hours), source)

    async with db_pool.acquire() as conn, conn.transaction():
        assert await save_judged(conn, snapshot("0.91", -48), "e0", limit)
        assert await save_judged(conn, snapshot("0.92", 0), "e1", limit)
        assert await save_judged(conn, snapshot("92000", 1), "e2", limit)  # suspect
        assert await save_judged(conn, snapshot("92000", 2), "e3", limit)  # still suspect
        assert await save_judged(conn, snapshot("0.95", 3), "e4", limit)
    poisoned = await snapshot_at(db_pool, at + timedelta(hours=2))
    assert poisoned is not None and poisoned.suspect is not None
    assert "EUR 0.92 -> 92000 per USD" in poisoned.suspect
    trusted = await snapshot_at(db_pool, at + timedelta(hours=2), trusted=True)
    assert trusted is not None and trusted.as_of == at
    later = at + timedelta(hours=4)
    references = await trusted_before(db_pool, later, ["USD"])
    assert snapshot("0.95", 3) in references  # the one in force, the latest of its base
    assert snapshot("0.91", -48) in references  # in force a day before it: its anchor
    assert all(s.suspect is None for s in references)


async def test_a_new_snapshot_reads_its_anchor_not_the_whole_day_before_it(
    db_pool: asyncpg.Pool,
) -> None:
    source = f"test-feed-{uuid.uuid4().hex[:8]}"
    at = datetime(2046, 1, 1, tzinfo=UTC)
    day = [
        FxSnapshot("USD", {"EUR": Decimal("0.92")}, at + timedelta(minutes=10 * n), source)
        for n in range(6 * 30)  # thirty hours, every ten minutes
    ]
    async with db_pool.acquire() as conn, conn.transaction():
        for n, snapshot in enumerate(day):
            assert await save_snapshot(conn, snapshot, f"day-{n}")
    newest = day[-1].as_of + timedelta(minutes=10)
    references = await trusted_before(db_pool, newest, ["USD"])
    anchor = [s for s in day if s.as_of <= newest - timedelta(days=1)][-1]
    assert day[-1] in references  # the one in force, the latest of its base
    assert anchor in references  # the one in force a day before
    assert len(references) <= 4  # and the first trusted one of all, not 145 of the day
    # Judging from an earlier time on (a late snapshot) reads the anchors of what follows.
    late = await trusted_before(db_pool, day[-12].as_of, ["USD"], until=newest)
    anchors = [s for s in day if anchor.as_of - timedelta(hours=2) <= s.as_of <= anchor.as_of]
    assert all(s in late for s in anchors)
    assert len(late) < len(day) // 2


async def test_a_rate_walked_in_steps_under_the_limit_is_stopped_by_the_day_before(
    db_pool: asyncpg.Pool,
) -> None:
    source = f"test-feed-{uuid.uuid4().hex[:8]}"
    at = datetime(2051, 1, 1, tzinfo=UTC)
    limit = Decimal("0.25")
    steps = ["0.92", "1.14", "1.41", "1.75", "0.93"]  # each 24 % from the one before
    async with db_pool.acquire() as conn, conn.transaction():
        for n, eur in enumerate(steps):
            snapshot = FxSnapshot("USD", {"EUR": Decimal(eur)}, at + timedelta(hours=n), source)
            assert await save_judged(conn, snapshot, f"walk-{n}", limit)
    verdicts = []
    for n in range(len(steps)):
        stored = await snapshot_at(db_pool, at + timedelta(hours=n))
        assert stored is not None
        verdicts.append(stored.suspect)
    assert verdicts[0] is None and verdicts[1] is None and verdicts[4] is None
    # Judged by the one in force a day before (this test's first, or an earlier test's).
    assert verdicts[2] is not None and "-> 1.41 per USD" in verdicts[2]
    assert verdicts[3] is not None


async def test_published_events_say_they_are_whole_cloudevents(
    infra: InfraUrls, topics: None, db_pool: asyncpg.Pool
) -> None:
    """Structured mode of CloudEvents' Kafka binding: a client following it reads the value
    as the whole event only with this content-type."""
    tag = uuid.uuid4().hex[:8]
    event = valid_example("payout.scheduled").model_copy(update={"id": f"{tag}-ct"})
    async with db_pool.acquire() as conn, conn.transaction():
        await enqueue(conn, [event], producer=f"svc-{tag}")
    broker = make_broker(Settings(), infra.kafka_bootstrap_servers, logger=None)
    await broker.connect()
    try:
        assert await OutboxRelay(db_pool, broker, producer=f"svc-{tag}").publish_pending() >= 1
    finally:
        await broker.stop()
    consumer = consumer_from_start(infra.kafka_bootstrap_servers, Topic.PAYOUTS_STATUS)
    await consumer.start()
    try:
        headers = None
        while headers is None:
            batch = await asyncio.wait_for(consumer.getmany(timeout_ms=500), 30)
            assert batch, "the published event was not found"
            for records in batch.values():
                for record in records:
                    if event.id.encode() in (record.value or b""):
                        headers = dict(record.headers)
    finally:
        await consumer.stop()
    assert headers["content-type"] == CONTENT_TYPE.encode()
