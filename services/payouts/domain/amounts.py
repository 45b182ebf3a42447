"""Payout amounts: the platform's cut and the conversion into the creator's currency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from shared.money import Conversion, FxRateMissing, FxSnapshot, Money, MoneyError

BASIS_POINTS = 10_000


@dataclass(frozen=True)
class FeeSplit:
    """`gross` (deal currency) = `platform_fee` + `creator_share`, to the minor unit."""

    gross: Money
    platform_fee: Money
    creator_share: Money


def split_platform_fee(gross: Money, platform_fee_bps: int) -> FeeSplit:
    """Take `platform_fee_bps` basis points of `gross` for the platform, the rest for the creator.

    Uses `Money.allocate`, so the two parts always add up to `gross` exactly and the platform's
    part is within one minor unit of the exact share (never a unit created or lost).
    """
    if isinstance(platform_fee_bps, bool) or not 0 <= platform_fee_bps <= BASIS_POINTS:
        raise MoneyError(f"platform fee must be 0..{BASIS_POINTS} bps, got {platform_fee_bps!r}")
    if gross.is_negative():
        raise MoneyError(f"a payout cannot be negative: {gross}")
    if platform_fee_bps == 0:
        return FeeSplit(gross, Money.zero(gross.currency), gross)
    platform, creator = gross.allocate([platform_fee_bps, BASIS_POINTS - platform_fee_bps])
    return FeeSplit(gross, platform, creator)


@dataclass(frozen=True)
class FxRecord:
    """The rate used for one payout: `rate` units of the net currency per gross currency unit."""

    rate: Decimal
    as_of: datetime | None
    source: str

    @classmethod
    def of(cls, conversion: Conversion) -> FxRecord:
        return cls(conversion.rate, conversion.as_of, conversion.fx_source)


SAME_CURRENCY = "same-currency"


def to_payout_currency(
    share: Money, currency: str, snapshot: FxSnapshot | None
) -> tuple[Money, FxRecord]:
    """`share` in `currency`, rounded once to its minor unit (half-even), and the rate used.

    Raises FxRateMissing when the currencies differ and the snapshot (or no snapshot) lacks a
    rate for either of them.
    """
    if share.currency == currency:
        return share, FxRecord(Decimal(1), None, SAME_CURRENCY)
    if snapshot is None:
        raise FxRateMissing(f"no FX snapshot yet to convert {share.currency} to {currency}")
    conversion = snapshot.convert(share, currency)
    return conversion.result, FxRecord.of(conversion)


def commission(
    revenue: Money, rate: Decimal, deal_currency: str, snapshot: FxSnapshot | None
) -> Money:
    """Commission owed on attributed `revenue` (net of refunds), in the deal's currency.

    Revenue in another currency is first converted with `snapshot` (rounded half-even to the deal
    currency's minor unit), then multiplied by `rate` and rounded half-even once more. Revenue at
    or below zero (refunds exceeding orders) earns nothing. Raises FxRateMissing as
    `to_payout_currency` does.
    """
    in_deal_currency, _ = to_payout_currency(revenue, deal_currency, snapshot)
    if in_deal_currency.is_negative():
        return Money.zero(deal_currency)
    return in_deal_currency.times(rate)
