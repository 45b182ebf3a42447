"""Attribution models: how one order's credit is split between the deals of a campaign
(docs/architecture.md §10).

An order's *touches* are the clicks of its visitor (or its own `click_id`) on deals of the
same campaign and brand as the deal its promo code chose, within the campaign's lookback
window before the order, on deals that accept an order at that time. The campaign's model
turns the touches into weights per deal:

==============  ===============================================================
model           weights of the touches t1 .. tn (oldest first)
==============  ===============================================================
promo_code      the promo code's deal alone (today's rule; clicks ignored)
last_click      tn: 1
first_click     t1: 1
linear          each 1/n
position_based  n = 1: 1; n = 2: 1/2 each; n >= 3: t1 and tn 40 % each, the
                middle ones share 20 % equally
time_decay      2 ** (-(order time - click time) / half-life), normalised
==============  ===============================================================

Weights of touches on the same deal add up. Without any touch, a click model credits the
promo code's deal, as `promo_code` does. Touches are ordered by (time, click id), so equal
times do not depend on arrival order.

Rounding: the order's amount is split in whole minor units of the order's currency by the
largest-remainder method (`shared.contract.money.Money.allocate`: floors, then the units
left to the largest remainders, ties to the smallest deal id), so the credits of one order
sum exactly to the order. Refunds are split the same way in proportion to those credits,
so no deal is refunded more than it was credited and a full refund takes back exactly what
each deal got. Each credit is then converted into its deal's currency at the order's FX
snapshot, rounded half-even to the minor unit.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Final

from services.tracking.domain.deals import DealTerms
from services.tracking.domain.leaks import LeakedOrders
from shared.contract.money import Money


class Model(StrEnum):
    PROMO_CODE = "promo_code"
    LAST_CLICK = "last_click"
    FIRST_CLICK = "first_click"
    LINEAR = "linear"
    POSITION_BASED = "position_based"
    TIME_DECAY = "time_decay"


DEFAULT_LOOKBACK_DAYS: Final = 30
DEFAULT_HALF_LIFE_DAYS: Final = 7
# 2 ** x for time decay: 30 significant digits, far below a minor unit of any order, and
# the same on every machine (a context of its own, never the thread's).
_DECAY: Final = decimal.Context(prec=30, rounding=decimal.ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class ModelSetting:
    """A brand's choice of model for one of its campaigns; the newest by (set_at, event_id)
    counts."""

    campaign_id: str
    brand_id: str
    model: Model
    lookback_days: int
    half_life_days: int
    set_at: datetime
    event_id: str
    # Whether the campaign's suspected (leaked-code) orders still earn commission.
    leaked_orders: LeakedOrders = LeakedOrders.CREDIT

    def newer_than(self, other: ModelSetting | None) -> bool:
        return other is None or (self.set_at, self.event_id) > (other.set_at, other.event_id)


@dataclass(frozen=True, slots=True)
class Click:
    """A visitor followed the tracked link of `deal_id` at `clicked_at`."""

    click_id: str
    deal_id: str
    visitor_id: str
    clicked_at: datetime
    # The brand whose shop sent it, if said: then it counts only on that brand's deal.
    brand_id: str | None = None


def newest_settings(settings: Iterable[ModelSetting]) -> dict[tuple[str, str], ModelSetting]:
    """The newest setting per (campaign, brand)."""
    newest: dict[tuple[str, str], ModelSetting] = {}
    for setting in settings:
        key = (setting.campaign_id, setting.brand_id)
        if setting.newer_than(newest.get(key)):
            newest[key] = setting
    return newest


def setting_for(
    deal: DealTerms, settings: Mapping[tuple[str, str], ModelSetting]
) -> ModelSetting | None:
    """The setting of `deal`'s campaign by `deal`'s own brand (None: promo_code)."""
    return settings.get((deal.campaign_id, deal.brand_id))


def touches(
    occurred_at: datetime,
    clicks: Iterable[Click],
    home: DealTerms,
    deals: Mapping[str, DealTerms],
    lookback_days: int,
) -> list[Click]:
    """The clicks that count as touches of an order at `occurred_at` whose promo code chose
    `home` (module docstring), oldest first, each click once."""
    since = occurred_at - timedelta(days=lookback_days)
    found = {}
    for click in clicks:
        deal = deals.get(click.deal_id)
        if (
            deal is not None
            and deal.campaign_id == home.campaign_id
            and deal.brand_id == home.brand_id
            and click.brand_id in (None, deal.brand_id)
            and deal.accepts_order_at(occurred_at)
            and since <= click.clicked_at <= occurred_at
        ):
            found[click.click_id] = click
    return sorted(found.values(), key=lambda c: (c.clicked_at, c.click_id))


def touch_weights(
    model: Model, ordered: Sequence[Click], occurred_at: datetime, half_life_days: int
) -> list[Decimal]:
    """The weight of each touch of `ordered` (oldest first) under `model`; a click model
    needs at least one touch. Weights are exact integers, except time decay's."""
    n = len(ordered)
    if model is Model.LAST_CLICK:
        return [Decimal(0)] * (n - 1) + [Decimal(1)]
    if model is Model.FIRST_CLICK:
        return [Decimal(1)] + [Decimal(0)] * (n - 1)
    if model is Model.LINEAR or (model is Model.POSITION_BASED and n <= 2):
        return [Decimal(1)] * n
    if model is Model.POSITION_BASED:
        # 40 / 20 / 40 in integers: ends 2(n - 2) each, every middle touch 1, of 5(n - 2).
        ends = Decimal(2 * (n - 2))
        return [ends] + [Decimal(1)] * (n - 2) + [ends]
    if model is Model.TIME_DECAY:
        half_life = Decimal(half_life_days * 86_400)
        return [
            _DECAY.power(
                Decimal(2),
                _DECAY.divide(-Decimal((occurred_at - c.clicked_at).total_seconds()), half_life),
            )
            for c in ordered
        ]
    raise ValueError(f"{model} splits no clicks")


