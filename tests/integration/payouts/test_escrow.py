"""A brand's escrow on the real servers: funded once per funding id, payouts held
`awaiting_funds` until it covers them and released in order of confirmation, two payouts
competing for funds that cover one, the escrow check of `payouts ledger-check` and
`payouts brand-statement`."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal

import asyncpg
import pytest

from services.payouts.app import make_setup, units_of_work
from services.payouts.destinations import DestinationCipher
from services.payouts.domain.escrow import Funding
from services.payouts.handlers import PayoutPolicy
from services.payouts.reports import check_ledger
from services.payouts.schema import SCHEMA
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.contract.errors import EventRejected
from shared.contract.events import CloudEvent
from shared.contract.money import Money
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from tests.integration.payouts.kafka_io import StatusWatcher
from tests.integration.payouts.rails_setup import statuses
from tests.integration.payouts.service_setup import fast_settings, invoke
from tests.support.kafka_io import produce_events
from tests.support.waiting import eventually
from tests.unit.payouts.builders import T0, account, confirmed, deal_signed, funded, uid
from tests.unit.payouts.harness import delivery
from tests.unit.payouts.store_contract import LONG_AGO, acct, add_payout, new_payout

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = fast_settings(platform_fee_bps=500)
FEE = Money.of("450.00", "USD")  # what each deal of builders.deal_signed pays


async def escrow(pool: asyncpg.Pool, brand: str) -> Decimal | None:
    return await pool.fetchval(
        "SELECT balance FROM payouts_brand_escrow WHERE brand_id = $1 AND currency = 'USD'",
        brand,
    )


async def applied(pool: asyncpg.Pool, event: CloudEvent[object]) -> bool:
    query = "SELECT count(*) FROM processed_events WHERE event_id = $1"
    return bool(await pool.fetchval(query, event.id))


async def test_payouts_wait_for_funds_and_are_released_in_order_of_confirmation(
    infra: InfraUrls, topics: None, watcher: StatusWatcher, db_pool: asyncpg.Pool, cli_env: None
) -> None:
    bootstrap = infra.kafka_bootstrap_servers
    brand, creator = uid("br"), uid("cr")
    first, second = uid("deal"), uid("deal")
    setup = make_setup(SETTINGS, group_id=f"payouts-escrow-{uuid.uuid4().hex[:8]}")
    async with ServiceRuntime("payouts", setup, schema=SCHEMA, urls=infra):
        usd = account(creator, currency="USD", form="W-9")
        await produce_events(bootstrap, [usd])
        await eventually(lambda: applied(db_pool, usd), what="the account stored")
        # Nothing funded yet: both fees wait, the second confirmed an hour after the first.
        await produce_events(
            bootstrap,
            [
                deal_signed(first, creator, brand_id=brand),
                deal_signed(second, creator, brand_id=brand),
                *(confirmed(first, d, at=T0) for d in ("dl-1", "dl-2")),
                *(confirmed(second, d, at=T0 + timedelta(hours=1)) for d in ("dl-1", "dl-2")),
            ],
        )
        await watcher.wait_for(
            lambda: statuses(watcher, first) == statuses(watcher, second) == ["payout.held"],
            seconds=60,
            what="both held",
        )
        [held_first] = [e.data for e in watcher.of({first})]
        [held_second] = [e.data for e in watcher.of({second})]
        assert "escrow does not cover 450.00 USD" in (held_first.reason or "")
        # The later one says the same if it came first (deals are keyed apart, so either may),
        # else that it waits behind the earlier one.
        behind = f"earlier payouts of brand {brand} wait for funds in USD"
        assert any(
            why in (held_second.reason or "")
            for why in ("escrow does not cover 450.00 USD", behind)
        )
        assert await escrow(db_pool, brand) is None  # nothing drawn, nothing funded

        # Funds for one fee: the earlier confirmed is paid, the other keeps waiting.
        once = funded(brand, FEE, funding_id=uid("fund"))
        await produce_events(bootstrap, [once])
        await watcher.wait_for(
            lambda: "payout.sent" in statuses(watcher, first), seconds=60, what="first paid"
        )
        # The same funding again, under another event id: credited once.
        again = once.model_copy(update={"id": uid("again")})
        await produce_events(bootstrap, [again])
        await eventually(lambda: applied(db_pool, again), what="the repeated funding read")
        await asyncio.sleep(1.0)  # time for a wrongly released payout to show up
        assert statuses(watcher, second) == ["payout.held"]
        assert await escrow(db_pool, brand) == Decimal("0.00")

        await produce_events(bootstrap, [funded(brand, FEE, funding_id=uid("fund"))])
        await watcher.wait_for(
            lambda: "payout.sent" in statuses(watcher, second), seconds=60, what="second paid"
        )
        assert await escrow(db_pool, brand) == Decimal("0.00")

    report = await check_ledger(PostgresPayoutsStore(db_pool))
    assert report.problems == []
    shown = await asyncio.to_thread(invoke, "brand-statement", brand)
    assert shown.exit_code == 0, shown.output
    assert once.data.funding_id in shown.output
    # Two fundings of 450.00, two payouts drew 450.00 each, nothing left.
    assert "900.00" in shown.output and shown.output.count("450.00 USD") >= 4
    [totals] = [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in shown.output.splitlines()
        if line.strip().startswith("│ USD")
    ]
    assert totals == ["USD", "900.00", "900.00", "0.00", "0.00"]  # funded, drawn, back, left


async def test_two_payouts_competing_for_funds_that_cover_one(db_pool: asyncpg.Pool) -> None:
    """Two consumers confirm two deals of one brand at the same moment; its escrow covers
    one fee: one payout draws it, the other waits, and the escrow never goes negative."""
    db = PostgresPayoutsStore(db_pool)
    cipher = DestinationCipher.from_setting(SETTINGS.destination_key)
    handlers = [
        units_of_work(db, PayoutPolicy(platform_fee_bps=500), lambda: None, destinations=cipher)
        for _ in range(2)
    ]

    async def consume(n: int, *events: CloudEvent[object]) -> None:
        await handlers[n]([(e, delivery(e)) for e in events])

    for _ in range(5):
        brand, creators, deals = uid("br"), [uid("cr"), uid("cr")], [uid("deal"), uid("deal")]
        await consume(
            0,
            funded(brand, FEE, funding_id=uid("fund")),
            *(account(c, currency="USD", form="W-9") for c in creators),
            *(deal_signed(d, c, brand_id=brand) for d, c in zip(deals, creators, strict=True)),
        )
        await asyncio.gather(
            *(
                consume(n, confirmed(deal, "dl-1"), confirmed(deal, "dl-2"))
                for n, deal in enumerate(deals)
            )
        )
        rows = await db_pool.fetch(
            "SELECT status, hold_code FROM payouts_payouts WHERE deal_id = ANY($1::text[])",
            deals,
        )
        assert sorted((r["status"], r["hold_code"]) for r in rows) == [
            ("held", "awaiting_funds"),
            ("scheduled", None),
        ]
        assert await escrow(db_pool, brand) == Decimal("0.00")
    assert (await check_ledger(db)).problems == []


async def test_a_funding_id_is_credited_once_and_never_amended(db_pool: asyncpg.Pool) -> None:
    db = PostgresPayoutsStore(db_pool)
    cipher = DestinationCipher.from_setting(SETTINGS.destination_key)
    consume = units_of_work(db, PayoutPolicy(), lambda: None, destinations=cipher)
    brand, funding_id = uid("br"), uid("fund")
    first = funded(brand, Money.of("100.00", "USD"), funding_id=funding_id)
    for event in (first, first.model_copy(update={"id": uid("dup")})):
        await consume([(event, delivery(event))])
    assert await escrow(db_pool, brand) == Decimal("100.00")
    other = funded(brand, Money.of("999.00", "USD"), funding_id=funding_id)
    with pytest.raises(EventRejected, match="already credited with other terms"):
        await consume([(other, delivery(other))])
    assert await escrow(db_pool, brand) == Decimal("100.00")


async def test_ledger_check_reports_a_negative_escrow(cli_env: None, db_pool: asyncpg.Pool) -> None:
    """A payout drawn with nothing funded (as every payout did before escrows were funded)
    makes the check fail until a funding covers it."""
    creator, brand = uid("cr"), uid("br")
    drawn = new_payout(uid("deal"), creator, acct(creator), brand_id=brand)
    db = PostgresPayoutsStore(db_pool)
    async with db.transaction() as repo:
        await add_payout(repo, drawn.payout)
        await repo.post(drawn.transfers)
    checked = await asyncio.to_thread(invoke, "ledger-check")
    assert checked.exit_code == 1
    assert f"escrow of brand {brand}: -100.00 USD, negative" in checked.output
    async with db.transaction() as repo:
        funding = Funding(uid("fund"), brand, Money.of("100.00", "USD"), LONG_AGO)
        await repo.add_funding(funding, funding.funding_id)
        await repo.post([funding.transfer()])
    checked = await asyncio.to_thread(invoke, "ledger-check")
    assert checked.exit_code == 0, checked.output
    assert "no brand's escrow is negative" in checked.output
