"""What a brand sees of its deals (the brand API, services/payouts/brand_api/): per deal the
attribution tracking reported, the agreed fee, and each payout's gross and status; totals per
campaign, per creator and per currency. Pure: values in, values out.

Nothing here carries where a creator is paid, their payout currency, or why a payout is held
(a missing tax form is the creator's business), save the one hold the brand causes and
clears: `awaiting_funds`, its escrow not covering the payout.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any, Final, Literal

from services.payouts.domain.accounts import HoldCode
from services.payouts.domain.lifecycle import Payout
from services.payouts.domain.terms import DealTerms
from shared.contract.money import Money


@dataclass(frozen=True)
class AttributionFigures:
    """A deal's figures as of tracking's `attribution.updated` kept for it: counts of its
    posts and orders, revenue and spend in the deal currency, and the ratios tracking
    computed (None when undefined, or not reported by an older tracking)."""

    as_of: datetime
    posts: int
    likes: int
    comments: int
    shares: int
    views: int
    impressions: int
    reach: int
    orders: int
    revenue: Money
    spend: Money
    engagement_rate: Decimal | None = None
    cpm: Decimal | None = None
    cpe: Decimal | None = None
    cpa: Decimal | None = None
    roas: Decimal | None = None
    roi_pct: Decimal | None = None
    saves: int | None = None
    attribution_model: str | None = None
    leak_suspected: bool | None = None
    suspected_orders: int | None = None
    withheld_orders: int | None = None
    withheld_revenue: Money | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (money as `{"amount", "currency"}`, decimals and times as text)."""
        return {f.name: _to_json(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> AttributionFigures:
        """The inverse of `to_json`."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: _from_json(k, v) for k, v in value.items() if k in known})


_MONEY_FIELDS: Final = frozenset({"revenue", "spend", "withheld_revenue"})
_DECIMAL_FIELDS: Final = frozenset({"engagement_rate", "cpm", "cpe", "cpa", "roas", "roi_pct"})


def _to_json(value: object) -> object:
    if isinstance(value, Money):
        return {"amount": str(value.amount), "currency": value.currency}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def _from_json(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name in _MONEY_FIELDS:
        return Money.of(value["amount"], value["currency"])
    if name in _DECIMAL_FIELDS:
        return Decimal(value)
    if name == "as_of":
        return datetime.fromisoformat(value)
    return value


BrandPayoutStatus = Literal["scheduled", "held", "sent", "settled", "failed", "clawed_back"]


@dataclass(frozen=True)
class PayoutLine:
    """One payout as the brand sees it: `gross` is what it costs the brand (deal currency,
    the platform's fee included), `status` where it stands; a clawback (commission taken back
    after refunds) is `clawed_back`, its gross counted negative in the totals."""

    payout_id: str
    kind: str
    status: BrandPayoutStatus
    gross: Money
    platform_fee: Money
    awaiting_funds: bool


@dataclass(frozen=True)
class Totals:
    """Per currency: fees agreed, what payouts moved (`paid`: sent or settled), what is owed
    and not moved yet (`pending`: scheduled, held or failed), commission taken back, and the
    attributed revenue and spend."""

    currency: str
    fees: Money
    paid: Money
    pending: Money
    clawed_back: Money
    revenue: Money
    spend: Money


@dataclass(frozen=True)
class DealLine:
    deal_id: str
    campaign_id: str
    creator_id: str
    fee: Money
    commission_rate: Decimal
    attribution: AttributionFigures | None
    payouts: tuple[PayoutLine, ...]


@dataclass(frozen=True)
class CampaignSummary:
    campaign_id: str
    deals: int
    creators: int
    orders: int
    totals: tuple[Totals, ...]


_PAID: Final = frozenset({"sent", "settled"})


def payout_line(payout: Payout) -> PayoutLine:
    clawback = payout.kind == "clawback"
    return PayoutLine(
        payout_id=payout.payout_id,
        kind=payout.kind,
        status="clawed_back" if clawback else payout.status,
        gross=payout.gross,
        platform_fee=payout.platform_fee,
        awaiting_funds=payout.hold is not None and payout.hold.code is HoldCode.AWAITING_FUNDS,
    )


def deal_lines(
    deals: Iterable[DealTerms],
    payouts: Iterable[Payout],
    figures: Mapping[str, AttributionFigures],
) -> list[DealLine]:
    """The deals with their payouts (oldest first, as given) and attribution, by deal id."""
    by_deal: dict[str, list[PayoutLine]] = {}
    for payout in payouts:
        by_deal.setdefault(payout.deal_id, []).append(payout_line(payout))
    return [
        DealLine(
            deal_id=d.deal_id,
            campaign_id=d.campaign_id,
            creator_id=d.creator_id,
            fee=d.fee,
            commission_rate=d.commission_rate,
            attribution=figures.get(d.deal_id),
            payouts=tuple(by_deal.get(d.deal_id, ())),
        )
        for d in sorted(deals, key=lambda d: d.deal_id)
    ]


def totals(lines: Sequence[DealLine]) -> tuple[Totals, ...]:
    """The lines' totals, one per deal currency, by currency code."""
    sums: dict[str, dict[str, Money]] = {}
    for line in lines:
        currency = line.fee.currency
        zero = Money.of(0, currency)
        acc = sums.setdefault(currency, {name: zero for name in _TOTAL_FIELDS})
        acc["fees"] += line.fee
        for payout in line.payouts:
            if payout.status == "clawed_back":
                acc["clawed_back"] += payout.gross
            elif payout.status in _PAID:
                acc["paid"] += payout.gross
            else:
                acc["pending"] += payout.gross
        figures = line.attribution
        if figures is not None and figures.revenue.currency == currency:
            acc["revenue"] += figures.revenue
        if figures is not None and figures.spend.currency == currency:
            acc["spend"] += figures.spend
    return tuple(Totals(currency, **sums[currency]) for currency in sorted(sums))


_TOTAL_FIELDS: Final = ("fees", "paid", "pending", "clawed_back", "revenue", "spend")


def campaign_summaries(lines: Sequence[DealLine]) -> list[CampaignSummary]:
    """One summary per campaign of the lines, by campaign id."""
    campaigns: dict[str, list[DealLine]] = {}
    for line in lines:
        campaigns.setdefault(line.campaign_id, []).append(line)
    return [
        CampaignSummary(
            campaign_id=campaign_id,
            deals=len(of),
            creators=len({line.creator_id for line in of}),
            orders=sum(line.attribution.orders for line in of if line.attribution is not None),
            totals=totals(of),
        )
        for campaign_id, of in sorted(campaigns.items())
    ]
