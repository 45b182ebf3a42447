"""The terms of a deal in force, as far as tracking needs them: the highest version received
(`deal.signed` is version 1, each `deal.amended` a later one), ended by a cancellation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal

from shared.contract.deal_versions import highest_version
from shared.contract.money import Money


@dataclass(frozen=True, slots=True)
class DeliverableSpec:
    """`count` posts of `kind` that the creator owes by `due_by`."""

    deliverable_id: str
    kind: str
    count: int
    due_by: datetime


@dataclass(frozen=True, slots=True)
class Cancellation:
    """`deal.cancelled`: the brand that sent it, and when the deal ended (the event's time,
    no earlier than its arrival less the clock skew)."""

    deal_id: str
    brand_id: str
    cancelled_at: datetime


@dataclass(frozen=True, slots=True)
class DealTerms:
    """A deal's terms. The deal's currency is the fee's currency; every amount attributed
    to the deal (revenue, commission, spend) is expressed in it. `signed_at` is when the
    deal was signed (version 1), whatever version these terms are; `sent_at` when this
    version was sent. A cancelled deal counts nothing after `cancelled_at`."""

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
    # Where the creator's audience lives (ISO 3166-1 alpha-2), if the brand said: the
    # leaked-code rule on shipping countries (domain.leaks) needs it.
    audience_countries: tuple[str, ...] = ()
    version: int = 1
    cancelled_at: datetime | None = None
    sent_at: datetime | None = None

    @property
    def currency(self) -> str:
        return self.fee.currency

    @property
    def orders_close_at(self) -> datetime:
        """Last instant (inclusive) at which an order still counts for this deal."""
        return self.ends_at + timedelta(days=self.attribution_window_days)

    @property
    def orders_end_at(self) -> datetime:
        """Last instant (inclusive) at which an order may count: the order window's close, or
        the cancellation when that came first."""
        if self.cancelled_at is None:
            return self.orders_close_at
        return min(self.orders_close_at, self.cancelled_at)

    def accepts_order_at(self, occurred_at: datetime) -> bool:
        """True when `occurred_at` lies in [starts_at, ends_at + attribution_window_days] and
        not after a cancellation."""
        return self.starts_at <= occurred_at <= self.orders_close_at and self.live_at(occurred_at)

    def same_terms(self, other: DealTerms) -> bool:
        """True when both say the same thing; when each was announced (or cancelled) does not
        matter."""
        ours = replace(
            self, signed_at=other.signed_at, sent_at=other.sent_at, cancelled_at=other.cancelled_at
        )
        return ours == other

    def runs_at(self, moment: datetime) -> bool:
        """True when `moment` lies in the deal period [starts_at, ends_at], not after a
        cancellation."""
        return self.starts_at <= moment <= self.ends_at and self.live_at(moment)

    def live_at(self, moment: datetime) -> bool:
        """False from just after the deal's cancellation on."""
        return self.cancelled_at is None or moment <= self.cancelled_at


def in_force(
    signed: DealTerms, versions: Iterable[DealTerms], cancellations: Iterable[Cancellation]
) -> DealTerms:
    """The deal's terms in force, whatever order its events arrived in: the earliest
    cancellation by its own brand ends it; the highest version that may amend it
    (`changed_identity`) and was not sent after that cancellation counts. It keeps the
    deal's `signed_at`."""
    ended = min(
        (c.cancelled_at for c in cancellations if c.brand_id == signed.brand_id), default=None
    )
    best = highest_version(signed, versions, ended)
    return replace(best, signed_at=signed.signed_at, sent_at=None, cancelled_at=ended)


def code_clash(deal: DealTerms, others: Iterable[DealTerms]) -> str | None:
    """Why `deal` may not be stored, or None: one of its promo codes belongs to another
    brand's deal whose order window [starts_at, orders_end_at] overlaps its own (a cancelled
    deal gives its codes up when it is cancelled).

    An order says which code was used, and not always which brand sold it, so a code must
    mean one brand at a time, or one brand's sales could pay another brand's creator.
    """
    for other in sorted(others, key=lambda d: d.deal_id):
        if other.deal_id == deal.deal_id or other.brand_id == deal.brand_id:
            continue
        shared = sorted(set(deal.promo_codes) & set(other.promo_codes))
        overlap = deal.starts_at <= other.orders_end_at and other.starts_at <= deal.orders_end_at
        if shared and overlap:
            return (
                f"promo code {shared[0]!r} of deal {deal.deal_id!r} (brand {deal.brand_id!r}) "
                f"already belongs to deal {other.deal_id!r} of brand {other.brand_id!r} from "
                f"{other.starts_at.isoformat()} to {other.orders_end_at.isoformat()}; "
                "a code may belong to one brand at a time: use another code or other dates"
            )
    return None
