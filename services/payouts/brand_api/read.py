"""The brand API's reads: one brand's deals, their payouts and attribution, as of one snapshot
of payouts' own tables (`PayoutsStore.snapshot`), read-only. A campaign or creator with no
deal of the brand is None, whether it is another brand's or nobody's."""

from __future__ import annotations

from services.payouts.domain.brand_view import (
    CampaignSummary,
    DealLine,
    campaign_summaries,
    deal_lines,
)
from services.payouts.store.port import PayoutsStore


async def brand_deals(
    db: PayoutsStore,
    brand_id: str,
    *,
    campaign_id: str | None = None,
    creator_id: str | None = None,
) -> list[DealLine]:
    """The brand's deals (of one campaign, or with one creator), with payouts and figures."""
    async with db.snapshot() as repo:
        deals = await repo.deals_of_brand(brand_id, campaign_id=campaign_id, creator_id=creator_id)
        if not deals:
            return []
        deal_ids = {d.deal_id for d in deals}
        payouts = [p for p in await repo.payouts_of_brand(brand_id) if p.deal_id in deal_ids]
        figures = await repo.attribution_figures(deal_ids)
    return deal_lines(deals, payouts, figures)


async def campaigns(db: PayoutsStore, brand_id: str) -> list[CampaignSummary]:
    return campaign_summaries(await brand_deals(db, brand_id))


async def campaign(
    db: PayoutsStore, brand_id: str, campaign_id: str
) -> tuple[CampaignSummary, list[DealLine]] | None:
    lines = await brand_deals(db, brand_id, campaign_id=campaign_id)
    if not lines:
        return None
    return campaign_summaries(lines)[0], lines


async def creator(db: PayoutsStore, brand_id: str, creator_id: str) -> list[DealLine] | None:
    lines = await brand_deals(db, brand_id, creator_id=creator_id)
    return lines or None
