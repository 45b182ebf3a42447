"""Creators' statements through the page app on the real PostgreSQL and Redis: the list of
periods, a month's CSV and PDF, the yearly summary against the operators' tax report, empty
and bad periods, and one creator's session never getting another's payouts. The scene and the
browser are the creator page's (`test_creator_page.py`)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import asyncpg
import httpx
import pytest
import redis.asyncio as redis
from click.testing import Result
from typer.testing import CliRunner

from services.payouts.creator_page.web import page_app
from services.payouts.domain.tax import DEFAULT_1099_THRESHOLD
from services.payouts.reports import tax_totals
from services.payouts.statement_files import COLUMNS, YEAR_COLUMNS
from services.payouts.store.postgres import PostgresPayoutsStore
from shared.tools.cli.main import app as creatorflow
from shared.tools.infra import InfraUrls
from tests.integration.payouts.creator_scene import (
    Scene,
    Writer,
    account,
    client_for,
    new_link,
    sign_in,
)
from tests.support.pdf import pdf_text
from tests.unit.payouts.builders import uid

pytestmark = pytest.mark.integration


class StatementScene(Scene):
    """The creator page's scene, and for alice one more settled payout, of a deal whose id a
    brand made look like a spreadsheet formula."""

    def __init__(self) -> None:
        super().__init__()
        self.formula_deal = "=HYPERLINK(" + uid("x") + ")"

    async def write(self, pool: asyncpg.Pool) -> None:
        await super().write(pool)
        writer = Writer(pool)
        await writer.deal(self.formula_deal, self.alice)
        alice = account(self.alice, self.alice_destination)
        self.payouts["formula"] = await writer.settled(self.formula_deal, self.alice, alice)


@pytest.fixture(scope="module")
async def scene(db_pool: asyncpg.Pool) -> StatementScene:
    scene = StatementScene()
    await scene.write(db_pool)
    return scene


@asynccontextmanager
async def signed_in(
    db_pool: asyncpg.Pool, cache: redis.Redis, creator: str
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(page_app(db_pool, cache)) as browser:
        await sign_in(browser, await new_link(db_pool, creator))
        yield browser


async def statement(
    db_pool: asyncpg.Pool, cache: redis.Redis, creator: str, period: str
) -> tuple[httpx.Response, httpx.Response]:
    """`creator`'s statement of `period` (a month or a year) downloaded as CSV and as PDF."""
    async with signed_in(db_pool, cache, creator) as browser:
        as_csv = await browser.get(f"/c/statements/{period}.csv")
        as_pdf = await browser.get(f"/c/statements/{period}.pdf")
    return as_csv, as_pdf


def rows(response: httpx.Response, columns: tuple[str, ...]) -> list[dict[str, str]]:
    table = list(csv.reader(io.StringIO(response.text, newline="")))
    assert table[0] == list(columns)
    return [dict(zip(columns, row, strict=True)) for row in table[1:]]


async def settled_year(db_pool: asyncpg.Pool, payout_id: str) -> int:
    """The year alice's payout settled in: the database's clock posted its settlement."""
    posted: datetime = await db_pool.fetchval(
        "SELECT max(posted_at) FROM payouts_transfers WHERE payout_id = $1 AND kind = 'settlement'",
        payout_id,
    )
    return posted.astimezone(UTC).year


async def test_the_page_links_to_each_months_statement_and_each_years_summary(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: StatementScene
) -> None:
    year = await settled_year(db_pool, scene.payouts["settled"].payout_id)
    async with signed_in(db_pool, cache, scene.alice) as browser:
        payouts = await browser.get("/c/payouts")
        listed = await browser.get("/c/statements")
    assert '<a href="/c/statements">' in payouts.text
    assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
    page = listed.text
    for link in (
        '<a href="/c/statements/2026-03.csv" download>March 2026 statement (CSV)</a>',
        '<a href="/c/statements/2026-03.pdf" download>March 2026 statement (PDF)</a>',
        f'<a href="/c/statements/{year}.csv" download>{year} earnings summary (CSV)</a>',
        f'<a href="/c/statements/{year}.pdf" download>{year} earnings summary (PDF)</a>',
    ):
        assert link in page, link
    assert 'name="viewport"' in page and "<h1>Your statements</h1>" in page
    assert scene.bob not in page and scene.alice_destination not in page


