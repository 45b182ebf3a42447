"""Deal amendments and cancellations, end to end (production profile, real servers).

A brand amends a deal's fee before its deliverables are confirmed: the creator is paid the
fee in force, once. It cancels another deal: a confirmation dated after the cancellation is
dead-lettered with the cancellation named, and pays nothing. An amendment signed by another
brand, and one changing the fee's currency, are dead-lettered with the field named.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.payouts.app import make_setup
from services.payouts.schema import SCHEMA
from shared.contract.events import Topic, dlq_topic
from shared.contract.events.codec import sign_event
from shared.contract.money import Money
from shared.contract.signing import Party
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from shared.tools.infra.smoke import read_dead_letters
from shared.tools.signing import PartyKeys
from tests.integration.payouts.kafka_io import StatusWatcher
from tests.integration.payouts.test_signed_events import PRODUCTION, SETTINGS
from tests.support.kafka_io import produce_events
from tests.unit.payouts.builders import (
    account,
    confirmed,
    deal_amended,
    deal_cancelled,
    deal_signed,
    funded,
    fx,
    uid,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_amended_fee_is_paid_once_and_a_cancelled_deal_refuses_late_work(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    bootstrap = infra.kafka_bootstrap_servers
    keys = PartyKeys()
    rival = keys.key(Party.BRAND, "br-2")
    creator, amended, cancelled = uid("cr"), uid("deal"), uid("deal")
    signed = deal_signed(amended, creator, brand_id="br-1")
    # A cancellation ends its deal no earlier than its arrival (less the clock skew): the
    # cancelled deal runs around now, and the work refused comes after the cancellation.
    now = datetime.now(UTC)
    other = deal_signed(cancelled, creator, brand_id="br-1", ends_at=now + timedelta(days=20))
    by_rival = sign_event(deal_amended(signed, 3, brand_id="br-2", fee=Money.of("1", "USD")), rival)
    in_euros = keys.sign(deal_amended(signed, 4, fee=Money.of("300.00", "EUR")))
    too_late = keys.sign(confirmed(cancelled, "dl-1", at=now + timedelta(hours=1)), owner="br-1")
    first = [
        keys.sign(account(creator, currency="USD", form="W-9")),
        keys.sign(funded("br-1", Money.of("900.00", "USD"))),
        keys.sign(signed),
        keys.sign(deal_amended(signed, 2, fee=Money.of("300.00", "USD"))),
        by_rival,
        in_euros,
        keys.sign(other),
        keys.sign(deal_cancelled(cancelled, at=now)),
    ]
    work = [keys.sign(confirmed(amended, d), owner="br-1") for d in ("dl-1", "dl-2")]
    # Registered once every key above exists.
    setup = make_setup(SETTINGS, group_id=f"payouts-changes-{uuid.uuid4().hex[:8]}")
    await produce_events(bootstrap, [*keys.registrations(), fx({"EUR": "0.92"})])
    async with ServiceRuntime("payouts", setup, schema=SCHEMA, settings=PRODUCTION, urls=infra):
        await produce_events(bootstrap, first)

        async def state() -> tuple[int, object]:
            row = await db_pool.fetchrow(
                "SELECT version, cancelled_at FROM payouts_deals WHERE deal_id = $1", amended
            )
            ended = await db_pool.fetchval(
                "SELECT cancelled_at FROM payouts_deals WHERE deal_id = $1", cancelled
            )
            return (0 if row is None else row["version"], ended)

        for _ in range(100):
            if await state() == (2, now):
                break
            await asyncio.sleep(0.1)
        assert await state() == (2, now)
        await produce_events(bootstrap, [*work, too_late])
        await watcher.wait_for(
            lambda: "payout.sent" in [e.type for e in watcher.of({amended})],
            what="the creator paid the amended fee",
        )
        await asyncio.sleep(1.0)  # time for anything refused to show up as applied

    fees = await db_pool.fetch(
        "SELECT deal_id, gross_amount FROM payouts_payouts WHERE deal_id = ANY($1::text[])",
        [amended, cancelled],
    )
    assert [(r["deal_id"], str(r["gross_amount"])) for r in fees] == [(amended, "300.00")]
    letters = {
        json.loads(letter.value)["id"]: letter
        for letter in await read_dead_letters(
            bootstrap,
            [dlq_topic(Topic.CAMPAIGN_DEALS), dlq_topic(Topic.DELIVERABLES_CONFIRMED)],
            service="payouts",
        )
    }
    assert letters[by_rival.id].error_class == "Untrusted"
    assert letters[by_rival.id].reason.startswith("not_the_deal_owner: data.brand_id")
    assert letters[in_euros.id].reason.startswith("data.fee.currency: 'EUR' differs")
    assert letters[too_late.id].reason.startswith("data.confirmed_at")
    assert "cancelled" in letters[too_late.id].reason
