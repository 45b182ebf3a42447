"""Payout amounts: the platform's cut and the conversion into the creator's currency."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from shared.contract.money import (
    Conversion,
    FxRateMissing,
    FxSnapshot,
    Money,
    MoneyError,
    minor_unit,
)

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
    part is within one minor unit of the exact share (never a unit created or lost). The
    creator's share comes first, so a tie (an exact share ending in half a minor unit) goes to
    the creator: 2.5 % of 1.00 USD is a fee of 0.02, not 0.03.
    """
    if isinstance(platform_fee_bps, bool) or not 0 <= platform_fee_bps <= BASIS_POINTS:
        raise MoneyError(f"platform fee must be 0..{BASIS_POINTS} bps, got {platform_fee_bps!r}")
    if gross.is_negative():
        raise MoneyError(f"a payout cannot be negative: {gross}")
    if platform_fee_bps == 0:
        return FeeSplit(gross, Money.zero(gross.currency), gross)
    creator, platform = gross.allocate([BASIS_POINTS - platform_fee_bps, platform_fee_bps])
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


class FxSnapshotSuspect(MoneyError):
    """The snapshot in force is suspect (shared.runtime.fx_moves): no money is converted with it."""


class FxSnapshotStale(MoneyError):
    """The snapshot in force when the payout became owed was already too old to trust."""


def to_payout_currency(
    share: Money, currency: str, snapshot: FxSnapshot | None
) -> tuple[Money, FxRecord]:
    """`share` in `currency`, rounded once to its minor unit (half-even), and the rate used.

    Raises FxRateMissing when the currencies differ and the snapshot (or no snapshot) lacks a
    rate for either of them, FxSnapshotSuspect when the snapshot is suspect.
    """
    if share.currency == currency:
        return share, FxRecord(Decimal(1), None, SAME_CURRENCY)
    if snapshot is None:
        raise FxRateMissing(f"no FX snapshot yet to convert {share.currency} to {currency}")
    if snapshot.suspect is not None:
        raise FxSnapshotSuspect(
            f"FX snapshot {snapshot.base} as_of={snapshot.as_of.isoformat()} "
            f"source={snapshot.source} is suspect: {snapshot.suspect}"
        )
    conversion = snapshot.convert(share, currency)
    return conversion.result, FxRecord.of(conversion)


def locked_conversion(
    share: Money,
    currency: str,
    *,
    at: datetime,
    in_force: FxSnapshot | None,
    later: FxSnapshot | None,
    max_age: timedelta,
) -> tuple[Money, FxRecord]:
    """`share` in `currency` at the rate locked `at` (when the payout became owed), rounded
    as `to_payout_currency` does.

    The rate is that of `in_force` (the snapshot in force at `at`) if it is trusted, has both
    currencies and is at most `max_age` older than `at`; otherwise that of `later`, the first
    trusted snapshot after `at` with both currencies (None while there is none). Which rate a
    payout gets thus depends on when its work was confirmed, never on when it is released.
    Raises what made `in_force` unusable (FxRateMissing, FxSnapshotSuspect, FxSnapshotStale)
    while there is no `later`.
    """
    if share.currency == currency:
        return to_payout_currency(share, currency, None)
    try:
        if in_force is not None and in_force.as_of < at - max_age:
            raise FxSnapshotStale(
                f"stale_fx: the FX snapshot in force at {at.isoformat()} "
                f"(as_of={in_force.as_of.isoformat()} source={in_force.source}) is older than "
                f"{max_age}; waiting for a fresh one"
            )
        return to_payout_currency(share, currency, in_force)
    except (FxRateMissing, FxSnapshotSuspect, FxSnapshotStale):
        if later is None:
            raise
        return to_payout_currency(share, currency, later)


def needs_later_rate(
    in_force: FxSnapshot | None, at: datetime, currencies: tuple[str, str], max_age: timedelta
) -> bool:
    """Whether a conversion locked `at` between `currencies` cannot use `in_force` (missing,
    suspect, stale or without one of the rates) and must look for the first one after."""
    source, target = currencies
    if source == target:
        return False
    if in_force is None or in_force.suspect is not None or in_force.as_of < at - max_age:
        return True
    quoted = {in_force.base, *in_force.rates}
    return source not in quoted or target not in quoted


def net_mismatch(share: Money, net: Money, fx: FxRecord | None) -> str | None:
    """Why `net` is not what `share` converts to at the recorded rate, or None if it is.

    The last check before money leaves: `net` must be `share x fx.rate` rounded to the net
    currency's minor unit (one minor unit of tolerance), and a non-zero share never becomes a
    zero net (a rate so small it converts to nothing is wrong, not a payout to skip).
    """
    rate = Decimal(1) if fx is None else fx.rate
    if fx is None and net.currency != share.currency:
        return f"net is in {net.currency} but no FX rate was recorded for {share.currency}"
    try:
        expected = Money.of(share.amount * rate, net.currency)
    except MoneyError as error:
        return f"{share} x {rate.normalize():f} is no amount of {net.currency}: {error}"
    if abs(expected.amount - net.amount) > Decimal(1).scaleb(-minor_unit(net.currency)):
        return (
            f"net {net} is not {share} x {rate.normalize():f} = {expected} "
            "(one minor unit of tolerance)"
        )
    if net.is_zero() and not share.is_zero():
        return f"{share} converts to nothing at {rate.normalize():f} {net.currency} per unit"
    return None


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
