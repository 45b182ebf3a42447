"""Exactly-once payouts on the embedded Kafka + PostgreSQL: duplicates, two instances in one
consumer group, concurrent handlers, replay from offset 0, and a held payout released later."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from services.payouts.app import INPUT_TOPICS, units_of_work
from services.payouts.destinations import DestinationCipher
from services.payouts.handlers import PayoutPolicy
from services.payouts.providers.sandbox import SandboxProvider
from services.payouts.reports import check_ledger
from services.payouts.schema import SCHEMA
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.contract.events import CloudEvent
from shared.runtime.kafka import partitions_of
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from tests.integration.payouts.kafka_io import StatusWatcher, applied_first, types_of
from tests.integration.payouts.service_setup import fast_settings
from tests.support.kafka_io import produce_events
from tests.support.payouts_setup import ObservedPayouts
from tests.unit.payouts.builders import account, confirmed, deal_signed, funded_deal, fx, uid
from tests.unit.payouts.harness import delivery

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = fast_settings(platform_fee_bps=500)
RATES = {"EUR": "0.9215", "JPY": "151.32", "KWD": "0.3071", "BHD": "0.376"}


class Instances:
    def __init__(self, setups: list[ObservedPayouts]) -> None:
        self.setups = setups

    def providers(self) -> list[SandboxProvider]:
        found = []
        for setup in self.setups:
            assert setup.service is not None
            assert isinstance(setup.service.provider, SandboxProvider)
            found.append(setup.service.provider)
        return found

    def transfers_of(self, payout_ids: set[str]) -> list[str]:
        """Every transfer the providers made for these payouts (a key twice = paid twice)."""
        return [k for p in self.providers() for k in p.transfers if k in payout_ids]


@pytest.fixture(scope="module")
async def instances(infra: InfraUrls, topics: None) -> AsyncIterator[Instances]:
    group = f"payouts-it-{uuid.uuid4().hex[:8]}"
    first, second = (
        ObservedPayouts(SETTINGS, group_id=group),
        ObservedPayouts(SETTINGS, group_id=group),
    )
    async with (
        ServiceRuntime("payouts", first, schema=SCHEMA, urls=infra),
        ServiceRuntime("payouts", second, schema=SCHEMA, urls=infra),
    ):
        yield Instances([first, second])


async def payout_rows(pool: asyncpg.Pool, deal_ids: set[str]) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT payout_id, deal_id, status FROM payouts_payouts WHERE deal_id = ANY($1::text[])",
        list(deal_ids),
    )


async def test_deal_confirmed_twice_is_paid_once(
    infra: InfraUrls, instances: Instances, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    deal, creator = uid("deal"), uid("cr")
    dl1 = confirmed(deal, "dl-1")
    await produce_events(
        infra.kafka_bootstrap_servers,
        [fx(RATES), account(creator), *funded_deal(deal, creator), dl1, confirmed(deal, "dl-2")],
    )
    # The same confirmation again (a redelivery) and a second confirmation of the same fact.
    await produce_events(infra.kafka_bootstrap_servers, [dl1, confirmed(deal, "dl-2")])
    await watcher.wait_for(
        lambda: "payout.settled" in types_of(watcher.of({deal})), what="payout settled"
    )
    await asyncio.sleep(1.0)  # time for a duplicate to show up, if one were coming
    # Topics are not ordered among themselves: the deal may be confirmed before the brand's
    # funds, the account event or the rates are consumed, and then the payout is held first
    # (for each in turn, each hold announced once), released by the last of them.
    events = watcher.of({deal})
    holds = [e.data.hold_code for e in events if e.type == "payout.held"]
    assert types_of(events) == ["payout.held"] * len(holds) + [
        "payout.scheduled",
        "payout.sent",
        "payout.settled",
    ]
    assert len(set(holds)) == len(holds)
    assert set(holds) <= {"awaiting_funds", "no_account", "fx_rate"}
    [row] = await payout_rows(db_pool, {deal})
    assert instances.transfers_of({row["payout_id"]}) == [row["payout_id"]]
    [sent] = [e.data for e in watcher.of({deal}) if e.type == "payout.sent"]
    assert str(sent.net) == "393.94 EUR" and str(sent.gross) == "450.00 USD"  # 427.50 x 0.9215


async def test_two_instances_racing_on_many_deals_pay_each_once(
    infra: InfraUrls, instances: Instances, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    deals = {uid("deal"): uid("cr") for _ in range(40)}
    events: list[CloudEvent[Any]] = [fx(RATES)]
    for deal, creator in deals.items():
        events += [account(creator, currency=random.choice(["EUR", "JPY", "KWD", "USD"]))]
        events += [*funded_deal(deal, creator), confirmed(deal, "dl-1"), confirmed(deal, "dl-2")]
        events += [confirmed(deal, "dl-2"), confirmed(deal, "dl-1")]  # duplicates of the facts
    random.Random(7).shuffle(events)
    # Two producers at once, each sending everything: every event arrives twice.
    await asyncio.gather(
        produce_events(infra.kafka_bootstrap_servers, events),
        produce_events(infra.kafka_bootstrap_servers, list(reversed(events))),
    )

    def all_sent() -> bool:
        return (
            len({e.data.deal_id for e in watcher.of(set(deals)) if e.type == "payout.sent"}) == 40
        )

    await watcher.wait_for(all_sent, seconds=60, what="40 deals sent")
    await asyncio.sleep(1.0)
    sent = [e for e in watcher.of(set(deals)) if e.type == "payout.sent"]
    assert len(sent) == 40 and len({e.data.payout_id for e in sent}) == 40
    rows = await payout_rows(db_pool, set(deals))
    assert len(rows) == 40
    ids = {r["payout_id"] for r in rows}
    assert sorted(instances.transfers_of(ids)) == sorted(ids)


async def test_concurrent_handlers_on_the_same_events_create_one_payout(
    instances: Instances, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    """Two handler instances apply the same facts at the same moment, in opposite orders; the
    running services' dispatchers then pay what they created."""
    db = PostgresPayoutsStore(db_pool)
    woken: list[int] = []
    # The running services open what these handlers seal: the same key.
    destinations = DestinationCipher.from_setting(SETTINGS.destination_key)
    handlers = [
        units_of_work(db, PayoutPolicy(), lambda: woken.append(1), destinations=destinations)
        for _ in range(2)
    ]
    deals = {uid("deal"): uid("cr") for _ in range(20)}
    for deal, creator in deals.items():
        funding, signed = funded_deal(deal, creator)
        acct = account(creator, currency="USD")
        c1, c2 = confirmed(deal, "dl-1"), confirmed(deal, "dl-2")
        # Different event ids per instance for the same facts, so the inbox cannot dedupe them:
        # only the deal locks and the business key can.
        again = [deal_signed(deal, creator), confirmed(deal, "dl-2"), confirmed(deal, "dl-1")]
        await asyncio.gather(
            handlers[0]([(e, delivery(e)) for e in (acct, funding, signed, c1, c2)]),
            handlers[1]([(e, delivery(e)) for e in reversed(again)]),
        )
    rows = await payout_rows(db_pool, set(deals))
    assert sorted(r["deal_id"] for r in rows) == sorted(deals)

    def all_sent() -> bool:
        return len([e for e in watcher.of(set(deals)) if e.type == "payout.sent"]) >= 20

    await watcher.wait_for(all_sent, what="20 payouts sent")
    await asyncio.sleep(1.0)
    assert len([e for e in watcher.of(set(deals)) if e.type == "payout.sent"]) == 20
    ids = {r["payout_id"] for r in rows}
    assert sorted(instances.transfers_of(ids)) == sorted(ids)


