"""`creatorflow payouts statement` and `ledger-check` against the test database."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from pydantic import SecretStr

from services.payouts import translate
from services.payouts.destinations import DestinationCipher, new_key
from services.payouts.domain import lifecycle
from services.payouts.schema import SCHEMA
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.contract.events import PayoutAccountUpserted, TaxForm
from shared.contract.money import FxSnapshot, Money
from shared.runtime.db import create_pool, migrate
from shared.tools.infra import InfraUrls
from tests.integration.payouts.service_setup import invoke
from tests.unit.payouts.builders import uid
from tests.unit.payouts.store_contract import (
    LONG_AGO,
    acct,
    add_payout,
    commission_payout,
    fund_draws,
    new_payout,
    terms,
)

pytestmark = pytest.mark.integration

SNAPSHOT = FxSnapshot("USD", {"EUR": Decimal("0.9")}, LONG_AGO, "t")


@pytest.fixture
def cli_env(infra: InfraUrls, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", infra.database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", infra.kafka_bootstrap_servers)
    monkeypatch.setenv("REDIS_URL", infra.redis_url)


async def _store(db: PostgresPayoutsStore, *transitions: lifecycle.Transition) -> None:
    async with db.transaction() as repo:
        for t in transitions:
            if not await add_payout(repo, t.payout):
                await repo.save_payouts([(t.payout, "scheduled")])
            await fund_draws(repo, t.transfers)
            await repo.post(t.transfers)


async def test_statement_and_ledger_check(cli_env: None, db_pool: asyncpg.Pool) -> None:
    creator = uid("cr")
    created = new_payout(uid("deal"), creator, acct(creator))
    sent = lifecycle.mark_sent(created.payout, "tr_cli_1")
    held = new_payout(uid("deal"), creator, None)
    bounced = new_payout(uid("deal"), creator, acct(creator))
    bounced_sent = lifecycle.mark_sent(bounced.payout, "tr_cli_2")
    bounced_back = lifecycle.returned(bounced_sent.payout, "stripe: account closed")
    db = PostgresPayoutsStore(db_pool)
    await _store(db, created, sent, held, bounced, bounced_sent)
    async with db.transaction() as repo:
        await repo.save_payouts([(bounced_back.payout, "sent")])
        await repo.post(bounced_back.transfers)

    shown = await asyncio.to_thread(invoke, "statement", creator)
    assert shown.exit_code == 0, shown.output
    assert "tr_cli_1" in shown.output and "no payout account on file" in shown.output
    # A failed payout shows its transfer and why it failed.
    assert "tr_cli_2; stripe: account closed" in shown.output
    assert "in transit" in shown.output and "89.10 EUR" in shown.output
    assert "owed" in shown.output and "99.00 USD" in shown.output  # the held share, unconverted
    # The rate that converted the net, with its source and its snapshot's time.
    assert "0.9 t 2001-01-01 00:00" in shown.output

    checked = await asyncio.to_thread(invoke, "ledger-check")
    assert checked.exit_code == 0, checked.output
    assert "ok" in checked.output


async def test_statements_of_unknown_ids_fail_and_of_known_ones_without_payouts_do_not(
    cli_env: None, db_pool: asyncpg.Pool
) -> None:
    creator, brand = uid("cr"), uid("br")
    asked = {"statement": ("creator", creator), "brand-statement": ("brand", brand)}
    for command, (who, named) in asked.items():
        unknown = await asyncio.to_thread(invoke, command, named)
        assert unknown.exit_code == 1, unknown.output
        assert f"payouts knows no {who} '{named}'" in unknown.output

    async with PostgresPayoutsStore(db_pool).transaction() as repo:
        await repo.save_account(acct(creator))
        await repo.add_deal(terms(uid("deal"), creator, brand_id=brand), uid("ev"))
    empty = {
        "statement": f"No payouts for creator {creator} yet.",
        "brand-statement": f"No fundings or payouts for brand {brand} yet.",
    }
    for command, (_, named) in asked.items():
        known = await asyncio.to_thread(invoke, command, named)
        assert known.exit_code == 0, known.output
        assert empty[command] in known.output


async def test_ledger_check_fails_on_a_payout_without_its_postings(
    cli_env: None, db_pool: asyncpg.Pool
) -> None:
    creator = uid("cr")
    orphan = new_payout(uid("deal"), creator, acct(creator)).payout
    await _insert_without_postings(db_pool, orphan)
    try:
        checked = await asyncio.to_thread(invoke, "ledger-check")
    finally:
        await db_pool.execute("DELETE FROM payouts_payouts WHERE payout_id = $1", orphan.payout_id)
    assert checked.exit_code == 1
    assert orphan.payout_id in checked.output and "its status implies" in checked.output


async def _insert_without_postings(pool: asyncpg.Pool, payout: lifecycle.Payout) -> None:
    async with PostgresPayoutsStore(pool).transaction() as repo:
        await add_payout(repo, payout)


async def test_statement_shows_commission_adjustments_clawbacks_and_repayments(
    cli_env: None, db_pool: asyncpg.Pool
) -> None:
    creator, deal = uid("cr"), uid("deal")
    deal_terms = terms(deal, creator)
    first = commission_payout(
        deal_terms, Money.of("100.00", "USD"), platform_fee_bps=1000, account=acct(creator, "USD")
    )
    taken = lifecycle.clawback(
        deal_terms, "adjustment-1", Money.of("30.00", "USD"), Money.of("3.00", "USD")
    )
    repaying = new_payout(uid("deal"), creator, None)
    released = lifecycle.release(
        repaying.payout, acct(creator), SNAPSHOT, LONG_AGO, Money.of("20.00", "USD")
    )
    db = PostgresPayoutsStore(db_pool)
    async with db.transaction() as repo:
        await repo.add_deal(deal_terms, "e")
        for t in (first, taken):
            await repo.add_payout(t.payout)
            await fund_draws(repo, t.transfers)
            await repo.post(t.transfers)
        await add_payout(repo, repaying.payout)
        await fund_draws(repo, repaying.transfers)
        await repo.post(repaying.transfers)
        await repo.save_payouts([(released.payout, "held")])
        await repo.post(released.transfers)

    shown = await asyncio.to_thread(invoke, "statement", creator)
    assert shown.exit_code == 0, shown.output
    assert "clawback (adjustment-1)" in shown.output and "clawed back" in shown.output
    assert "-30.00 USD" in shown.output and "-3.00 USD" in shown.output
    assert "20.00 USD" in shown.output and "71.10 EUR" in shown.output  # (99.00 - 20.00) x 0.9
    # 27.00 owed from the clawback, 20.00 of it repaid by the released payout.
    assert "to repay (clawbacks)" in shown.output and "7.00 USD" in shown.output
    checked = await asyncio.to_thread(invoke, "ledger-check")
    assert checked.exit_code == 0, checked.output


async def test_tax_report_lists_us_creators_for_1099_and_foreign_ones_apart(
    cli_env: None, db_pool: asyncpg.Pool
) -> None:
    us, us_low, foreign = uid("cr-us"), uid("cr-low"), uid("cr-w8")
    db = PostgresPayoutsStore(db_pool)
    async with db.transaction() as repo:
        for creator, form, amount in ((us, "W-9", "650.00"), (us_low, "W-9", "100.00")):
            await repo.save_account(replace(acct(creator, "USD"), tax_form_type=form))
            created = new_payout(uid("deal"), creator, acct(creator, "USD"), amount=amount)
            await add_payout(repo, created.payout)
            sent = lifecycle.mark_sent(created.payout, "tr_tax")
            settled = lifecycle.settle(sent.payout)
            await repo.save_payouts([(settled.payout, "scheduled")])
            await repo.post([*created.transfers, *sent.transfers, *settled.transfers])
        await repo.save_account(replace(acct(foreign, "EUR"), tax_form_type="W-8BEN"))
        created = new_payout(uid("deal"), foreign, acct(foreign, "EUR"), amount="1000.00")
        await add_payout(repo, created.payout)
        sent = lifecycle.mark_sent(created.payout, "tr_tax_eur")
        settled = lifecycle.settle(sent.payout)
        await repo.save_payouts([(settled.payout, "scheduled")])
        await repo.post([*created.transfers, *sent.transfers, *settled.transfers])
    year = str(datetime.now(UTC).year)

    shown = await asyncio.to_thread(invoke, "tax-report", "--year", year)
    assert shown.exit_code == 0, shown.output
    reportable, foreign_part = shown.output.split("W-8BEN / W-8BEN-E", 1)
    # 650.00 less the 1 % platform fee: 643.50 USD; the creator paid 99.00 is below 600.
    assert us in reportable and "643.50" in reportable and us_low not in reportable
    assert us_low in foreign_part and "99.00" in foreign_part  # listed last, with its total
    # 1000.00 USD less 1 %, paid as 891.00 EUR: worth its 990.00 USD share.
    assert foreign in foreign_part and "990.00" in foreign_part
    lower = await asyncio.to_thread(invoke, "tax-report", "--year", year, "--threshold", "99")
    assert lower.exit_code == 0 and us_low in lower.output.split("W-8BEN / W-8BEN-E")[0]
    earlier = await asyncio.to_thread(invoke, "tax-report", "--year", str(int(year) - 1))
    assert earlier.exit_code == 0 and us not in earlier.output
    wrong = await asyncio.to_thread(invoke, "tax-report", "--year", year, "--threshold", "lots")
    assert wrong.exit_code == 1 and "no amount of USD" in wrong.output


@pytest.fixture
async def own_database(
    infra: InfraUrls, db_pool: asyncpg.Pool, cli_env: None, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[asyncpg.Pool]:
    """A database of this test's own, which the commands use: `rotate-key` covers every
    stored destination, and the module's other tests store theirs under other keys."""
    name = f"rotation_{uuid.uuid4().hex[:12]}"
    await db_pool.execute(f'CREATE DATABASE "{name}"')
    url = urlunsplit(urlsplit(infra.database_url)._replace(path=f"/{name}"))
    monkeypatch.setenv("DATABASE_URL", url)
    pool = await create_pool(url, schema=SCHEMA.name, min_size=1, max_size=2)
    await migrate(pool, SCHEMA)
    yield pool
    await pool.close()
    await db_pool.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_rotate_key_reseals_every_destination_and_reports_progress(
    own_database: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = new_key(), new_key()
    before = DestinationCipher.from_setting(SecretStr(old))
    db = PostgresPayoutsStore(own_database)
    creators = [uid("cr") for _ in range(5)]
    for creator in creators:
        data = PayoutAccountUpserted(
            creator_id=creator, method="stripe", destination=SecretStr(f"acct_{creator}"),
            currency="USD", tax_form=TaxForm(type="W-9", status="verified"),
        )  # fmt: skip
        async with db.transaction() as repo:
            await repo.save_account(
                translate.payout_account(data, datetime.now(UTC), seal=before.seal)
            )
    monkeypatch.setenv("PAYOUTS_DESTINATION_KEY", new)
    monkeypatch.delenv("PAYOUTS_DESTINATION_KEY_PREVIOUS", raising=False)
    refused = await asyncio.to_thread(invoke, "rotate-key")
    assert refused.exit_code == 1 and "PAYOUTS_DESTINATION_KEY_PREVIOUS" in refused.output
    assert old not in refused.output and new not in refused.output
    monkeypatch.setenv("PAYOUTS_DESTINATION_KEY_PREVIOUS", old)
    done = await asyncio.to_thread(invoke, "rotate-key", "--batch", "2")
    assert done.exit_code == 0, done.output
    assert "re-encrypted 2, 3 left" in done.output and "re-encrypted 5, 0 left" in done.output
    assert "PAYOUTS_DESTINATION_KEY_PREVIOUS can be removed" in done.output
    after = DestinationCipher.from_setting(SecretStr(new))
    async with db.transaction() as repo:
        stored = await repo.accounts(creators)
    for creator in creators:
        assert after.open(creator, stored[creator].destination).get_secret_value() == (
            f"acct_{creator}"
        )


async def test_a_statement_with_nothing_posted_says_so_rather_than_show_an_empty_table(
    cli_env: None, db_pool: asyncpg.Pool
) -> None:
    creator = uid("cr")
    waiting = new_payout(uid("deal"), creator, acct(creator), amount="75.00", funded=False)
    assert waiting.payout.hold is not None and not waiting.transfers
    await _store(PostgresPayoutsStore(db_pool), waiting)

    shown = await asyncio.to_thread(invoke, "statement", creator)
    assert shown.exit_code == 0, shown.output
    assert "awaiting_funds" in shown.output
    assert "Balances (from ledger postings): none yet" in shown.output
