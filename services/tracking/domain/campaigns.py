"""A campaign's attribution (docs/architecture.md §3, "Campaign attribution"): its deals'
stored figures summed per currency, then in the campaign's reporting currency, with the
campaign's ratios and the brand's orders whose promo code no deal carries.

Everything here is derived from the deals' running totals (domain.attribution), never from
the campaign's orders, so its cost depends on the number of deals, not on history.

Rules:

* Per currency: the deals in that currency, their orders, revenue, fees and spend (fee plus
  commission), summed exactly; amounts in different currencies are never added.
* Reporting currency: the currency of the campaign's first signed deal (earliest
  `signed_at`, then the smallest deal id), so it never depends on the order events arrived in.
* In the reporting currency: each currency's revenue, fees and spend converted with the
  trusted FX snapshot in force at the campaign's `as_of` (the latest input reflected),
  each rounded half-even to the reporting currency's minor unit, then summed. The snapshot
  and the rate of each currency are recorded. A campaign in one currency needs no snapshot.
  Without a snapshot quoting every currency, the reporting totals and the money ratios are
  None (`fx_pending`) until one arrives.
* Ratios (CPM, CPE, CPA, ROAS, ROI %, engagement rate) from the reporting totals with the
  rules and roundings of a deal's (domain.attribution.Performance.ratios); None when the
  denominator is zero.
* Unattributed orders: orders naming the campaign's brand whose promo code no deal of that
  brand carries (`unknown_code`), counted per brand (an order names its shop's brand, never a
  campaign): each of the brand's campaigns carries the same figures. Orders naming no brand
  belong to no campaign and stay in the store only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from services.tracking.domain.attribution import Engagement, Performance, Ratios
from services.tracking.domain.orders import Order, OrderOutcome, OrderReason, OrderStatus
from shared.contract.money import FxRateMissing, FxSnapshot, Money


@dataclass(frozen=True, slots=True)
class CurrencyTotals:
    """The deals of a campaign in one currency: how many, their summed fees and running
    totals (`performance`: engagement, orders, revenue, spend, pending orders, as_of)."""

    deals: int
    fees: Money
    performance: Performance

    @property
    def currency(self) -> str:
        return self.fees.currency


@dataclass(frozen=True, slots=True)
class Unattributed:
    """A brand's orders whose promo code no deal of the brand carries: how many, and their
    amounts as ordered (in each order's currency, refunds not deducted)."""

    orders: int = 0
    revenue: tuple[Money, ...] = ()


NOTHING_UNATTRIBUTED = Unattributed()


@dataclass(frozen=True, slots=True)
class CampaignFacts:
    """What the store knows of one campaign of one brand."""

    campaign_id: str
    brand_id: str
    reporting_currency: str
    totals: tuple[CurrencyTotals, ...]
    # The trusted snapshot in force at the campaign's as_of (None when there is none).
    snapshot: FxSnapshot | None = None
    unattributed: Unattributed = NOTHING_UNATTRIBUTED

    @property
    def as_of(self) -> datetime | None:
        return max((t.performance.as_of for t in self.totals if t.performance.as_of), default=None)

    @property
    def converted(self) -> bool:
        """Whether a currency other than the reporting one must be converted."""
        return any(t.currency != self.reporting_currency for t in self.totals)


@dataclass(frozen=True, slots=True)
class FxApplied:
    """The snapshot the reporting totals were converted with, and the rate of each converted
    currency (units of the reporting currency per unit of it, unrounded)."""

    as_of: datetime
    source: str
    rates: tuple[tuple[str, Decimal], ...]


@dataclass(frozen=True, slots=True)
class CampaignAttribution:
    """One campaign's published figures. `reporting` is None (and the money ratios too) while
    no snapshot converts every currency (`fx_pending`). `sequence` numbers what was
    published for the campaign, 1, 2, ...: it is not a figure, so two attributions with the
    same figures are equal whatever their sequence."""

    campaign_id: str
    brand_id: str
    deals: int
    engagement: Engagement
    totals: tuple[CurrencyTotals, ...]
    reporting_currency: str
    reporting: Performance | None
    reporting_fees: Money | None
    fx: FxApplied | None
    ratios: Ratios
    unattributed: Unattributed
    as_of: datetime
    sequence: int = field(default=0, compare=False)

    @property
    def fx_pending(self) -> bool:
        return self.reporting is None

    @property
    def converted(self) -> bool:
        return any(t.currency != self.reporting_currency for t in self.totals)


def campaign_attribution(facts: CampaignFacts) -> CampaignAttribution:
    """The campaign's figures from its facts (module docstring); `facts.totals` must not be
    empty (a campaign is known by its deals)."""
    if not facts.totals:
        raise ValueError(f"campaign {facts.campaign_id} has no deals")
    totals = tuple(sorted(facts.totals, key=lambda t: t.currency))
    engagement = sum((t.performance.engagement for t in totals), Engagement())
    as_of = facts.as_of
    assert as_of is not None, "a deal's attribution always has an as_of"
    currency = facts.reporting_currency
    converted = _in_reporting_currency(totals, currency, facts.snapshot)
    if converted is None:
        reporting, fees, fx = None, None, None
        ratios = Ratios(engagement.engagement_rate, None, None, None, None, None)
    else:
        reporting, fees, fx = converted
        reporting = Performance(
            engagement,
            reporting.orders,
            reporting.revenue,
            reporting.spend,
            reporting.pending_fx_orders,
            as_of,
        )
        ratios = reporting.ratios()
    return CampaignAttribution(
        campaign_id=facts.campaign_id,
        brand_id=facts.brand_id,
        deals=sum(t.deals for t in totals),
        engagement=engagement,
        totals=totals,
        reporting_currency=currency,
        reporting=reporting,
        reporting_fees=fees,
        fx=fx,
        ratios=ratios,
        unattributed=facts.unattributed,
        as_of=as_of,
    )


def _in_reporting_currency(
    totals: Sequence[CurrencyTotals], currency: str, snapshot: FxSnapshot | None
) -> tuple[Performance, Money, FxApplied | None] | None:
    """The summed totals in `currency` (engagement left empty), their fees and the FX used
    (None when nothing needed converting); None if a currency cannot be converted."""
    others = sorted({t.currency for t in totals} - {currency})
    if others and snapshot is None:
        return None
    rates: dict[str, Decimal] = {}
    if snapshot is not None:
        try:
            rates = {c: snapshot.rate(c, currency) for c in others}
        except FxRateMissing:
            return None
    total = Performance.zero(currency)
    fees = Money.zero(currency)
    for t in totals:
        p = t.performance
        total = total + Performance(
            Engagement(),
            p.orders,
            _convert(p.revenue, currency, snapshot),
            _convert(p.spend, currency, snapshot),
            p.pending_fx_orders,
            None,
        )
        fees = fees + _convert(t.fees, currency, snapshot)
    if not others or snapshot is None:
        return total, fees, None
    return total, fees, FxApplied(snapshot.as_of, snapshot.source, tuple(sorted(rates.items())))


def _convert(money: Money, currency: str, snapshot: FxSnapshot | None) -> Money:
    if money.currency == currency:
        return money
    assert snapshot is not None
    return snapshot.convert(money, currency).result


@dataclass(frozen=True, slots=True)
class UnattributedChange:
    """An order entering (`orders` +1) or leaving (-1) its brand's unattributed orders."""

    brand_id: str
    orders: int
    amount: Money


def _unattributed_of(order: Order, outcome: OrderOutcome | None) -> UnattributedChange | None:
    """The order as one of its brand's unattributed orders, or None when it is not one."""
    if (
        outcome is None
        or order.brand_id is None
        or outcome.status is not OrderStatus.UNATTRIBUTED
        or outcome.reason is not OrderReason.UNKNOWN_CODE
    ):
        return None
    return UnattributedChange(order.brand_id, 1, order.amount)


def unattributed_changes(
    order: Order, before: OrderOutcome | None, after: OrderOutcome
) -> list[UnattributedChange]:
    """How an order's new outcome changes its brand's unattributed totals (empty if it
    does not): the running totals follow every stored outcome, whatever order they came in."""
    old, new = _unattributed_of(order, before), _unattributed_of(order, after)
    if old == new:
        return []
    changes = []
    if old is not None:
        changes.append(UnattributedChange(old.brand_id, -1, -old.amount))
    if new is not None:
        changes.append(new)
    return changes


def unattributed_totals(orders: int, revenue: Mapping[str, Decimal]) -> Unattributed:
    """An Unattributed from stored running totals, currencies sorted, zero amounts dropped."""
    return Unattributed(
        orders,
        tuple(Money(amount, c) for c, amount in sorted(revenue.items()) if amount != 0),
    )
