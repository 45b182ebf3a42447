"""The FX rate of a fee is the one in force when its work was confirmed, on the real servers;
a rate too old at that moment holds the payout until a fresh one is published.

The two tests quote different currencies (EUR, JPY), so neither's snapshots can serve the
other's payout whatever order they run in (the snapshots table is shared by the module).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest

from services.payouts.schema import SCHEMA
from shared.contract.money import Money
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from tests.integration.payouts.kafka_io import StatusWatcher, applied_first
from tests.integration.payouts.rails_setup import statuses
from tests.integration.payouts.service_setup import fast_settings, sandbox_transfers
from tests.support.kafka_io import produce_events
from tests.support.payouts_setup import ObservedPayouts
from tests.support.waiting import eventually
from tests.unit.payouts.builders import account, confirmed, funded_deal, fx, uid

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = fast_settings()


async def test_a_fee_paid_after_its_account_arrives_keeps_the_rate_of_its_confirmation(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    bootstrap = infra.kafka_bootstrap_servers
    setup = ObservedPayouts(SETTINGS, group_id=f"payouts-lock-{uuid.uuid4().hex[:8]}")
    deal, creator = uid("deal"), uid("cr")
    confirmed_at = now - timedelta(hours=1)
    async with ServiceRuntime("payouts", setup, schema=SCHEMA, urls=infra):
        await produce_events(bootstrap, [fx({"EUR": "0.9000"}, as_of=now - timedelta(hours=2))])
        # The brand's funds first, so that the payout is held for its account alone.
        funding, signed = funded_deal(deal, creator)
        await applied_first(bootstrap, db_pool, funding)
        await produce_events(
            bootstrap,
            [
                signed,
                confirmed(deal, "dl-1", at=confirmed_at),
                confirmed(deal, "dl-2", at=confirmed_at),
            ],
        )
        await watcher.wait_for(
            lambda: statuses(watcher, deal) == ["payout.held"],
            seconds=60,
            what="held without an account",
        )
        # The rate moves while the payout waits for the creator's account.
        moved = fx({"EUR": "0.9500"}, as_of=now - timedelta(minutes=30))
        await produce_events(bootstrap, [moved])

        async def moved_applied() -> bool:
            return bool(
                await db_pool.fetchval(
                    "SELECT count(*) FROM processed_events WHERE event_id = $1", moved.id
                )
            )

        await eventually(moved_applied, what="the moved rate stored")
        await produce_events(bootstrap, [account(creator, currency="EUR", time=now)])
        await watcher.wait_for(
            lambda: "payout.sent" in statuses(watcher, deal), seconds=60, what="payout sent"
        )
        [sent] = [e.data for e in watcher.of({deal}) if e.type == "payout.sent"]
        assert sent.net == Money.of("405.00", "EUR")  # 450.00 x 0.9000, not x 0.9500
        assert sent.fx_rate == Decimal("0.9000")
        assert sent.fx_as_of == now - timedelta(hours=2)
        assert list(sandbox_transfers(setup)) == [sent.payout_id]
    fx_at = await db_pool.fetchval("SELECT fx_at FROM payouts_payouts WHERE deal_id = $1", deal)
    assert fx_at == confirmed_at


async def test_a_stale_rate_holds_the_payout_until_a_fresh_one_is_published(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    # Days before the other test's snapshots, so they are never the first fresh one here.
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(days=5)
    bootstrap = infra.kafka_bootstrap_servers
    setup = ObservedPayouts(SETTINGS, group_id=f"payouts-stale-{uuid.uuid4().hex[:8]}")
    deal, creator = uid("deal"), uid("cr")
    async with ServiceRuntime("payouts", setup, schema=SCHEMA, urls=infra):
        stale = fx({"JPY": "150.00"}, as_of=now - timedelta(hours=30))
        funding, signed = funded_deal(deal, creator)
        # The account and the brand's funds first, so that the payout is held for the rate alone.
        await applied_first(
            bootstrap, db_pool, stale, account(creator, currency="JPY", time=now), funding
        )
        await produce_events(
            bootstrap,
            [
                signed,
                confirmed(deal, "dl-1", at=now - timedelta(hours=1)),
                confirmed(deal, "dl-2", at=now - timedelta(hours=1)),
            ],
        )
        await watcher.wait_for(
            lambda: statuses(watcher, deal) == ["payout.held"],
            seconds=60,
            what="held for a stale rate",
        )
        [held] = [e.data for e in watcher.of({deal})]
        assert held.reason is not None and held.reason.startswith("stale_fx")
        assert held.net is None and held.fx_rate is None
        code = await db_pool.fetchval(
            "SELECT hold_code FROM payouts_payouts WHERE deal_id = $1", deal
        )
        assert code == "stale_fx"
        await produce_events(bootstrap, [fx({"JPY": "151.00"}, as_of=now - timedelta(minutes=10))])
        await watcher.wait_for(
            lambda: "payout.sent" in statuses(watcher, deal), seconds=60, what="released and sent"
        )
        [sent] = [e.data for e in watcher.of({deal}) if e.type == "payout.sent"]
        assert sent.net == Money.of("67950", "JPY")  # 450.00 x 151.00
        assert list(sandbox_transfers(setup)) == [sent.payout_id]
    # Settled may follow: the sandbox settles at once.
    assert statuses(watcher, deal)[:3] == ["payout.held", "payout.scheduled", "payout.sent"]
