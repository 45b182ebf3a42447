"""The terms of a signed deal, as far as tracking needs them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from shared.money import Money


@dataclass(frozen=True, slots=True)
class DeliverableSpec:
    """`count` posts of `kind` that the creator owes by `due_by`."""

    deliverable_id: str
    kind: str
    count: int
    due_by: datetime


@dataclass(frozen=True, slots=True)
class DealTerms:
    """A deal as signed. The deal's currency is the fee's currency; every amount attributed
    to the deal (revenue, commission, spend) is expressed in it."""

    deal_id: str
    campaign_id: str
    brand_id: str
    creator_id: str
    fee: Money
    commission_rate: Decimal
    promo_codes: tuple[str, ...]
    deliverables: tuple[DeliverableSpec, ...]
    required_tags: tuple[str, ...]
    starts_at: datetime
    ends_at: datetime
    attribution_window_days: int
    signed_at: datetime

    @property
    def currency(self) -> str:
        return self.fee.currency

    @property
    def orders_close_at(self) -> datetime:
        """Last instant (inclusive) at which an order still counts for this deal."""
        return self.ends_at + timedelta(days=self.attribution_window_days)

    def accepts_order_at(self, occurred_at: datetime) -> bool:
        """True when `occurred_at` lies in [starts_at, ends_at + attribution_window_days]."""
        return self.starts_at <= occurred_at <= self.orders_close_at

    def same_terms(self, other: DealTerms) -> bool:
        """True when both say the same thing; when each was announced does not matter."""
        return replace(self, signed_at=other.signed_at) == other

    def runs_at(self, moment: datetime) -> bool:
        """True when `moment` lies in the deal period [starts_at, ends_at]."""
        return self.starts_at <= moment <= self.ends_at
