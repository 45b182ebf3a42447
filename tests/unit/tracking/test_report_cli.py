"""`creatorflow report campaign`: one brand's deals, never several brands' added up."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from typer.testing import CliRunner

from services.tracking import cli
from services.tracking.domain.attribution import DealAttribution, DealFacts, Engagement, attribute
from services.tracking.domain.campaigns import CampaignAttribution, campaign_attribution
from services.tracking.domain.credit import Model
from services.tracking.domain.leaks import LeakTotals
from shared.contract.money import Money
from shared.tools.cli.main import app
from tests.unit.tracking.builders import T0
from tests.unit.tracking.test_campaign_attribution import two_currencies


def attribution(deal_id: str, creator_id: str) -> DealAttribution:
    return attribute(
        DealFacts(
            deal_id=deal_id,
            campaign_id="cmp-1",
            creator_id=creator_id,
            fee=Money.of("100.00", "USD"),
            commission_rate=Decimal("0.10"),
            engagement=Engagement(),
            orders=2,
            revenue=Money.of("80.00", "USD"),
            pending_fx_orders=0,
            as_of=T0,
        )
    )


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[DealAttribution]]:
    """The deals of campaign cmp-1 by brand, as `report campaign` reads them."""
    by_brand: dict[str, list[DealAttribution]] = {}

    async def load(_url: str, campaign_id: str, brand_id: str | None) -> Any:
        deals = (
            [d for b, ds in by_brand.items() if brand_id in (None, b) for d in ds]
            if campaign_id == "cmp-1"
            else []
        )
        brands = set(by_brand) if campaign_id == "cmp-1" else set()
        brand = brand_id or (next(iter(brands)) if len(brands) == 1 else None)
        campaign = CAMPAIGNS.get(brand) if deals and brand else None
        return cli.Loaded(brands, sorted(deals, key=lambda d: d.deal_id), campaign)

    monkeypatch.setattr(cli, "_load", load)
    monkeypatch.setattr(cli, "database_url", lambda schema: "postgresql://unused")
    return by_brand


# The campaign figures of a brand, as its campaign.attribution.updated carries them.
CAMPAIGNS: dict[str, CampaignAttribution] = {}


def report(*args: str) -> Any:
    return CliRunner().invoke(app, ["report", "campaign", *args], terminal_width=200)


def test_brands_sharing_a_campaign_id_are_reported_one_at_a_time(
    stored: dict[str, list[DealAttribution]],
) -> None:
    stored["br-a"] = [attribution("deal-a", "cr-a")]
    stored["br-b"] = [attribution("deal-b", "cr-b")]
    refused = report("cmp-1")
    assert refused.exit_code != 0
    assert "brands br-a, br-b share campaign 'cmp-1'" in refused.output
    assert "--brand" in refused.output
    mine = report("cmp-1", "--brand", "br-a")
    assert mine.exit_code == 0, mine.output
    assert "Campaign cmp-1 of brand br-a" in mine.output
    assert "cr-a" in mine.output and "cr-b" not in mine.output
    none = report("cmp-1", "--brand", "br-c")
    assert none.exit_code != 0 and "of brand 'br-c'" in none.output


def test_a_campaign_of_one_brand_needs_no_option(
    stored: dict[str, list[DealAttribution]],
) -> None:
    stored["br-a"] = [attribution("deal-a", "cr-a"), attribution("deal-a2", "cr-b")]
    shown = report("cmp-1")
    assert shown.exit_code == 0, shown.output
    assert "Campaign cmp-1 of brand br-a" in shown.output
    assert "cr-a" in shown.output and "cr-b" in shown.output and "TOTAL USD" in shown.output


def test_the_model_and_a_suspected_leak_are_shown_with_what_was_withheld(
    stored: dict[str, list[DealAttribution]],
) -> None:
    leaked = replace(
        attribution("deal-a", "cr-a"),
        model=Model.POSITION_BASED,
        leaks=LeakTotals(
            suspected=True, suspected_orders=17, withheld_orders=17, withheld_revenue=Decimal("35")
        ),
    )
    stored["br-a"] = [leaked, replace(attribution("deal-b", "cr-b"), model=Model.POSITION_BASED)]
    shown = report("cmp-1")
    assert shown.exit_code == 0, shown.output
    assert "Attribution model: position_based" in shown.output
    assert "Leak suspected: deal deal-a (creator cr-a), 17 suspected order(s); 17 withheld" in (
        shown.output
    )
    assert "35 USD" in shown.output
    assert "deal deal-b" not in shown.output


def test_the_campaign_in_its_reporting_currency_and_its_unattributed_orders(
    stored: dict[str, list[DealAttribution]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The hand-worked campaign of test_campaign_attribution: USD and EUR deals, EUR at 0.9215.
    stored["br-a"] = [attribution("deal-a", "cr-a")]
    monkeypatch.setitem(CAMPAIGNS, "br-a", campaign_attribution(two_currencies()))
    shown = report("cmp-1")
    assert shown.exit_code == 0, shown.output
    assert "Campaign in USD, its reporting currency" in shown.output
    for figure in ("3,085.19", "775.56", "1,138.33", "27.1031", "2.7103", "171.03 %"):
        assert figure in shown.output
    # 1 / 0.9215 to ten significant digits, as statements show rates (not 34 of them).
    assert "FX snapshot of 2025-04-01T00:00:00+00:00 (ecb): 1 EUR = 1.085187195 USD" in (
        shown.output
    )
    assert "Unattributed: 3 order(s) of brand br-12 on codes no deal carries (129.80 USD)" in (
        shown.output
    )
    monkeypatch.setitem(CAMPAIGNS, "br-a", campaign_attribution(two_currencies(snapshot=None)))
    waiting = report("cmp-1")
    assert "Campaign in USD: waiting for an FX snapshot" in waiting.output