def deal_weights(
    model: Model,
    occurred_at: datetime,
    clicks: Iterable[Click],
    home: DealTerms,
    deals: Mapping[str, DealTerms],
    setting: ModelSetting | None,
) -> dict[str, Decimal]:
    """The weight of each deal credited for an order whose promo code chose `home`."""
    if model is Model.PROMO_CODE or setting is None:
        return {home.deal_id: Decimal(1)}
    ordered = touches(occurred_at, clicks, home, deals, setting.lookback_days)
    if not ordered:
        return {home.deal_id: Decimal(1)}
    weights: dict[str, Decimal] = {}
    for click, weight in zip(
        ordered, touch_weights(model, ordered, occurred_at, setting.half_life_days), strict=True
    ):
        weights[click.deal_id] = weights.get(click.deal_id, Decimal(0)) + weight
    return {deal_id: w for deal_id, w in weights.items() if w > 0}


def split(amount: Money, weights: Mapping[str, Decimal]) -> dict[str, Money]:
    """`amount` split over the deals of `weights` in whole minor units, largest remainder
    first (ties: the smallest deal id); the parts sum exactly to `amount`."""
    deal_ids = sorted(weights)
    parts = amount.allocate([weights[d] for d in deal_ids])
    return dict(zip(deal_ids, parts, strict=True))


def split_refund(refunded: Money, credits: Mapping[str, Money]) -> dict[str, Money]:
    """`refunded` split over the deals in proportion to their `credits` (as `split`), so no
    deal gives back more than it got and a full refund takes back each credit exactly."""
    if refunded.is_zero() or not any(not c.is_zero() for c in credits.values()):
        return {deal_id: Money.zero(refunded.currency) for deal_id in credits}
    return split(refunded, {deal_id: c.amount for deal_id, c in credits.items()})
