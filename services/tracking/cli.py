"""`creatorflow report campaign <campaign_id>`: the attribution of one campaign, per creator
and in total, read from PostgreSQL (DATABASE_URL, or the embedded one `creatorflow infra up`
started)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

import typer
from rich.table import Table

from services.tracking.domain.attribution import DealAttribution
from services.tracking.domain.campaign_report import CampaignReport, ReportRow, campaign_report
from services.tracking.domain.campaigns import CampaignAttribution, campaign_attribution
from services.tracking.schema import SCHEMA
from services.tracking.store.postgres import PostgresTrackingStore
from shared.contract.money import Money, shown_rate
from shared.runtime.db import create_pool
from shared.tools.cli.console import console, fail
from shared.tools.cli.settings import database_url

COMMAND_NAME: Final = "report"

app = typer.Typer(help="Reports read from the tracking service's database.", no_args_is_help=True)


@app.callback()
def _reports() -> None:
    """Reports read from the tracking service's database."""


@dataclass(frozen=True)
class Loaded:
    """The brands with deals in the campaign, the attribution of the deals of the brand
    asked for (of every brand if none), and, when one brand's, its campaign figures (what its
    `campaign.attribution.updated` carries)."""

    brands: set[str]
    deals: list[DealAttribution]
    campaign: CampaignAttribution | None


async def _load(database_url: str, campaign_id: str, brand_id: str | None) -> Loaded:
    pool = await create_pool(database_url, schema=SCHEMA.name, min_size=1, max_size=1)
    try:
        store = PostgresTrackingStore(pool, consumer="report")
        brands = await store.campaign_brands(campaign_id)
        deals = await store.campaign_attributions(campaign_id, brand_id)
        brand = brand_id or (next(iter(brands)) if len(brands) == 1 else None)
        if brand is None or not deals:
            return Loaded(brands, deals, None)
        async with store.transaction() as tx:
            facts = await tx.campaign_facts({(campaign_id, brand)})
        return Loaded(brands, deals, campaign_attribution(facts[0]) if facts else None)
    finally:
        await pool.close()


@app.command("campaign")
def campaign(
    campaign_id: str = typer.Argument(..., help="Campaign id, e.g. cmp-3"),
    brand_id: str | None = typer.Option(
        None,
        "--brand",
        help="The brand whose deals to report: needed when brands share the campaign id.",
    ),
) -> None:
    """Reach, engagement, orders, revenue, spend and ratios per creator and in total."""
    try:
        loaded = asyncio.run(_load(database_url(SCHEMA.name), campaign_id, brand_id))
    except OSError as error:
        fail(f"cannot reach the database: {error}", hint="is DATABASE_URL right?")
    brands, deals = loaded.brands, loaded.deals
    if brand_id is None and len(brands) > 1:
        # Their figures are theirs alone (each gets its own campaign.attribution.updated):
        # one table adding them up would match neither brand's.
        fail(
            f"brands {', '.join(sorted(brands))} share campaign {campaign_id!r}",
            hint="choose one with --brand",
        )
    if not deals:
        of = "" if brand_id is None else f" of brand {brand_id!r}"
        fail(
            f"no attribution for campaign {campaign_id!r}{of} yet",
            hint="check the id; totals appear once the tracking service has seen its deals",
        )
    render(campaign_report(campaign_id, deals), brand_id or next(iter(brands), None))
    if loaded.campaign is not None:
        render_campaign(loaded.campaign)
    render_model_and_leaks(deals)


