"""Wrong money through the real servers: a poisoned FX feed, and the fee schedule changed
between deploys. Each scenario paid wrong amounts before payouts guarded against it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services.payouts.schema import SCHEMA
from shared.contract.events import CloudEvent, Topic, dlq_topic
from shared.contract.money import Money
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from shared.tools.infra.smoke import read_dead_letters
from tests.integration.payouts.kafka_io import StatusWatcher, applied_first, types_of
from tests.integration.payouts.service_setup import fast_settings, sandbox_transfers
from tests.support.kafka_io import produce_events
from tests.support.payouts_setup import ObservedPayouts
from tests.support.waiting import eventually
from tests.unit.payouts.builders import account, confirmed, deal_signed, funded_deal, fx, uid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = fast_settings(platform_fee_bps=500)


async def test_a_poisoned_fx_feed_moves_no_money_until_a_trusted_rate_is_in_force(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    now = datetime.now(UTC)
    bootstrap = infra.kafka_bootstrap_servers
    trusted = {"EUR": "0.9215", "JPY": "151.32"}
    setup = ObservedPayouts(SETTINGS, group_id=f"payouts-fx-{uuid.uuid4().hex[:8]}")
    async with ServiceRuntime("payouts", setup, schema=SCHEMA, urls=infra):
        await produce_events(bootstrap, [fx(trusted, as_of=now - timedelta(hours=3))])
        poison = [
            # Dated in year 9999: before, it stayed "latest" after every correct feed.
            fx({"EUR": "100000", "JPY": "151.32"}, as_of=datetime(9999, 1, 1, tzinfo=UTC)),
            # Recent, but EUR x 108,000; then a rate so small any amount converts to nothing.
            fx({"EUR": "100000", "JPY": "151.32"}, as_of=now - timedelta(hours=2)),
            fx({"EUR": "1E-40", "JPY": "151.32"}, as_of=now - timedelta(hours=1)),
        ]
        await produce_events(bootstrap, poison)

        async def poison_read() -> bool:
            applied = await db_pool.fetchval(
                "SELECT count(*) FROM processed_events WHERE event_id = ANY($1::text[])",
                [e.id for e in poison[1:]],
            )
            return bool(applied == 2)

        await eventually(poison_read, what="the recent poisoned snapshots applied")
        await asyncio.sleep(0.5)  # the future-dated one was read with them

        deal, creator = uid("deal"), uid("cr")
        funding, signed = funded_deal(deal, creator)
        await applied_first(bootstrap, db_pool, funding)
        await produce_events(
            bootstrap,
            [
                account(creator, currency="EUR"),
                signed,
                # Confirmed while the last poisoned snapshot is in force.
                confirmed(deal, "dl-1", at=now - timedelta(minutes=30)),
                confirmed(deal, "dl-2", at=now - timedelta(minutes=30)),
            ],
        )

        async def held_or_sent() -> bool:
            status = await db_pool.fetchval(
                "SELECT status || ':' || coalesce(hold_code, '') FROM payouts_payouts "
                "WHERE deal_id = $1",
                deal,
            )
            return status in ("held:fx_suspect", "sent:", "settled:")

        await eventually(held_or_sent, what="the payout held for the suspect snapshot (or sent)")
        await asyncio.sleep(1.5)  # the dispatcher would have sent it by now
        # Held, maybe first for its account (topics are not ordered among themselves); the
        # latest hold announced is the suspect rate's.
        seen = watcher.of({deal})
        assert {e.type for e in seen} <= {"payout.held"}
        assert [e.data.hold_code for e in seen][-1:] in ([], ["fx_suspect"])
        assert sandbox_transfers(setup) == {}

        await produce_events(bootstrap, [fx({"EUR": "0.9301", "JPY": "150.9"}, as_of=now)])
        await watcher.wait_for(
            lambda: "payout.sent" in types_of(watcher.of({deal})), what="payout sent"
        )
        await asyncio.sleep(1.0)  # time for a duplicate to show up, if one were coming
        [sent] = [e.data for e in watcher.of({deal}) if e.type == "payout.sent"]
        assert sent.net == Money.of("397.62", "EUR")  # 427.50 x 0.9301 = 397.617750
        assert sent.fx_rate == Decimal("0.9301") and sent.fx_as_of == now
        assert list(sandbox_transfers(setup)) == [sent.payout_id]

    # The future-dated snapshot was refused at the door; the two others are kept as suspect.
    letters = await read_dead_letters(bootstrap, [dlq_topic(Topic.FX_RATES)], service="payouts")
    assert [(d.error_class, d.reason[:22]) for d in letters] == [
        ("FutureDated", "data.as_of: 9999-01-01")
    ]
    rows = await db_pool.fetch("SELECT suspect_reason FROM fx_snapshots ORDER BY as_of")
    assert [r["suspect_reason"] is not None for r in rows] == [False, True, True, False]


async def test_a_changed_fee_schedule_never_pays_a_fee_twice(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    bootstrap = infra.kafka_bootstrap_servers
    group = f"payouts-schedule-{uuid.uuid4().hex[:8]}"
    fee = Money.of("100.00", "USD")
    deals = {uid("deal"): uid("cr") for _ in range(6)}
    before = ObservedPayouts(
        SETTINGS.model_copy(update={"fee_schedule": "on_completion"}), group_id=group
    )
    async with ServiceRuntime("payouts", before, schema=SCHEMA, urls=infra):
        events: list[CloudEvent[Any]] = []
        for deal, creator in deals.items():
            events += [account(creator, currency="USD"), *funded_deal(deal, creator, fee=fee)]
            events += [confirmed(deal, "dl-1"), confirmed(deal, "dl-2")]
        await produce_events(bootstrap, events)

        def all_sent() -> bool:
            sent = {e.data.deal_id for e in watcher.of(set(deals)) if e.type == "payout.sent"}
            return sent == set(deals)

        await watcher.wait_for(all_sent, what="every fee sent once")

    # Redeployed with the other schedule; the brand sends its deals and confirmations again.
    after = ObservedPayouts(
        SETTINGS.model_copy(update={"fee_schedule": "per_deliverable"}), group_id=group
    )
    async with ServiceRuntime("payouts", after, schema=SCHEMA, urls=infra):
        again: list[CloudEvent[Any]] = []
        for deal, creator in deals.items():
            again += [deal_signed(deal, creator, fee=fee)]
            again += [confirmed(deal, "dl-1"), confirmed(deal, "dl-2")]
        await produce_events(bootstrap, again)

        async def all_applied() -> bool:
            done = await db_pool.fetchval(
                "SELECT count(*) FROM processed_events "
                "WHERE consumer = 'payouts' AND event_id = ANY($1::text[])",
                [e.id for e in again],
            )
            return bool(done == len(again))

        await eventually(all_applied, what="the re-sent events applied")
        await asyncio.sleep(1.5)  # the dispatcher would have sent a second payout by now
        assert sandbox_transfers(after) == {}

    rows = await db_pool.fetch(
        "SELECT deal_id, milestone, gross_amount FROM payouts_payouts WHERE deal_id = ANY($1)",
        list(deals),
    )
    assert sorted((r["deal_id"], r["milestone"], r["gross_amount"]) for r in rows) == sorted(
        (deal, "", Decimal("100.00")) for deal in deals
    )
    # And the database itself refuses a fee payout beyond the fee, whatever the code does.
    deal = next(iter(deals))
    with pytest.raises(asyncpg.CheckViolationError, match="above its fee"):
        await db_pool.execute(
            """INSERT INTO payouts_payouts (payout_id, deal_id, kind, milestone, creator_id,
                   brand_id, gross_amount, gross_currency, platform_fee_amount, status, version)
               VALUES ('po_extra', $1, 'fee', 'dl-1', 'cr', 'br', 25, 'USD', 0, 'held', 1)""",
            deal,
        )