async def test_a_months_statement_as_csv_and_pdf(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: StatementScene
) -> None:
    as_csv, as_pdf = await statement(db_pool, cache, scene.alice, "2026-03")
    assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
    assert as_csv.headers["content-disposition"] == (
        'attachment; filename="creatorflow-statement-2026-03.csv"'
    )
    assert as_csv.headers["cache-control"] == "no-store"
    table = rows(as_csv, COLUMNS)
    lines = {r["payout_id"]: r for r in table if r["kind"] != "total"}
    settled, held, formula = (scene.payouts[k] for k in ("settled", "held", "formula"))
    assert set(lines) == {settled.payout_id, held.payout_id, formula.payout_id}
    paid = lines[settled.payout_id]
    assert (paid["date"], paid["status"]) == ("2026-03-02", "settled")
    assert paid["paid_on"] != "" and lines[held.payout_id]["paid_on"] == ""
    assert (paid["gross"], paid["gross_currency"], paid["platform_fee"]) == (
        "100.00",
        "USD",
        "1.00",
    )
    assert (paid["fx_rate"], paid["net"], paid["net_currency"]) == ("0.9", "89.10", "EUR")
    assert (paid["rail"], paid["reference"]) == ("paypal", "PAYOUT-REF-7731")
    assert lines[held.payout_id]["status"] == "held" and lines[held.payout_id]["paid"] == ""
    # The brand's formula is shown, never run.
    assert lines[formula.payout_id]["deal"] == "'" + scene.formula_deal
    totals = {r["gross_currency"]: r for r in table if r["kind"] == "total"}
    assert (totals["USD"]["gross"], totals["USD"]["platform_fee"]) == ("300.00", "3.00")
    assert (totals["EUR"]["net"], totals["EUR"]["paid"]) == ("178.20", "178.20")

    assert as_pdf.status_code == 200 and as_pdf.headers["content-type"] == "application/pdf"
    assert as_pdf.content.startswith(b"%PDF-")
    text = pdf_text(as_pdf.content)
    for shown in ("Statement for March 2026", "89.10 EUR", "178.20 EUR", "300.00 USD"):
        assert shown in text, shown
    for document in (as_csv.text, text):
        assert scene.alice_destination not in document and scene.bob not in document


async def test_the_yearly_summary_is_what_the_tax_report_gives(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: StatementScene
) -> None:
    year = await settled_year(db_pool, scene.payouts["settled"].payout_id)
    report = await tax_totals(PostgresPayoutsStore(db_pool), year, DEFAULT_1099_THRESHOLD)
    [reported] = [r for r in report.us_reportable + report.us_below if r.creator_id == scene.alice]
    as_csv, as_pdf = await statement(db_pool, cache, scene.alice, str(year))
    assert (as_csv.status_code, as_pdf.status_code) == (200, 200), as_pdf.text[:300]
    table = rows(as_csv, YEAR_COLUMNS)
    [usd_total] = [r for r in table if r["kind"] == "total_usd"]
    assert usd_total["paid_usd"] == f"{reported.paid.amount:f}" == "198.00"
    paid = [r for r in table if r["kind"] not in ("total", "total_usd")]
    assert len(paid) == reported.payouts == 2  # settled in the year; not the held one
    assert {r["paid_usd"] for r in paid} == {"99.00"}
    text = pdf_text(as_pdf.content)
    assert f"Earnings summary for {year}" in text
    assert "198.00 USD over 2 payout(s). Tax form on file: W-9." in text