def _ratio(value: Decimal | None, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def _count(value: int) -> str:
    return f"{value:,}"


def _amount(money: Money) -> str:
    return f"{money.amount:,}"


def _creator_label(row: ReportRow, report: CampaignReport) -> str:
    """The creator id, with the currency when the campaign's deals use several."""
    creator = str(row.creator_id)
    return creator if len(report.totals) == 1 else f"{creator} ({row.currency})"


def render(report: CampaignReport, brand_id: str | None = None) -> None:
    """Print the report as three narrow tables (reach, engagement, sales and cost), one row
    per creator and a bold total row per currency; the title names the brand if known."""
    tables = [
        ("Reach", ("Deals", "Posts", "Reach", "Impressions", "Views", "CPM"), _reach_cells),
        (
            "Engagement",
            ("Likes", "Comments", "Shares", "Saves", "Eng. rate", "CPE"),
            _engagement_cells,
        ),
        (
            "Sales and cost, in the deals' currency",
            ("Orders", "Revenue", "Spend", "CPA", "ROAS", "ROI %"),
            _sales_cells,
        ),
    ]
    of = "" if brand_id is None else f" of brand {brand_id}"
    console.print(f"[bold]Campaign {report.campaign_id}{of}[/]")
    for title, columns, cells in tables:
        table = Table(title=title, title_justify="left")
        table.add_column("Creator")
        for name in columns:
            table.add_column(name, justify="right")
        for row in report.creators:
            table.add_row(_creator_label(row, report), *cells(row))
        table.add_section()
        for row in report.totals:
            table.add_row(f"TOTAL {row.currency}", *cells(row), style="bold")
        console.print(table)
    pending = sum(row.performance.pending_fx_orders for row in report.totals)
    if pending:
        console.print(f"[yellow]{pending} order(s) wait for an FX rate and are not counted yet.[/]")


def _reach_cells(row: ReportRow) -> list[str]:
    e = row.performance.engagement
    return [
        _count(row.deals),
        _count(e.posts),
        _count(e.reach),
        _count(e.impressions),
        _count(e.views),
        _ratio(row.ratios.cpm),
    ]


def _engagement_cells(row: ReportRow) -> list[str]:
    e = row.performance.engagement
    return [
        _count(e.likes),
        _count(e.comments),
        _count(e.shares),
        _count(e.saves),
        _ratio(row.ratios.engagement_rate),
        _ratio(row.ratios.cpe),
    ]


def _sales_cells(row: ReportRow) -> list[str]:
    p, r = row.performance, row.ratios
    return [
        _count(p.orders),
        _amount(p.revenue),
        _amount(p.spend),
        _ratio(r.cpa),
        _ratio(r.roas),
        _ratio(r.roi_pct, " %"),
    ]


def render_campaign(campaign: CampaignAttribution) -> None:
    """The campaign in its reporting currency (every currency converted at one FX snapshot)
    and the brand's orders on codes no deal carries, as `campaign.attribution.updated` has
    them."""
    currency = campaign.reporting_currency
    if campaign.reporting is None:
        console.print(
            f"[yellow]Campaign in {currency}: waiting for an FX snapshot that quotes every "
            "currency of its deals.[/]"
        )
    elif campaign.converted:
        p, r = campaign.reporting, campaign.ratios
        table = Table(title=f"Campaign in {currency}, its reporting currency", title_justify="left")
        for name in ("Deals", "Orders", "Revenue", "Fees", "Spend", "CPA", "ROAS", "ROI %"):
            table.add_column(name, justify="right")
        fees = "-" if campaign.reporting_fees is None else _amount(campaign.reporting_fees)
        table.add_row(
            _count(campaign.deals),
            _count(p.orders),
            _amount(p.revenue),
            fees,
            _amount(p.spend),
            _ratio(r.cpa),
            _ratio(r.roas),
            _ratio(r.roi_pct, " %"),
        )
        console.print(table)
        if campaign.fx is not None:
            rates = ", ".join(
                f"1 {c} = {shown_rate(rate)} {currency}" for c, rate in campaign.fx.rates
            )
            console.print(
                f"FX snapshot of {campaign.fx.as_of.isoformat()} ({campaign.fx.source}): {rates}"
            )
    unattributed = campaign.unattributed
    if unattributed.orders:
        amounts = ", ".join(f"{m.amount:,} {m.currency}" for m in unattributed.revenue)
        console.print(
            f"Unattributed: {unattributed.orders} order(s) of brand {campaign.brand_id} on codes "
            f"no deal carries ({amounts}), not in the tables above."
        )


def render_model_and_leaks(deals: list[DealAttribution]) -> None:
    """The attribution model that credited the deals' orders, and each deal with a code
    suspected leaked: the tables' orders and revenue leave out what its policy withheld."""
    models = sorted({str(d.model) for d in deals})
    console.print(f"Attribution model: {', '.join(models)}")
    for deal in deals:
        leaks = deal.leaks
        if not leaks.suspected and not leaks.suspected_orders:
            continue
        currency = deal.performance.revenue.currency
        withheld = (
            f"; {leaks.withheld_orders} withheld ({leaks.withheld_revenue:,} {currency}), "
            "not in the tables' orders and revenue"
            if leaks.withheld_orders
            else ""
        )
        console.print(
            f"[yellow]Leak suspected: deal {deal.deal_id} (creator {deal.creator_id}), "
            f"{leaks.suspected_orders} suspected order(s){withheld}.[/]"
        )
