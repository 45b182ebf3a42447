"""Rails by account on the real servers: each creator is paid through the rail of their
account's method (Stripe, PayPal, Wise, each a local server following its documented API), and
a creator whose rail is not configured is held with the reason, never paid elsewhere. Retries
and fallback cannot pay twice: a rail that times out after paying is looked up, not paid
again; a final error fails the payout with the rail's reason; an error proving nothing was
executed sends the payout through the creator's fallback rail, once."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from services.payouts.app import make_setup
from services.payouts.providers.paypal import PayPalPayouts
from services.payouts.providers.rails import Rails
from services.payouts.providers.wise import WiseTransfers
from services.payouts.schema import SCHEMA
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from tests.integration.payouts.kafka_io import StatusWatcher
from tests.integration.payouts.paypal_server import FakePayPal
from tests.integration.payouts.rails_setup import DESTINATIONS, owed, rails_of, statuses
from tests.integration.payouts.service_setup import fast_settings, invoke
from tests.integration.payouts.stripe_server import FakeStripe
from tests.integration.payouts.wise_server import FakeWise

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = fast_settings()


async def test_each_creator_is_paid_through_the_rail_of_their_method(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, cli_env: None, db_pool: asyncpg.Pool
) -> None:
    async with FakeStripe() as stripe, FakePayPal() as paypal, FakeWise() as wise:
        rails = rails_of(stripe=stripe, paypal=paypal, wise=wise)
        setup = make_setup(SETTINGS, rails, group_id=f"payouts-rails-{uuid.uuid4().hex[:8]}")
        async with ServiceRuntime("payouts", setup, schema=SCHEMA, urls=infra):
            deals = {m: await owed(infra, db_pool, m, d) for m, d in DESTINATIONS.items()}
            for method, (deal, _) in deals.items():
                await watcher.wait_for(
                    lambda deal=deal: "payout.settled" in statuses(watcher, deal),  # type: ignore[misc]
                    seconds=60,
                    what=f"paid through {method}",
                )
            await asyncio.sleep(1.0)  # time for a second transfer to show up, if one were coming
        ids = {m: watcher.of({d})[0].data.payout_id for m, (d, _) in deals.items()}
        [transfer] = stripe.transfers.values()
        assert transfer["metadata"]["payout_id"] == ids["stripe"]
        assert paypal.paid == [(ids["paypal"], "450.00", "USD")]
        assert len(wise.funded) == 1 and len(wise.transfers) == 1
        shown = await asyncio.to_thread(invoke, "statement", deals["wise"][1])
        assert shown.exit_code == 0, shown.output
        assert "settled" in shown.output and "wise" in shown.output


async def test_a_creator_whose_rail_is_not_configured_is_held_not_paid_elsewhere(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, cli_env: None, db_pool: asyncpg.Pool
) -> None:
    async with FakeStripe() as stripe:
        rails = rails_of(stripe=stripe)
        setup = make_setup(SETTINGS, rails, group_id=f"payouts-rails-{uuid.uuid4().hex[:8]}")
        async with ServiceRuntime("payouts", setup, schema=SCHEMA, urls=infra):
            deal, creator = await owed(infra, db_pool, "paypal", DESTINATIONS["paypal"])
            await watcher.wait_for(
                lambda: "payout.held" in statuses(watcher, deal), seconds=60, what="held"
            )
            await asyncio.sleep(1.0)
        assert stripe.requests == []  # nothing went to the one rail configured
        [held] = [e.data for e in watcher.of({deal}) if e.type == "payout.held"]
        assert "paypal rail is not configured" in (held.reason or "")
        shown = await asyncio.to_thread(invoke, "statement", creator)
        assert shown.exit_code == 0, shown.output
        assert "held: rail_unavailable" in shown.output
        assert "paypal rail is not configured" in shown.output
        # Configured and restarted: the payout goes to PayPal, once.
        async with FakePayPal() as paypal:
            rails = rails_of(stripe=stripe, paypal=paypal)
            again = make_setup(SETTINGS, rails, group_id=f"payouts-rails-{uuid.uuid4().hex[:8]}")
            async with ServiceRuntime("payouts", again, schema=SCHEMA, urls=infra):
                await watcher.wait_for(
                    lambda: "payout.settled" in statuses(watcher, deal),
                    seconds=60,
                    what="paid through paypal once configured",
                )
        assert paypal.paid == [(held.payout_id, "450.00", "USD")] and stripe.requests == []


async def test_a_rail_that_times_out_after_paying_is_looked_up_and_pays_once(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    async with FakeWise() as wise, FakePayPal() as paypal:
        wise.stalls["fund"] = 2.0  # funded, but the answer comes after the client gave up
        rails = Rails(
            {
                "wise": WiseTransfers(
                    wise.api_token, wise.profile_id, base_url=wise.base_url, timeout_seconds=0.5
                ),
                "paypal": PayPalPayouts(
                    paypal.client_id, paypal.client_secret, base_url=paypal.base_url
                ),
            }
        )
        setup = make_setup(SETTINGS, rails, group_id=f"payouts-rails-{uuid.uuid4().hex[:8]}")
        async with ServiceRuntime("payouts", setup, schema=SCHEMA, urls=infra):
            deal, _ = await owed(
                infra, db_pool, "wise", DESTINATIONS["wise"], fallback=("paypal", "b@example.com")
            )
            await watcher.wait_for(
                lambda: "payout.settled" in statuses(watcher, deal),
                seconds=60,
                what="paid after the lost answer",
            )
            await asyncio.sleep(1.0)
        assert len(wise.funded) == 1 and len(wise.transfers) == 1  # funded once
        funding = [r for r in wise.requests if r.path.endswith("/payments")]
        assert len(funding) == 1  # looked up, never funded again
        assert paypal.paid == []  # a timeout proves nothing: no fallback
        [sent] = [e.data for e in watcher.of({deal}) if e.type == "payout.sent"]
        assert sent.provider_ref == str(wise.funded[0])
        rail = await db_pool.fetchval(
            "SELECT rail FROM payouts_payouts WHERE payout_id = $1", sent.payout_id
        )
        assert rail == "wise"


async def test_a_final_error_fails_the_payout_with_the_rails_reason(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    async with FakePayPal() as paypal:
        client = PayPalPayouts(paypal.client_id, paypal.client_secret, base_url=paypal.base_url)
        setup = make_setup(
            SETTINGS,
            Rails({"paypal": client}),
            group_id=f"payouts-rails-{uuid.uuid4().hex[:8]}",
        )
        async with ServiceRuntime("payouts", setup, schema=SCHEMA, urls=infra):
            await client._bearer()
            paypal.fail_next(422, "USER_BUSINESS_ERROR")
            deal, _ = await owed(infra, db_pool, "paypal", DESTINATIONS["paypal"])
            await watcher.wait_for(
                lambda: "payout.failed" in statuses(watcher, deal), seconds=60, what="failed"
            )
        [failed] = [e.data for e in watcher.of({deal}) if e.type == "payout.failed"]
        assert failed.reason == "paypal: 422 USER_BUSINESS_ERROR"
        assert paypal.paid == []


async def test_a_refusal_that_moved_nothing_pays_once_through_the_fallback_rail(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, cli_env: None, db_pool: asyncpg.Pool
) -> None:
    async with FakeStripe() as stripe, FakePayPal() as paypal:
        rails = rails_of(stripe=stripe, paypal=paypal)
        setup = make_setup(SETTINGS, rails, group_id=f"payouts-rails-{uuid.uuid4().hex[:8]}")
        async with ServiceRuntime("payouts", setup, schema=SCHEMA, urls=infra):
            # Stripe does not know this connected account: 400 resource_missing, nothing paid.
            deal, creator = await owed(
                infra,
                db_pool,
                "stripe",
                "acct_1ClosedCreator",
                fallback=("paypal", DESTINATIONS["paypal"]),
            )
            await watcher.wait_for(
                lambda: "payout.settled" in statuses(watcher, deal),
                seconds=60,
                what="paid through the fallback rail",
            )
            await asyncio.sleep(1.0)
        [sent] = [e.data for e in watcher.of({deal}) if e.type == "payout.sent"]
        assert stripe.transfers == {}
        assert paypal.paid == [(sent.payout_id, "450.00", "USD")]
        assert statuses(watcher, deal) == ["payout.scheduled", "payout.sent", "payout.settled"]
        shown = await asyncio.to_thread(invoke, "statement", creator)
        assert shown.exit_code == 0, shown.output
        assert "paypal" in shown.output