async def _lag(bootstrap: str, group: str) -> int:
    """Messages of the input topics not yet committed by `group` (without joining it)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = await partitions_of(consumer, INPUT_TOPICS)
        ends = await consumer.end_offsets(partitions)
        lag = 0
        for tp in partitions:
            committed = await consumer.committed(tp)
            # The embedded broker's end offsets can trail the committed ones; only a positive
            # difference is lag.
            lag += max(0, ends[tp] - (committed or 0))
        return lag
    finally:
        await consumer.stop()


async def test_replay_from_offset_zero_pays_nothing_again(
    infra: InfraUrls, instances: Instances, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    before_rows = await db_pool.fetchval("SELECT count(*) FROM payouts_payouts")
    before_events = len(watcher.events)
    group = f"payouts-replay-{uuid.uuid4().hex[:8]}"
    replay = ObservedPayouts(SETTINGS, group_id=group)  # a new group starts at offset 0
    async with ServiceRuntime("payouts", replay, schema=SCHEMA, urls=infra):
        for _ in range(120):
            if await _lag(infra.kafka_bootstrap_servers, group) == 0:
                break
            await asyncio.sleep(0.25)
        else:
            raise AssertionError("the replaying consumer did not catch up")
        await asyncio.sleep(2.0)
        assert replay.service is not None
        assert isinstance(replay.service.provider, SandboxProvider)
        assert replay.service.provider.calls == 0
    assert await db_pool.fetchval("SELECT count(*) FROM payouts_payouts") == before_rows
    assert len(watcher.events) == before_events


async def test_held_payout_is_released_by_a_later_account_event_and_paid_once(
    infra: InfraUrls, instances: Instances, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    deal, creator = uid("deal"), uid("cr")
    # The brand's funds first, so that the payout is held for its account alone.
    funding, signed = funded_deal(deal, creator)
    await applied_first(infra.kafka_bootstrap_servers, db_pool, funding)
    await produce_events(
        infra.kafka_bootstrap_servers,
        [fx(RATES), signed, confirmed(deal, "dl-1"), confirmed(deal, "dl-2")],
    )
    await watcher.wait_for(lambda: bool(watcher.of({deal})), what="payout held")
    [held] = watcher.of({deal})
    assert held.type == "payout.held" and held.data.reason == "no payout account on file"
    await produce_events(infra.kafka_bootstrap_servers, [account(creator, status="pending")])
    # Still held, now for the tax form: announced, as what it waits for changed.
    await watcher.wait_for(lambda: len(watcher.of({deal})) == 2, what="held again")
    await asyncio.sleep(1.0)
    assert [(e.type, e.data.hold_code) for e in watcher.of({deal})] == [
        ("payout.held", "no_account"),
        ("payout.held", "tax_form"),
    ]
    later = account(creator, currency="KWD", form="W-9")
    later = later.model_copy(update={"time": later.time.replace(hour=later.time.hour + 1)})
    await produce_events(infra.kafka_bootstrap_servers, [later, later])
    await watcher.wait_for(
        lambda: "payout.settled" in types_of(watcher.of({deal})), what="payout settled"
    )
    await asyncio.sleep(1.0)
    assert types_of(watcher.of({deal})) == [
        "payout.held",
        "payout.held",
        "payout.scheduled",
        "payout.sent",
        "payout.settled",
    ]
    sent = watcher.of({deal})[3].data
    assert str(sent.net) == "131.285 KWD"  # (450 - 5 %) USD x 0.3071 = 131.28525 KWD
    [row] = await payout_rows(db_pool, {deal})
    assert instances.transfers_of({row["payout_id"]}) == [row["payout_id"]]
    report = await check_ledger(PostgresPayoutsStore(db_pool))
    assert report.problems == []