async def test_an_empty_period_is_an_empty_statement_and_a_bad_one_says_why(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: StatementScene
) -> None:
    async with signed_in(db_pool, cache, scene.alice) as browser:
        empty = await browser.get("/c/statements/2019-07.csv")
        empty_pdf = await browser.get("/c/statements/2019-07.pdf")
        no_month = await browser.get("/c/statements/2026-13.csv")
        no_period = await browser.get("/c/statements/last-month.pdf")
        unknown_kind = await browser.get("/c/statements/2026-03.xlsx")
        bare = await browser.get("/c/statements/2026-03")
    assert empty.status_code == 200
    [total] = rows(empty, COLUMNS)
    assert (total["kind"], total["net"], total["paid"], total["net_currency"]) == (
        "total",
        "0.00",
        "0.00",
        "EUR",
    )
    assert empty_pdf.status_code == 200
    assert "No payouts in this period." in pdf_text(empty_pdf.content)
    assert no_month.status_code == 400 and "There is no month 13" in no_month.text
    assert no_period.status_code == 400
    assert "is not a period: write a month as 2026-11 or a year as 2026" in no_period.text
    for refused in (unknown_kind, bare):
        assert refused.status_code == 404 and "2026-11.csv" in refused.text


async def test_statements_are_the_sessions_creators_only(
    db_pool: asyncpg.Pool, cache: redis.Redis, scene: StatementScene
) -> None:
    alices = {scene.payouts[k].payout_id for k in ("settled", "held", "formula")}
    async with signed_in(db_pool, cache, scene.bob) as browser:
        listed = await browser.get("/c/statements")
        march = await browser.get("/c/statements/2026-03.csv")
    assert listed.status_code == 200 and "March 2026 statement (CSV)" in listed.text
    lines = [r for r in rows(march, COLUMNS) if r["kind"] != "total"]
    assert [r["payout_id"] for r in lines] == [scene.payouts["bob"].payout_id]
    for text in (listed.text, march.text):
        assert scene.alice not in text and not any(p in text for p in alices)
        assert scene.alice_deals[0] not in text and scene.formula_deal not in text

    async with client_for(page_app(db_pool, cache)) as stranger:
        for path in ("/c/statements", "/c/statements/2026-03.csv", "/c/statements/2026.pdf"):
            refused = await stranger.get(path)
            assert refused.status_code == 401, path
            assert scene.alice not in refused.text and "%PDF" not in refused.text


async def test_operators_print_the_same_csv_the_creator_downloads(
    infra: InfraUrls, db_pool: asyncpg.Pool, cache: redis.Redis, scene: StatementScene
) -> None:
    year = await settled_year(db_pool, scene.payouts["settled"].payout_id)
    env = {
        "DATABASE_URL": infra.database_url,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
    }

    async def printed(*argv: str) -> Result:
        command = ["payouts", "statement", scene.alice, *argv]
        return await asyncio.to_thread(CliRunner().invoke, creatorflow, command, env=env)

    async with signed_in(db_pool, cache, scene.alice) as browser:
        for period in ("2026-03", str(year)):
            downloaded = await browser.get(f"/c/statements/{period}.csv")
            result = await printed("--format", "csv", "--period", period)
            assert result.exit_code == 0, result.output
            # The bytes: the CRLF line ends of RFC 4180 too.
            assert result.stdout_bytes == downloaded.content
            assert scene.formula_deal in result.stdout
    no_period = await printed("--format", "csv")
    assert no_period.exit_code == 1 and "--format csv needs --period" in no_period.output
    bad = await printed("--format", "csv", "--period", "2026-13")
    assert bad.exit_code == 1 and "there is no month 13" in bad.output
    unknown = await printed("--format", "xml")
    assert unknown.exit_code == 1 and "--format 'xml' is not known" in unknown.output
    table = await printed("--period", "2026-03")  # the table has no period: csv was meant
    assert table.exit_code == 1 and "add --format csv" in table.output
