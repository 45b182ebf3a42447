"""Promo-code orders: which deal an order counts for, in which currency, net of refunds.

An order's outcome is a pure function of the order, its refunds, the deals carrying its
promo code and the FX snapshot in force when it occurred. Recomputing it whenever one of
those changes (a deal or a snapshot arriving late, a refund) makes the result independent of
the order in which events arrive.

Rules:

* Window: a deal accepts an order whose `occurred_at` lies in
  [starts_at, ends_at + attribution_window_days] (both ends inclusive). If several deals
  carrying the code accept it, the one that started last wins (ties: smallest deal_id).
* Unattributed orders are kept with a reason: `unknown_code` (no deal carries the code, yet)
  or `outside_window` (deals carry it, none accepts that time).
* Currency: revenue is converted into the deal's currency with the snapshot in force at
  `occurred_at` (the latest with as_of <= occurred_at), rounded half-even to the minor unit;
  the rate, the snapshot's as_of and its source are recorded. With no such snapshot (or one
  lacking a needed rate) the order is attributed but `pending_fx`: it counts neither as an
  order nor as revenue until a snapshot covering it arrives, which re-evaluates it.
* Refunds: refunds in the order's currency are summed, capped at the order amount, and
  converted with the order's own rate, so a full refund removes exactly what the order
  added. A fully refunded order no longer counts as an order. Refunds in another currency
  than the order's are ignored, and so are refunds naming another brand than the order's
  (its own `brand_id`, else its deal's).
* Credit: the deal chosen by the code decides the campaign, and the campaign's attribution
  model (domain.credit) which deals share the order: `credits`, each in its deal's currency.
  Under `promo_code` (the default) the chosen deal alone gets it all.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

from services.tracking.domain.credit import (
    Click,
    Model,
    ModelSetting,
    deal_weights,
    setting_for,
    split,
    split_refund,
)
from services.tracking.domain.deals import DealTerms
from shared.contract.money import FxRateMissing, FxSnapshot, Money


class OrderStatus(StrEnum):
    ATTRIBUTED = "attributed"
    UNATTRIBUTED = "unattributed"
    PENDING_FX = "pending_fx"


class OrderReason(StrEnum):
    UNKNOWN_CODE = "unknown_code"
    OUTSIDE_WINDOW = "outside_window"
    NO_FX_SNAPSHOT = "no_fx_snapshot"
    NO_FX_RATE = "no_fx_rate"


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    promo_code: str
    amount: Money
    occurred_at: datetime
    # The brand whose shop sold it, if the shop said: then only that brand's deals count.
    brand_id: str | None = None
    # What click models join on (domain.credit): the visitor's hash, the click it followed.
    visitor_id: str | None = None
    click_id: str | None = None
    # What the leaked-code rules read (domain.leaks): where it ships, and the host of the page
    # the buyer came from (domain.leaks.kept_referrer).
    shipping_country: str | None = None
    referrer: str | None = None


@dataclass(frozen=True, slots=True)
class Refund:
    """Money returned on `order_id`; (order_id, occurred_at, amount) identifies it."""

    order_id: str
    amount: Money
    occurred_at: datetime
    # The brand whose shop sent it, if said: then it counts only for an order of that brand.
    brand_id: str | None = None

    @property
    def key(self) -> tuple[str, datetime, Decimal, str]:
        """What makes two refunds one: the first stored keeps its brand."""
        return (self.order_id, self.occurred_at, self.amount.amount, self.amount.currency)


def in_keeping_order(refunds: Collection[Refund]) -> list[Refund]:
    """Refunds in the order a store keeps them: of one refund sent twice in one batch (two
    shops naming different brands), the one with no brand, else the smallest brand id, is
    kept, so every store and every replay of the batch keeps the same."""
    return sorted(refunds, key=lambda r: (r.key, r.brand_id or ""))


@dataclass(frozen=True, slots=True)
class FxUsed:
    """The conversion applied to an order: units of deal currency per unit of order currency."""

    rate: Decimal
    as_of: datetime | None
    source: str | None


@dataclass(frozen=True, slots=True)
class Credit:
    """What one deal gets of an order, in the deal's currency: `revenue` gross, `refunded`
    its share of the refunds."""

    deal_id: str
    revenue: Money
    refunded: Money


@dataclass(frozen=True, slots=True)
class ClickFacts:
    """What click models need to credit an order: the clicks of its visitor (and its own
    click), the deals they were on, and the campaigns' newest settings."""

    clicks: tuple[Click, ...] = ()
    deals: Mapping[str, DealTerms] = field(default_factory=dict)
    settings: Mapping[tuple[str, str], ModelSetting] = field(default_factory=dict)
    # Positions in `clicks` by visitor and by click id: one set of facts serves every order
    # of a batch, so scanning all the clicks for each order would grow with their product.
    _by_visitor: Mapping[str, list[int]] = field(init=False, repr=False, compare=False)
    _by_click: Mapping[str, list[int]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_visitor: dict[str, list[int]] = {}
        by_click: dict[str, list[int]] = {}
        for i, click in enumerate(self.clicks):
            by_visitor.setdefault(click.visitor_id, []).append(i)
            by_click.setdefault(click.click_id, []).append(i)
        object.__setattr__(self, "_by_visitor", by_visitor)
        object.__setattr__(self, "_by_click", by_click)

    def of(self, order: Order) -> list[Click]:
        """The clicks of `order`'s visitor, and the click it names, in the order of `clicks`."""
        found: set[int] = set()
        if order.visitor_id is not None:
            found.update(self._by_visitor.get(order.visitor_id, ()))
        if order.click_id is not None:
            found.update(self._by_click.get(order.click_id, ()))
        return [self.clicks[i] for i in sorted(found)]


NO_CLICKS: Final = ClickFacts()


@dataclass(frozen=True, slots=True)
class OrderOutcome:
    """How an order counts.

    `revenue` (gross) and `refunded` are in the deal's currency and set only for ATTRIBUTED
    orders; `refunded_source` is the capped refund total in the order's currency; `fx` is the
    conversion applied (rate 1 without source when the currencies match), None unless
    ATTRIBUTED. An order counts as an order when ATTRIBUTED and not fully refunded.
    """

    order_id: str
    status: OrderStatus
    reason: OrderReason | None
    deal_id: str | None
    revenue: Money | None
    refunded: Money | None
    refunded_source: Money
    fully_refunded: bool
    fx: FxUsed | None
    last_refund_at: datetime | None
    # Each credited deal's share (domain.credit), by deal id; empty unless ATTRIBUTED.
    credits: tuple[Credit, ...] = ()
    model: Model = Model.PROMO_CODE

    @property
    def counts_as_order(self) -> bool:
        return self.status is OrderStatus.ATTRIBUTED and not self.fully_refunded

    @property
    def net_revenue(self) -> Money | None:
        """Revenue minus refunds in the deal's currency; None unless ATTRIBUTED."""
        if self.revenue is None or self.refunded is None:
            return None
        return self.revenue - self.refunded


def choose_deal(order: Order, candidates: Iterable[DealTerms]) -> DealTerms | OrderReason:
    """The deal `order` counts for, or why none: UNKNOWN_CODE or OUTSIDE_WINDOW."""
    carrying = [
        deal
        for deal in candidates
        if order.promo_code in deal.promo_codes
        and (order.brand_id is None or deal.brand_id == order.brand_id)
    ]
    if not carrying:
        return OrderReason.UNKNOWN_CODE
    accepting = [deal for deal in carrying if deal.accepts_order_at(order.occurred_at)]
    if not accepting:
        return OrderReason.OUTSIDE_WINDOW
    # Latest start, then the smallest id: a total order, so the choice never depends on the
    # order in which the deals were seen (max keeps the first of equal keys).
    return max(sorted(accepting, key=lambda deal: deal.deal_id), key=lambda deal: deal.starts_at)


def refunded_total(order: Order, refunds: Iterable[Refund]) -> tuple[Money, datetime | None]:
    """Refunds of `order` in its currency, summed and capped at the order amount, and the
    time of the latest one (None without refunds)."""
    currency = order.amount.currency
    applicable = [
        r for r in refunds if r.order_id == order.order_id and r.amount.currency == currency
    ]
    total = Money.zero(order.amount.currency)
    for refund in applicable:
        total = total + refund.amount
    last = max((r.occurred_at for r in applicable), default=None)
    return min(total, order.amount), last


def _in_deal_currency(
    amount: Money, refunded: Money, currency: str, snapshot: FxSnapshot | None
) -> tuple[Money, Money, FxUsed] | OrderReason:
    """An order's amount and refunds in the deal's currency, or why they cannot be yet."""
    if currency == amount.currency:
        return amount, refunded, FxUsed(Decimal(1), None, None)
    if snapshot is None:
        return OrderReason.NO_FX_SNAPSHOT
    try:
        conversion = snapshot.convert(amount, currency)
        refunded_in_deal_currency = snapshot.convert(refunded, currency).result
    except FxRateMissing:
        return OrderReason.NO_FX_RATE
    fx = FxUsed(conversion.rate, conversion.as_of, conversion.fx_source)
    return conversion.result, refunded_in_deal_currency, fx


def evaluate_order(
    order: Order,
    refunds: Sequence[Refund],
    candidates: Iterable[DealTerms],
    snapshot: FxSnapshot | None,
    clicks: ClickFacts | None = None,
) -> OrderOutcome:
    """The outcome of `order` given everything known about it (module docstring rules).

    `candidates` are the deals carrying its promo code; `snapshot` the one in force at
    `occurred_at` (used only when a deal's currency differs from the order's); `clicks`
    what its campaign's attribution model needs (none: promo-code credit).
    """
    chosen = choose_deal(order, candidates)
    # A refund naming a brand counts only for an order of that brand (one its shop's key
    # vouches for): another shop's refund of this order id is not this order's.
    brand = order.brand_id or (None if isinstance(chosen, OrderReason) else chosen.brand_id)
    ours = [r for r in refunds if r.brand_id is None or r.brand_id == brand]
    refunded_source, last_refund_at = refunded_total(order, ours)
    fully_refunded = last_refund_at is not None and refunded_source >= order.amount
    unattributed = OrderOutcome(
        order.order_id,
        OrderStatus.UNATTRIBUTED,
        None,
        None,
        None,
        None,
        refunded_source,
        fully_refunded,
        None,
        last_refund_at,
    )
    if isinstance(chosen, OrderReason):
        return replace(unattributed, reason=chosen)
    converted = _in_deal_currency(order.amount, refunded_source, chosen.currency, snapshot)
    if isinstance(converted, OrderReason):
        return replace(
            unattributed, status=OrderStatus.PENDING_FX, reason=converted, deal_id=chosen.deal_id
        )
    revenue, refunded, fx = converted
    credited = _credits(order, refunded_source, chosen, snapshot, clicks or NO_CLICKS)
    if isinstance(credited, OrderReason):
        return replace(
            unattributed, status=OrderStatus.PENDING_FX, reason=credited, deal_id=chosen.deal_id
        )
    credits, model = credited
    return OrderOutcome(
        order.order_id,
        OrderStatus.ATTRIBUTED,
        None,
        chosen.deal_id,
        revenue,
        refunded,
        refunded_source,
        fully_refunded,
        fx,
        last_refund_at,
        credits,
        model,
    )


def _credits(
    order: Order,
    refunded_source: Money,
    chosen: DealTerms,
    snapshot: FxSnapshot | None,
    facts: ClickFacts,
) -> tuple[tuple[Credit, ...], Model] | OrderReason:
    """Each credited deal's share of `order` in its currency, and the model that split it;
    or why a share cannot be converted yet."""
    setting = setting_for(chosen, facts.settings)
    model = Model.PROMO_CODE if setting is None else setting.model
    if model is Model.PROMO_CODE:
        # The chosen deal alone: no look at the clicks, nor a copy of the batch's deals.
        deals, touched = {chosen.deal_id: chosen}, []
    else:
        deals, touched = {**facts.deals, chosen.deal_id: chosen}, facts.of(order)
    weights = deal_weights(model, order.occurred_at, touched, chosen, deals, setting)
    gross = split(order.amount, weights)
    if not order.amount.is_zero():
        # A deal whose share rounds to nothing (a cent split three ways) is not credited:
        # it would count the order without any of its revenue.
        gross = {deal_id: part for deal_id, part in gross.items() if not part.is_zero()}
    taken_back = split_refund(refunded_source, gross)
    credits = []
    for deal_id in sorted(gross):
        converted = _in_deal_currency(
            gross[deal_id], taken_back[deal_id], deals[deal_id].currency, snapshot
        )
        if isinstance(converted, OrderReason):
            return converted
        credits.append(Credit(deal_id, converted[0], converted[1]))
    return tuple(credits), model
