"""A failed payout is owed, not lost, on the real servers and a Stripe-like rail: retried when
the creator's account changes and by `creatorflow payouts retry`, paid once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
import pytest

from services.payouts.providers.stripe import StripeTransfers
from services.payouts.schema import SCHEMA
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from tests.integration.payouts.kafka_io import StatusWatcher
from tests.integration.payouts.rails_setup import owed, statuses
from tests.integration.payouts.service_setup import fast_settings, invoke
from tests.integration.payouts.stripe_server import FakeStripe
from tests.support.kafka_io import produce_events
from tests.support.payouts_setup import ObservedPayouts
from tests.unit.payouts.builders import account

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OPEN = "acct_1LocalCreator"  # a connected account the rail knows
CLOSED = "acct_1ClosedCreator"  # one it refuses: 400 resource_missing, a final error

SETTINGS = fast_settings(
    # The first payout of each test goes to a destination set before it was owed; the retry
    # after a change is shown without waiting a day (the cool-off has tests of its own).
    destination_cooloff_seconds=0,
)


@dataclass(frozen=True)
class OnTheRail:
    """The real servers and the Stripe-like rail a payouts service is started on."""

    infra: InfraUrls
    watcher: StatusWatcher
    rail: FakeStripe
    db_pool: asyncpg.Pool

    @asynccontextmanager
    async def failed_payout(self) -> AsyncIterator[tuple[str, str, str]]:
        """The service running, with a payout the rail refused: (deal, creator, payout id)."""
        adapter = StripeTransfers(self.rail.api_key, base_url=self.rail.base_url, timeout_seconds=5)
        setup = ObservedPayouts(SETTINGS, adapter, group_id=f"payouts-retry-{uuid.uuid4().hex[:8]}")
        async with ServiceRuntime("payouts", setup, schema=SCHEMA, urls=self.infra):
            deal, creator = await owed(self.infra, self.db_pool, "stripe", CLOSED)
            await self.watcher.wait_for(
                lambda: "payout.failed" in statuses(self.watcher, deal),
                seconds=60,
                what="refused by the rail",
            )
            [failed] = [e.data for e in self.watcher.of({deal}) if e.type == "payout.failed"]
            assert "resource_missing" in (failed.reason or "")
            assert self.rail.transfers == {}
            yield deal, creator, failed.payout_id


@pytest.fixture
def on_the_rail(
    infra: InfraUrls,
    topics: None,
    watcher: StatusWatcher,
    stripe: FakeStripe,
    cli_env: None,
    db_pool: asyncpg.Pool,
) -> OnTheRail:
    return OnTheRail(infra, watcher, stripe, db_pool)


async def test_a_refused_payout_is_sent_once_after_the_account_changes(
    on_the_rail: OnTheRail, infra: InfraUrls, watcher: StatusWatcher, stripe: FakeStripe
) -> None:
    async with on_the_rail.failed_payout() as (deal, creator, payout_id):
        await produce_events(
            infra.kafka_bootstrap_servers, [account(creator, currency="USD", destination=OPEN)]
        )
        await watcher.wait_for(
            lambda: "payout.settled" in statuses(watcher, deal),
            seconds=60,
            what="paid to the new account",
        )
        await asyncio.sleep(1.0)  # time for a second transfer to show up, if one were coming
    [transfer] = stripe.transfers.values()
    assert (transfer["amount"], transfer["destination"]) == (45000, OPEN)
    keys = [r.headers.get("idempotency-key") for r in stripe.requests if r.method == "POST"]
    assert keys == [payout_id, f"{payout_id}-attempt-2"]
    assert statuses(watcher, deal) == [
        "payout.scheduled",
        "payout.failed",
        "payout.scheduled",
        "payout.sent",
        "payout.settled",
    ]
    checked = await asyncio.to_thread(invoke, "ledger-check")
    assert checked.exit_code == 0, checked.output
    shown = await asyncio.to_thread(invoke, "statement", creator)
    assert shown.exit_code == 0, shown.output
    assert "Attempts" in shown.output and "dispatch" in shown.output
    assert "settlement" in shown.output


async def test_an_operator_retries_a_failed_payout_from_the_command_line(
    on_the_rail: OnTheRail, watcher: StatusWatcher, stripe: FakeStripe, db_pool: asyncpg.Pool
) -> None:
    async with on_the_rail.failed_payout() as (deal, _, payout_id):
        unknown = await asyncio.to_thread(invoke, "retry", "po_unknown")
        assert unknown.exit_code == 1 and "no payout 'po_unknown'" in unknown.output
        # The rail opened the account on its side: the operator sends the payout again.
        stripe.accounts.add(CLOSED)
        retried = await asyncio.to_thread(invoke, "retry", payout_id)
        assert retried.exit_code == 0, retried.output
        assert "attempt 2: scheduled" in retried.output and "payouts statement" in retried.output
        await watcher.wait_for(
            lambda: "payout.sent" in statuses(watcher, deal),
            seconds=60,
            what="sent after the retry",
        )
        again = await asyncio.to_thread(invoke, "retry", payout_id)
        assert again.exit_code == 1 and "not failed" in again.output
    [transfer] = stripe.transfers.values()
    assert transfer["metadata"]["payout_id"] == f"{payout_id}-attempt-2"
    chapter = await db_pool.fetchval(
        "SELECT chapter FROM payouts_payouts WHERE payout_id = $1", payout_id
    )
    assert chapter == 2
    checked = await asyncio.to_thread(invoke, "ledger-check")
    assert checked.exit_code == 0, checked.output
