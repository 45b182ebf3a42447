"""The campaign report: attribution per creator and for the whole campaign.

Figures are sums of the deals' stored totals; ratios are computed from those sums with the
same rules as a deal's (domain.attribution), never averaged. Amounts in different currencies
are never added: a campaign whose deals use several currencies gets one total per currency.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from services.tracking.domain.attribution import DealAttribution, Performance, Ratios


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One creator's deals in one currency (or the campaign total when `creator_id` is None)."""

    creator_id: str | None
    deals: int
    performance: Performance
    ratios: Ratios

    @property
    def currency(self) -> str:
        return self.performance.spend.currency


@dataclass(frozen=True, slots=True)
class CampaignReport:
    campaign_id: str
    creators: list[ReportRow]
    totals: list[ReportRow]


def campaign_report(campaign_id: str, deals: Iterable[DealAttribution]) -> CampaignReport:
    """Rows per (creator, currency) sorted by creator, and one total row per currency."""
    by_creator: dict[tuple[str, str], list[DealAttribution]] = {}
    by_currency: dict[str, list[DealAttribution]] = {}
    for deal in deals:
        currency = deal.performance.spend.currency
        by_creator.setdefault((deal.creator_id, currency), []).append(deal)
        by_currency.setdefault(currency, []).append(deal)
    return CampaignReport(
        campaign_id,
        [_row(creator, group) for (creator, _), group in sorted(by_creator.items())],
        [_row(None, group) for _, group in sorted(by_currency.items())],
    )


def _row(creator_id: str | None, deals: list[DealAttribution]) -> ReportRow:
    total = Performance.zero(deals[0].performance.spend.currency)
    for deal in deals:
        total = total + deal.performance
    return ReportRow(creator_id, len(deals), total, total.ratios())
