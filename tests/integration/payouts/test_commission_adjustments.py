"""Commission follows attribution on PostgreSQL: a late order tops the commission up, a late
refund claws it back (recovered from the creator's next payout), and once the adjustment
period is over the commission is final. Before, the first decision was never revised."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from services.payouts.app import units_of_work
from services.payouts.dispatcher import Dispatcher
from services.payouts.handlers import PayoutPolicy
from services.payouts.providers.sandbox import SandboxProvider
from services.payouts.reports import check_ledger, statement
from services.payouts.schedules import CommissionSchedule
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.contract.money import Money
from tests.unit.payouts.builders import (
    DESTINATIONS,
    T0,
    account,
    attribution,
    confirmed,
    funded_deal,
    uid,
)
from tests.unit.payouts.harness import delivery

pytestmark = pytest.mark.integration


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def test_late_orders_and_refunds_adjust_the_commission_until_it_is_final(
    db_pool: asyncpg.Pool,
) -> None:
    db = PostgresPayoutsStore(db_pool)
    clock = Clock()
    policy = PayoutPolicy(platform_fee_bps=1000, commission_grace=timedelta(hours=1))
    consume = units_of_work(db, policy, lambda: None, destinations=DESTINATIONS, clock=clock)
    commissions = CommissionSchedule(db, policy, interval_seconds=1, clock=clock)
    provider = SandboxProvider()
    dispatcher = Dispatcher(db, provider, policy, destinations=DESTINATIONS, clock=clock)
    deal, creator = uid("deal"), uid("cr")
    closes = T0 + timedelta(days=10)

    async def send(*events: Any) -> None:
        await consume([(e, delivery(e)) for e in events])

    async def commission_payouts() -> list[tuple[str, Decimal, Decimal]]:
        rows = await db_pool.fetch(
            """SELECT kind, gross_amount, platform_fee_amount FROM payouts_payouts
               WHERE deal_id = $1 AND kind <> 'fee' ORDER BY created_at, payout_id""",
            deal,
        )
        return [(r["kind"], r["gross_amount"], r["platform_fee_amount"]) for r in rows]

    usd = account(creator, currency="USD")
    await send(
        usd,
        *funded_deal(deal, creator, ends_at=T0, window_days=10, funds=Money.of("1000.00", "USD")),
    )
    await send(attribution(deal, creator, Money.of("1000.00", "USD"), closes - timedelta(days=1)))
    clock.now = closes + timedelta(hours=1)
    await commissions.run_once()
    assert await commission_payouts() == [("commission", Decimal("100.00"), Decimal("10.00"))]

    # An order inside the window arrives a day after the commission was paid.
    clock.now = closes + timedelta(days=1)
    await send(attribution(deal, creator, Money.of("1250.00", "USD"), closes - timedelta(hours=2)))
    await commissions.run_once()
    assert await commission_payouts() == [
        ("commission", Decimal("100.00"), Decimal("10.00")),
        ("commission", Decimal("25.00"), Decimal("2.50")),
    ]
    await dispatcher.dispatch_once()

    # A refund larger than the late order: 30.00 of commission is clawed back (3.00 of it the
    # platform's cut, returned to the brand with the creator's 27.00).
    clock.now = closes + timedelta(days=2)
    await send(attribution(deal, creator, Money.of("950.00", "USD"), closes + timedelta(days=2)))
    await commissions.run_once()
    assert (await commission_payouts())[2:] == [("clawback", Decimal("30.00"), Decimal("3.00"))]
    await commissions.run_once()
    assert len(await commission_payouts()) == 3  # decided once per attribution change

    # The creator's next payout (another deal's fee) first repays the 27.00.
    other = uid("deal")
    await send(*funded_deal(other, creator, fee=Money.of("100.00", "USD")))
    await send(confirmed(other, "dl-1"), confirmed(other, "dl-2"))
    [fee] = await db_pool.fetch(
        "SELECT net_amount, recovered_amount FROM payouts_payouts WHERE deal_id = $1", other
    )
    assert (fee["net_amount"], fee["recovered_amount"]) == (Decimal("63.00"), Decimal("27.00"))

    # After the adjustment period, attribution no longer moves the commission.
    clock.now = closes + policy.commission_adjustable + timedelta(seconds=1)
    await send(attribution(deal, creator, Money.of("5000.00", "USD"), clock.now))
    await commissions.run_once()
    assert len(await commission_payouts()) == 3

    shown = await statement(db, creator)
    assert [(p.kind, p.milestone) for p in shown.payouts if p.deal_id == deal] == [
        ("commission", ""),
        ("commission", "adjustment-1"),
        ("clawback", "adjustment-2"),
    ]
    assert (await check_ledger(db)).problems == []
