"""Amounts: platform fee split, conversion and commission are exact to the minor unit."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.payouts.domain.amounts import (
    commission,
    split_platform_fee,
    to_payout_currency,
)
from services.payouts.domain.terms import DealTerms, DeliverableTerm, fee_milestones
from shared.contract.money import (
    MAX_ABS_AMOUNT,
    FxRateMissing,
    FxSnapshot,
    Money,
    MoneyError,
    minor_unit,
    shown_rate,
)

CURRENCIES = ["USD", "EUR", "JPY", "KWD", "BHD", "GBP"]
AS_OF = datetime(2025, 4, 1, tzinfo=UTC)

minor_units = st.integers(min_value=0, max_value=10**13)
bps = st.integers(min_value=0, max_value=10_000)


@given(units=minor_units, currency=st.sampled_from(CURRENCIES), fee_bps=bps)
def test_platform_fee_split_never_loses_or_creates_a_minor_unit(
    units: int, currency: str, fee_bps: int
) -> None:
    gross = Money.from_minor(units, currency)
    split = split_platform_fee(gross, fee_bps)
    assert split.platform_fee + split.creator_share == gross
    assert split.platform_fee.currency == split.creator_share.currency == currency
    assert not split.platform_fee.is_negative() and not split.creator_share.is_negative()
    exact = Decimal(units) * fee_bps / 10_000
    assert abs(split.platform_fee.minor_units - exact) < 1


@pytest.mark.parametrize(
    ("gross", "fee"),
    [
        ("1.00", "0.02"),
        ("0.20", "0.00"),
        ("9.00", "0.22"),
        ("1.24", "0.03"),
        ("1.40", "0.03"),
        ("1.64", "0.04"),
    ],
)
def test_a_platform_fee_ending_in_half_a_cent_leaves_the_cent_to_the_creator(
    gross: str, fee: str
) -> None:
    # 2.5 %: 1.00 -> 0.025, 0.20 -> 0.005, 9.00 -> 0.225, 1.40 -> 0.035 (ties), 1.24 -> 0.031,
    # 1.64 -> 0.041.
    split = split_platform_fee(Money.of(gross, "USD"), 250)
    assert split.platform_fee == Money.of(fee, "USD")
    assert split.creator_share == Money.of(gross, "USD") - split.platform_fee


@given(
    fee_units=minor_units,
    counts=st.lists(st.integers(min_value=1, max_value=1000), min_size=1, max_size=50),
    currency=st.sampled_from(CURRENCIES),
    fee_bps=bps,
)
def test_fee_milestones_and_their_platform_fees_add_up_exactly(
    fee_units: int, counts: list[int], currency: str, fee_bps: int
) -> None:
    fee = Money.from_minor(fee_units, currency)
    terms = DealTerms(
        deal_id="d",
        campaign_id="c",
        brand_id="b",
        creator_id="cr",
        fee=fee,
        commission_rate=Decimal("0.1"),
        deliverables=tuple(DeliverableTerm(f"dl-{i}", c) for i, c in enumerate(counts)),
        ends_at=AS_OF,
        attribution_window_days=0,
    )
    parts = fee_milestones(replace(terms, fee_schedule="per_deliverable"))
    assert sum((m.amount for m in parts), Money.zero(currency)) == fee
    splits = [split_platform_fee(m.amount, fee_bps) for m in parts]
    platform = sum((s.platform_fee for s in splits), Money.zero(currency))
    creator = sum((s.creator_share for s in splits), Money.zero(currency))
    assert platform + creator == fee


@pytest.mark.parametrize(
    ("amount", "rate", "target", "expected"),
    [
        # JPY has no decimals: 123.45 USD x 151.32 = 18680.454 -> 18680 JPY
        ("123.45", "151.32", "JPY", "18680"),
        # half-even on exactly half a yen: 0.50 x 3 = 1.5 -> 2, 0.50 x 5 = 2.5 -> 2
        ("0.50", "3", "JPY", "2"),
        ("0.50", "5", "JPY", "2"),
        # KWD and BHD have 3 decimals: 1000.00 x 0.30712 = 307.12 -> 307.120
        ("1000.00", "0.30712", "KWD", "307.120"),
        # 10.01 x 0.3769 = 3.772769 -> 3.773 BHD
        ("10.01", "0.3769", "BHD", "3.773"),
        # 0.05 x 0.3765 = 0.018825 -> 0.019 (not a tie: rounds up)
        ("0.05", "0.3765", "BHD", "0.019"),
        # 0.01 x 0.0005 = 0.000005 -> exactly half a fils -> 0.000 (to even)
        ("0.01", "0.05", "KWD", "0.000"),
    ],
)
def test_conversion_into_zero_and_three_decimal_currencies(
    amount: str, rate: str, target: str, expected: str
) -> None:
    snapshot = FxSnapshot("USD", {target: Decimal(rate)}, AS_OF, "test")
    net, record = to_payout_currency(Money.of(amount, "USD"), target, snapshot)
    assert net == Money(Decimal(expected), target)
    assert net.amount.as_tuple().exponent == -minor_unit(target)
    assert record.rate == Decimal(rate) and record.as_of == AS_OF and record.source == "test"


def test_cross_rate_conversion_is_exact_to_the_minor_unit() -> None:
    # EUR -> JPY through the USD base: rate = 151.32 / 0.9215 = 164.21052631578947368...
    snapshot = FxSnapshot("USD", {"EUR": Decimal("0.9215"), "JPY": Decimal("151.32")}, AS_OF, "ecb")
    net, record = to_payout_currency(Money.of("414.68", "EUR"), "JPY", snapshot)
    assert record.rate == Decimal("164.2105263157894736842105263157895")  # 34 digits
    exact = Fraction("414.68") * Fraction("151.32") / Fraction("0.9215")  # 68094.82...
    assert 68094 < exact < 68095 and exact - 68094 > Fraction(1, 2)
    assert net == Money(68095, "JPY")
    # KWD <-> BHD cross (both 3 decimals)
    snapshot = FxSnapshot("USD", {"KWD": Decimal("0.3071"), "BHD": Decimal("0.376")}, AS_OF, "ecb")
    net, _ = to_payout_currency(Money.of("100.000", "KWD"), "BHD", snapshot)
    assert net == Money(Decimal("122.436"), "BHD")  # 100 x 0.376 / 0.3071 = 122.4356887...


@given(
    units=st.integers(min_value=0, max_value=10**12),
    source=st.sampled_from(CURRENCIES),
    target=st.sampled_from(CURRENCIES),
    r1=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("1000"), places=4),
    r2=st.decimals(min_value=Decimal("0.001"), max_value=Decimal("1000"), places=4),
)
def test_conversion_is_the_exact_product_rounded_once_half_even(
    units: int, source: str, target: str, r1: Decimal, r2: Decimal
) -> None:
    snapshot = FxSnapshot(
        "USD", {c: (r1 if c == source else r2) for c in CURRENCIES if c != "USD"}, AS_OF, "t"
    )
    money = Money.from_minor(units, source)
    rate = snapshot.rate(source, target)
    if Fraction(money.amount) * Fraction(rate) >= MAX_ABS_AMOUNT - 1:
        # Beyond the money limit: refused, never rounded into something payable.
        with pytest.raises(MoneyError, match="absurd amount"):
            to_payout_currency(money, target, snapshot)
        return
    net, record = to_payout_currency(money, target, snapshot)
    assert net.currency == target
    exact = Fraction(money.amount) * Fraction(record.rate)
    # Within half a minor unit of the exact product with the recorded rate.
    assert abs(Fraction(net.amount) - exact) <= Fraction(1, 2 * 10 ** minor_unit(target))


def test_missing_rate_names_the_currencies() -> None:
    with pytest.raises(FxRateMissing, match="no FX snapshot yet to convert USD to EUR"):
        to_payout_currency(Money.of("1", "USD"), "EUR", None)
    snapshot = FxSnapshot("USD", {"EUR": Decimal("0.9")}, AS_OF, "t")
    with pytest.raises(FxRateMissing, match="no JPY rate"):
        to_payout_currency(Money.of("1", "USD"), "JPY", snapshot)


def test_same_currency_needs_no_snapshot_and_records_rate_one() -> None:
    net, record = to_payout_currency(Money.of("5", "KWD"), "KWD", None)
    assert net == Money.of("5", "KWD") and record.rate == 1 and record.as_of is None


def test_commission_converts_revenue_then_rounds_half_even() -> None:
    snapshot = FxSnapshot("USD", {"EUR": Decimal("0.5")}, AS_OF, "t")
    # 2661.90 USD x 0.10 = 266.19 USD
    assert commission(Money.of("2661.90", "USD"), Decimal("0.10"), "USD", None) == Money.of(
        "266.19", "USD"
    )
    # 0.25 USD x 0.10 = 0.025 -> 0.02 (half to even)
    assert commission(Money.of("0.25", "USD"), Decimal("0.1"), "USD", None) == Money.of(
        "0.02", "USD"
    )
    # revenue in EUR, deal in USD: 100 EUR = 200 USD, x 0.05 = 10 USD
    assert commission(Money.of("100", "EUR"), Decimal("0.05"), "USD", snapshot) == Money.of(
        "10", "USD"
    )
    # refunds exceeding orders earn nothing
    assert commission(Money.of("-5", "USD"), Decimal("0.1"), "USD", None) == Money.zero("USD")


def test_split_refuses_out_of_range_basis_points() -> None:
    with pytest.raises(MoneyError):
        split_platform_fee(Money.of("1", "USD"), 10_001)
    with pytest.raises(MoneyError):
        split_platform_fee(Money.of("-1", "USD"), 100)


@pytest.mark.parametrize(
    ("rate", "shown"),
    [
        # EUR -> GBP from a USD-based snapshot (0.79 / 0.9215): a quotient of 34 digits.
        ("0.8572978838849701573521432447097124", "0.8572978839"),
        ("151.3200", "151.32"),
        ("1.000000", "1"),
        ("100", "100"),
        ("0.0000393", "0.0000393"),
        ("0.00000000012345678915", "0.0000000001234567892"),
    ],
)
def test_a_rate_is_shown_to_ten_significant_digits(rate: str, shown: str) -> None:
    assert shown_rate(Decimal(rate)) == shown
