"""Unit tests for shared.contract.money: examples per rule, hypothesis properties for invariants."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, ROUND_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.contract.money import (
    ROUNDING,
    Conversion,
    FxRateMissing,
    FxSnapshot,
    Money,
    MoneyError,
    NonNegativeMoney,
    check_currency,
    is_currency,
    minor_unit,
    quantize,
)

D = Decimal
AS_OF = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
# Exponents 0, 2, 3 and 4 (CLF), so every property meets every kind of minor unit.
CURRENCIES = ["JPY", "KWD", "BHD", "USD", "EUR", "CLF"]
ALL_ROUNDINGS = [
    "ROUND_CEILING",
    "ROUND_FLOOR",
    "ROUND_UP",
    "ROUND_DOWN",
    "ROUND_HALF_UP",
    "ROUND_HALF_DOWN",
    "ROUND_HALF_EVEN",
    "ROUND_05UP",
]
fast = settings(deadline=None)


def unit(currency: str) -> Fraction:
    """Value of one minor unit of ``currency``, in major units."""
    return Fraction(1, 10 ** minor_unit(currency))


class Priced(BaseModel):
    price: Money


class Fee(BaseModel):
    fee: NonNegativeMoney


# ---------------------------------------------------------------- currencies


@pytest.mark.parametrize(
    ("code", "places"),
    [("JPY", 0), ("KRW", 0), ("USD", 2), ("EUR", 2), ("KWD", 3), ("BHD", 3), ("CLF", 4)],
)
def test_minor_unit_comes_from_iso4217(code: str, places: int) -> None:
    assert minor_unit(code) == places
    assert check_currency(code) == code
    assert is_currency(code)


@pytest.mark.parametrize(
    "code", ["ABC", "usd", "Usd", "XAU", "XDR", "XXX", "US", "USDD", "", " USD"]
)
def test_unusable_currency_codes_are_rejected(code: str) -> None:
    assert not is_currency(code)
    with pytest.raises(MoneyError, match=r"currency|ISO 4217|minor unit"):
        check_currency(code)
    with pytest.raises(MoneyError):
        Money(D(1), code)


def test_non_string_currency_is_rejected() -> None:
    assert not is_currency(840)  # type: ignore[arg-type]
    with pytest.raises(MoneyError, match="3-letter"):
        check_currency(None)  # type: ignore[arg-type]


def test_rounding_is_bankers_rounding() -> None:
    assert ROUNDING == ROUND_HALF_EVEN


# ---------------------------------------------------------------- construction and rounding


def test_constructor_normalises_to_the_minor_unit_exponent() -> None:
    five = Money(D("5"), "USD")
    assert five.amount == D("5.00")
    assert five.amount.as_tuple().exponent == -2
    assert Money(5, "KWD").amount.as_tuple().exponent == -3
    assert Money(D("1E+2"), "USD").amount.as_tuple().exponent == -2
    assert Money(D("7.000"), "JPY").amount.as_tuple().exponent == 0
    assert str(Money(D("-0.00"), "USD")) == "0.00 USD"  # no negative zero


@pytest.mark.parametrize(
    ("amount", "currency"), [("1.5", "JPY"), ("1.234", "USD"), ("0.0001", "KWD"), ("0.5", "KRW")]
)
def test_constructor_never_rounds(amount: str, currency: str) -> None:
    places = minor_unit(currency)
    with pytest.raises(MoneyError, match=f"{currency} has {places} decimal places.*Money.of"):
        Money(D(amount), currency)


@pytest.mark.parametrize(
    ("text", "currency", "rounding", "expected"),
    [
        ("1.5", "JPY", ROUND_HALF_EVEN, "2"),
        ("2.5", "JPY", ROUND_HALF_EVEN, "2"),  # half to even, not up
        ("2.5", "JPY", ROUND_HALF_UP, "3"),
        ("-2.5", "JPY", ROUND_HALF_EVEN, "-2"),
        ("0.125", "USD", ROUND_HALF_EVEN, "0.12"),
        ("0.135", "USD", ROUND_HALF_EVEN, "0.14"),
        ("0.129", "USD", ROUND_DOWN, "0.12"),
        ("1.0005", "KWD", ROUND_HALF_EVEN, "1.000"),
        ("1.0015", "BHD", ROUND_HALF_EVEN, "1.002"),
        ("0.001", "USD", ROUND_UP, "0.01"),
        ("12", "EUR", ROUND_HALF_EVEN, "12.00"),
    ],
)
def test_of_rounds_with_the_given_mode(
    text: str, currency: str, rounding: str, expected: str
) -> None:
    money = Money.of(text, currency, rounding)
    assert money == Money(D(expected), currency)
    assert Money.of(D(text), currency, rounding) == money


def test_default_rounding_is_half_even() -> None:
    assert Money.of("2.5", "JPY") == Money(2, "JPY")
    assert quantize(D("0.125"), "USD") == D("0.12")


def test_unknown_rounding_mode_is_rejected() -> None:
    with pytest.raises(MoneyError, match="rounding"):
        Money.of("1", "USD", "HALF_UP")


@pytest.mark.parametrize(
    "make",
    [
        lambda: Money(1.5, "USD"),  # type: ignore[arg-type]
        lambda: Money.of(0.1, "USD"),  # type: ignore[arg-type]
        lambda: quantize(0.1, "USD"),  # type: ignore[arg-type]
        lambda: Money.from_minor(1.0, "USD"),  # type: ignore[arg-type]
        lambda: Money.of("1", "USD").times(1.5),  # type: ignore[arg-type]
        lambda: Money.of("1", "USD").allocate([0.5, 0.5]),  # type: ignore[list-item]
        lambda: FxSnapshot("USD", {"EUR": 0.9}, AS_OF, "ecb"),  # type: ignore[dict-item]
        lambda: Money(True, "USD"),  # bool is an int subclass, but not an amount
        lambda: Money("1.00", "USD"),  # type: ignore[arg-type]  # strings go through Money.of
    ],
)
def test_floats_and_other_non_decimals_are_rejected(make: Any) -> None:
    with pytest.raises(MoneyError):
        make()


def test_float_error_says_what_to_use() -> None:
    with pytest.raises(MoneyError, match=r"float amount 0\.1 USD.*Decimal"):
        Money.of(0.1, "USD")  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["NaN", "sNaN", "Infinity", "-Infinity"])
def test_non_finite_decimals_are_rejected(bad: str) -> None:
    with pytest.raises(MoneyError, match="finite"):
        Money(D(bad), "USD")
    with pytest.raises(MoneyError):
        Money.of(bad, "USD")
    with pytest.raises(MoneyError):
        quantize(D(bad), "USD")


@pytest.mark.parametrize(
    "text",
    ["inf", "nan", "1e3", "1E+2", " 1", "1 ", "1_000", "+1", ".5", "1.", "", "1,5", "\u0661"],
)
def test_of_accepts_only_plain_decimal_strings(text: str) -> None:
    with pytest.raises(MoneyError, match="plain decimal"):
        Money.of(text, "USD")


def test_magnitude_is_bounded() -> None:
    assert Money.of("999999999999999.99", "USD").minor_units == 99999999999999999
    for bad in [D(10) ** 15, -(D(10) ** 15), D("1E+30")]:
        with pytest.raises(MoneyError, match="absurd"):
            Money(bad, "USD")
    with pytest.raises(MoneyError, match="absurd"):  # rounds up onto the bound
        Money.of("999999999999999.995", "USD")
    with pytest.raises(MoneyError, match="absurd"):
        Money.from_minor(10**40, "JPY")
    most = Money.of("999999999999999.99", "USD")
    with pytest.raises(MoneyError, match="absurd"):
        most + Money.of("0.01", "USD")
    with pytest.raises(MoneyError, match="absurd"):
        -most - Money.of("0.01", "USD")


@pytest.mark.parametrize("currency", ["USD", "JPY", "KWD"])
def test_arithmetic_keeps_the_exponent_and_no_negative_zero(currency: str) -> None:
    one, zero = Money(1, currency), Money.zero(currency)
    results = [-zero, one - one, -one + one, abs(-zero), zero + zero, Money.from_minor(0, currency)]
    for result in results:
        assert result == zero
        assert result.amount.as_tuple() == Money(D("0"), currency).amount.as_tuple()
        assert not result.amount.is_signed()
    assert (one + one).amount.as_tuple() == Money(2, currency).amount.as_tuple()


def test_minor_units_round_trip() -> None:
    assert Money.of("12.34", "USD").minor_units == 1234
    assert Money.of("-12.34", "USD").minor_units == -1234
    assert Money(5, "JPY").minor_units == 5
    assert Money.of("1.234", "KWD").minor_units == 1234
    assert Money.from_minor(1234, "USD") == Money.of("12.34", "USD")
    assert Money.from_minor(7, "BHD").amount == D("0.007")
    with pytest.raises(MoneyError):
        Money.from_minor(True, "USD")


# ---------------------------------------------------------------- arithmetic


def test_arithmetic_and_comparison_within_one_currency() -> None:
    a, b = Money.of("10.50", "EUR"), Money.of("0.75", "EUR")
    assert a + b == Money.of("11.25", "EUR")
    assert a - b == Money.of("9.75", "EUR")
    assert b - a == Money.of("-9.75", "EUR")
    assert -a == Money.of("-10.50", "EUR")
    assert abs(-a) == a
    assert b < a and b <= a and a > b and a >= b and a <= a
    assert Money.zero("EUR") == Money.of("0", "EUR")
    assert not Money.zero("EUR") and Money.zero("EUR").is_zero()
    assert a and not a.is_zero()
    assert (b - a).is_negative() and not a.is_negative() and not Money.zero("EUR").is_negative()
    assert hash(Money.of("1", "USD")) == hash(Money(D("1.00"), "USD"))


def test_mixing_currencies_raises() -> None:
    usd, eur = Money.of("1", "USD"), Money.of("1", "EUR")
    ops: list[Callable[[], object]] = [
        lambda: usd + eur,
        lambda: usd - eur,
        lambda: usd < eur,
        lambda: usd <= eur,
        lambda: usd > eur,
        lambda: usd >= eur,
    ]
    for op in ops:
        with pytest.raises(MoneyError, match=r"1\.00 USD and 1\.00 EUR"):
            op()
    assert usd != eur  # equality is defined: different currencies are simply unequal


def test_no_implicit_arithmetic_with_numbers() -> None:
    usd = Money.of("1", "USD")
    with pytest.raises(TypeError):
        usd * 2  # type: ignore[operator]
    with pytest.raises(TypeError):
        usd + 1  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = usd < 1  # type: ignore[operator]


def test_times_rounds_the_exact_product_once() -> None:
    ten = Money.of("10.00", "USD")
    assert ten.times(D("0.125")) == Money.of("1.25", "USD")
    assert ten.times(D("0.3333")) == Money.of("3.33", "USD")
    assert ten.times(D("0.3333"), ROUND_UP) == Money.of("3.34", "USD")
    assert ten.times(3) == Money.of("30", "USD")
    assert Money(7, "JPY").times(D("0.5")) == Money(4, "JPY")  # 3.5 -> 4 (even)
    # 38 significant digits: rounding the product to 34 digits first would leave exactly
    # 0.005 and half-even would give 0.00; the exact product is just above half a cent.
    factor = D("0.005000000000000000000000000000000001")
    assert Money.of("1", "USD").times(factor) == Money.of("0.01", "USD")


# ---------------------------------------------------------------- allocation


@pytest.mark.parametrize(
    ("total", "currency", "ratios", "expected"),
    [
        ("100.00", "USD", [1, 1, 1], ["33.34", "33.33", "33.33"]),
        ("-100.00", "USD", [1, 1, 1], ["-33.34", "-33.33", "-33.33"]),
        ("1", "JPY", [1, 1, 1], ["1", "0", "0"]),
        ("2", "JPY", [1, 1, 1], ["1", "1", "0"]),
        ("1.01", "USD", [0, 1, 0, 1], ["0", "0.51", "0", "0.50"]),
        ("10.00", "EUR", [D("0.7"), D("0.3")], ["7.00", "3.00"]),
        ("0.010", "KWD", [3, 7], ["0.003", "0.007"]),
        ("0.005", "BHD", [1, 2], ["0.002", "0.003"]),  # shares 1.67, 3.33: .67 wins the unit
        ("0", "USD", [1, 2], ["0", "0"]),
    ],
)
def test_allocate_examples(
    total: str, currency: str, ratios: list[Decimal | int], expected: list[str]
) -> None:
    parts = Money.of(total, currency).allocate(ratios)
    assert parts == [Money(D(e), currency) for e in expected]


@pytest.mark.parametrize(
    "ratios",
    [[], [0, 0], [-1, 2], [D("NaN"), 1], [D("Infinity"), 1], [True, 1], ["1", 1]],
)
def test_allocate_rejects_bad_ratios(ratios: list[Any]) -> None:
    with pytest.raises(MoneyError, match="ratio"):
        Money.of("1", "USD").allocate(ratios)


# ---------------------------------------------------------------- JSON and str


def test_json_and_str() -> None:
    price = Money.of("123.45", "EUR")
    assert price.to_json() == {"amount": "123.45", "currency": "EUR"}
    assert str(price) == "123.45 EUR"
    assert Money(D("1E+2"), "USD").to_json()["amount"] == "100.00"  # never exponent notation
    assert Money(D("1E+3"), "JPY").to_json()["amount"] == "1000"
    assert Money.from_minor(1, "BHD").to_json()["amount"] == "0.001"
    assert Money.from_json({"amount": "12.30", "currency": "EUR"}) == Money.of("12.3", "EUR")


@pytest.mark.parametrize(
    "obj",
    [
        {"amount": 12.3, "currency": "EUR"},
        {"amount": 12, "currency": "EUR"},
        {"amount": "1.234", "currency": "USD"},
        {"amount": "1", "currency": "EUR", "note": "x"},
        {"amount": "1"},
        {"amount": "1", "currency": "eur"},
        {"amount": "NaN", "currency": "EUR"},
    ],
)
def test_from_json_rejects_bad_input(obj: dict[str, Any]) -> None:
    with pytest.raises(MoneyError):
        Money.from_json(obj)


# ---------------------------------------------------------------- pydantic


def test_pydantic_round_trip() -> None:
    model = Priced.model_validate_json('{"price": {"amount": "12.30", "currency": "EUR"}}')
    assert model.price == Money.of("12.30", "EUR")
    assert model.model_dump(mode="json") == {"price": {"amount": "12.30", "currency": "EUR"}}
    assert json.loads(model.model_dump_json()) == {"price": {"amount": "12.30", "currency": "EUR"}}
    assert Priced.model_validate_json(model.model_dump_json()) == model
    assert Priced.model_validate(model.model_dump()) == model  # Python mode: Decimal amount
    assert Priced(price=Money.of("1", "JPY")).price == Money(1, "JPY")
    assert Priced.model_validate({"price": {"amount": D("1.5"), "currency": "USD"}}).price == (
        Money.of("1.50", "USD")
    )


@pytest.mark.parametrize(
    ("price", "message"),
    [
        ('{"amount": 12.3, "currency": "EUR"}', "decimal string"),
        ('{"amount": 12, "currency": "EUR"}', "decimal string"),
        ('{"amount": "12.30", "currency": "EUR", "x": 1}', "Extra inputs"),
        ('{"amount": "1.234", "currency": "USD"}', "USD has 2 decimal places"),
        ('{"amount": "1.5", "currency": "JPY"}', "JPY has 0 decimal places"),
        ('{"amount": "NaN", "currency": "USD"}', "plain decimal"),
        ('{"amount": "Infinity", "currency": "USD"}', "plain decimal"),
        ('{"amount": "1e3", "currency": "USD"}', "plain decimal"),
        ('{"amount": "1", "currency": "ABC"}', "unknown currency"),
        ('{"amount": "1", "currency": "usd"}', "upper-case"),
        ('{"amount": "1", "currency": "XAU"}', "no minor unit"),
        ('{"amount": "1000000000000000", "currency": "USD"}', "absurd"),
        ('{"amount": "1"}', "Field required"),
        ('"12.30 EUR"', "object"),
    ],
)
def test_pydantic_rejects_bad_json(price: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as info:
        Priced.model_validate_json(f'{{"price": {price}}}')
    assert info.value.errors()[0]["loc"][0] == "price"


def test_pydantic_rejects_float_in_python_mode() -> None:
    with pytest.raises(ValidationError, match="decimal string"):
        Priced.model_validate({"price": {"amount": 12.3, "currency": "EUR"}})


def test_non_negative_money() -> None:
    assert Fee.model_validate_json('{"fee": {"amount": "0", "currency": "USD"}}').fee.is_zero()
    with pytest.raises(ValidationError, match="negative"):
        Fee.model_validate_json('{"fee": {"amount": "-0.01", "currency": "USD"}}')
    with pytest.raises(ValidationError, match="negative"):
        Fee(fee=Money.of("-1", "USD"))


def test_json_schema_describes_the_wire_format() -> None:
    schema = Priced.model_json_schema()["properties"]["price"]
    assert schema["type"] == "object"
    assert schema["required"] == ["amount", "currency"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["amount"]["type"] == "string"
    assert schema["properties"]["currency"]["pattern"] == "^[A-Z]{3}$"


# ---------------------------------------------------------------- FX


def snapshot(base: str = "USD", **rates: str) -> FxSnapshot:
    return FxSnapshot(base, {c: D(r) for c, r in rates.items()}, AS_OF, "ecb")


def test_direct_inverse_and_cross_rates() -> None:
    fx = snapshot(EUR="0.8", GBP="0.75", JPY="150")
    assert fx.rate("USD", "EUR") == D("0.8")
    assert fx.rate("EUR", "USD") == D("1.25")
    assert fx.rate("EUR", "JPY") == D("187.5")  # 150 / 0.8
    assert fx.rate("EUR", "GBP") == D("0.9375")  # 0.75 / 0.8
    assert fx.rate("JPY", "JPY") == D(1)
    assert fx.rate("KWD", "KWD") == D(1)  # same currency needs no quote
    # 1/150 to 34 significant digits, not rounded to any minor unit.
    assert fx.rate("JPY", "USD") == D("0.006666666666666666666666666666666667")


def test_convert_records_the_snapshot() -> None:
    fx = snapshot(EUR="0.92", JPY="150")
    conv = fx.convert(Money.of("100", "EUR"), "JPY")
    assert isinstance(conv, Conversion)
    assert conv.rate == D("163.0434782608695652173913043478261")  # 150 / 0.92
    assert conv.result == Money(16304, "JPY")  # 16304.347...
    assert conv.source == Money.of("100", "EUR")
    assert (conv.as_of, conv.fx_source) == (AS_OF, "ecb")
    assert fx.convert(Money.of("100", "EUR"), "JPY", ROUND_UP).result == Money(16305, "JPY")
    assert snapshot(KWD="0.30812").convert(Money.of("10", "USD"), "KWD").result == (
        Money(D("3.081"), "KWD")  # 3.0812 -> 3 decimals
    )
    assert fx.convert(Money.of("5", "EUR"), "EUR").result == Money.of("5", "EUR")


def test_missing_rate_names_currency_and_snapshot() -> None:
    fx = snapshot(EUR="0.9")
    with pytest.raises(FxRateMissing, match=r"GBP.*base=USD.*2025-03-01T12:00:00\+00:00.*ecb"):
        fx.rate("EUR", "GBP")
    with pytest.raises(MoneyError):
        fx.convert(Money.of("1", "GBP"), "USD")


@pytest.mark.parametrize(
    "make",
    [
        lambda: FxSnapshot("USD", {"EUR": D("0.9")}, datetime(2025, 1, 1), "ecb"),  # naive
        lambda: FxSnapshot("USD", {"EUR": D("0")}, AS_OF, "ecb"),
        lambda: FxSnapshot("USD", {"EUR": D("-1")}, AS_OF, "ecb"),
        lambda: FxSnapshot("USD", {"EUR": D("NaN")}, AS_OF, "ecb"),
        lambda: FxSnapshot("USD", {"EUR": D("Infinity")}, AS_OF, "ecb"),
        lambda: FxSnapshot("USD", {"eur": D("0.9")}, AS_OF, "ecb"),
        lambda: FxSnapshot("USD", {"XAU": D("0.9")}, AS_OF, "ecb"),
        lambda: FxSnapshot("USD", {"USD": D("2")}, AS_OF, "ecb"),
        lambda: FxSnapshot("usd", {"EUR": D("0.9")}, AS_OF, "ecb"),
        lambda: FxSnapshot("USD", {"EUR": D("0.9")}, AS_OF, ""),
    ],
)
def test_snapshot_validation(make: Any) -> None:
    with pytest.raises(MoneyError):
        make()


def test_snapshot_rates_are_an_immutable_copy() -> None:
    source = {"EUR": D("0.9")}
    fx = FxSnapshot("USD", source, datetime(2025, 1, 1, tzinfo=timezone(timedelta(hours=2))), "x")
    source["EUR"] = D("5")
    assert fx.rate("USD", "EUR") == D("0.9")
    with pytest.raises(TypeError):
        fx.rates["EUR"] = D("1")  # type: ignore[index]


def test_coarse_target_loses_value_within_the_round_trip_bound() -> None:
    # 1 EUR = 0.5 JPY makes one yen worth 2 EUR: 0.99 EUR -> 0.495 JPY -> 0 JPY -> 0 EUR. The
    # loss, 0.99 EUR, is within the bound u_A/2 + r' * u_B/2 = 0.005 + 2 * 0.5 = 1.005 EUR.
    fx = FxSnapshot("EUR", {"JPY": D("0.5")}, AS_OF, "test")
    there = fx.convert(Money.of("0.99", "EUR"), "JPY").result
    assert there == Money(0, "JPY")
    assert fx.convert(there, "EUR").result == Money.zero("EUR")


# ---------------------------------------------------------------- properties

currencies = st.sampled_from(CURRENCIES)


@st.composite
def monies(draw: st.DrawFn, currency: str | None = None, max_minor: int | None = None) -> Money:
    ccy = currency or draw(currencies)
    bound = max_minor if max_minor is not None else 10 ** (15 + minor_unit(ccy)) - 1
    return Money.from_minor(draw(st.integers(-bound, bound)), ccy)


ratio_values = st.one_of(
    st.integers(0, 1000),
    st.decimals(min_value=0, max_value=1000, places=4, allow_nan=False, allow_infinity=False),
)


@fast
@given(monies(), st.lists(ratio_values, min_size=1, max_size=8))
def test_allocation_is_exact_and_fair(money: Money, ratios: list[Decimal | int]) -> None:
    assume(any(r > 0 for r in ratios))
    parts = money.allocate(ratios)
    assert len(parts) == len(ratios)
    assert all(p.currency == money.currency for p in parts)
    assert sum((p.minor_units for p in parts), 0) == money.minor_units  # nothing lost or made
    whole = sum(Fraction(r) for r in ratios)
    for part, ratio in zip(parts, ratios, strict=True):
        exact_share = Fraction(money.minor_units) * Fraction(ratio) / whole
        assert abs(part.minor_units - exact_share) < 1  # within one minor unit
        if ratio == 0:
            assert part.is_zero()


def _allocate_by_fractions(money: Money, ratios: list[Decimal | int]) -> list[Money]:
    """The largest-remainder rule written with exact rationals, as the docstring states it."""
    weights = [Fraction(r) for r in ratios]
    total, whole = abs(money.minor_units), sum(weights)
    shares = [total * w / whole for w in weights]
    parts = [math.floor(s) for s in shares]
    order = sorted(range(len(shares)), key=lambda i: (parts[i] - shares[i], i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    sign = -1 if money.is_negative() else 1
    return [Money.from_minor(sign * p, money.currency) for p in parts]


time_decay_weights = st.decimals(
    min_value=Decimal("1e-12"), max_value=1, places=29, allow_nan=False, allow_infinity=False
)


@fast
@given(monies(), st.lists(st.one_of(ratio_values, time_decay_weights), min_size=1, max_size=8))
def test_allocation_follows_the_largest_remainder_rule(
    money: Money, ratios: list[Decimal | int]
) -> None:
    """Integer arithmetic gives the same parts, ties included, as the rule in rationals."""
    assume(any(r > 0 for r in ratios))
    parts = money.allocate(ratios)
    assert parts == _allocate_by_fractions(money, ratios)
    assert all(p.amount.as_tuple().exponent == -minor_unit(money.currency) for p in parts)


amounts = st.decimals(min_value=-(10**14), max_value=10**14, allow_nan=False, allow_infinity=False)


@fast
@given(amounts, currencies, st.sampled_from(ALL_ROUNDINGS))
def test_quantize_is_idempotent_and_close(amount: Decimal, currency: str, rounding: str) -> None:
    once = quantize(amount, currency, rounding)
    assert quantize(once, currency, rounding) == once
    assert once.as_tuple().exponent == -minor_unit(currency)
    error = abs(Fraction(once) - Fraction(amount))
    assert error < unit(currency)
    if rounding == ROUND_HALF_EVEN:
        assert error <= unit(currency) / 2


@fast
@given(amounts, currencies)
def test_of_gives_exactly_minor_unit_decimals(amount: Decimal, currency: str) -> None:
    from_decimal = Money.of(amount, currency)
    assert from_decimal.amount.as_tuple().exponent == -minor_unit(currency)
    assert Money.of(f"{amount:f}", currency) == from_decimal


@fast
@given(monies())
def test_json_round_trips(money: Money) -> None:
    assert Money.from_json(money.to_json()) == money
    assert Money.from_json(json.loads(json.dumps(money.to_json()))) == money
    assert Priced.model_validate_json(Priced(price=money).model_dump_json()).price == money
    assert D(money.to_json()["amount"]) == money.amount


@fast
@given(currencies.flatmap(lambda c: st.tuples(monies(c), monies(c))))
def test_arithmetic_and_order_agree_with_decimal(pair: tuple[Money, Money]) -> None:
    a, b = pair
    assert (a < b) == (a.amount < b.amount)
    assert (a <= b) == (a.amount <= b.amount)
    assert (a > b) == (a.amount > b.amount)
    assert (a >= b) == (a.amount >= b.amount)
    assert (a == b) == (a.amount == b.amount)
    negated = -a
    assert -negated == a and abs(a).amount == abs(a.amount) and bool(a) == bool(a.amount)
    if abs(a.amount + b.amount) < 10**15:
        assert (a + b).amount == a.amount + b.amount
        assert (a + b) - b == a
    if abs(a.amount - b.amount) < 10**15:
        assert (a - b).amount == a.amount - b.amount
        assert a - b == -(b - a)


# Round trip A -> B -> A through a snapshot with base A and one exact rate r (B per A):
#   b  = round_B(a * r)        |b - a*r|   <= u_B / 2          (half-even, exact product)
#   r' = 1/r to 34 digits      |r*r' - 1|  <= 5e-34             (relative rounding error)
#   a2 = round_A(b * r')       |a2 - b*r'| <= u_A / 2
# and b*r' - a = (b - a*r) * r' + a * (r*r' - 1), so
#   |a2 - a| <= u_A/2 + r' * u_B/2 + |a| * 5e-34.
# With |a| <= 1e8 the last term is below 1e-25; TINY = 1e-24 covers it.
#
# If one B minor unit is worth at most one A minor unit (u_B / r <= u_A) the round trip is
# exact, which is stronger than "within one minor unit":
# * u_B / r == u_A: a*r is a whole number of B units, so b = a*r and b*r' is within 1e-25 of a;
# * u_B / r <  u_A: |b*r' - a| <= u_B/(2r) + 1e-25 < u_A / 2, because the gap u_A - u_B/r is a
#   nonzero multiple of 1e-10 (r = p * 10**-k, k <= 6, minor units >= 1e-4) divided by
#   r <= 1e6, so at least 1e-16. A grid point within less than u_A/2 is the nearest, so a2 = a.
TINY = Fraction(1, 10**24)
rates = st.builds(lambda p, k: D(p).scaleb(-k), st.integers(1, 10**6), st.integers(0, 6))
pairs = st.tuples(currencies, currencies).filter(lambda ab: ab[0] != ab[1])


def round_trip(money: Money, b_ccy: str, rate: Decimal) -> tuple[Money, Decimal]:
    """Convert A -> B -> A with a base-A snapshot; return the result and the back rate r'."""
    fx = FxSnapshot(money.currency, {b_ccy: rate}, AS_OF, "test")
    there = fx.convert(money, b_ccy)
    assert there.rate == rate
    back = fx.convert(there.result, money.currency)
    return back.result, back.rate


@fast
@given(pairs, rates, st.data())
def test_round_trip_error_is_bounded(pair: tuple[str, str], rate: Decimal, data: Any) -> None:
    a_ccy, b_ccy = pair
    money = data.draw(monies(a_ccy, max_minor=10 ** (8 + minor_unit(a_ccy))))
    back, back_rate = round_trip(money, b_ccy, rate)
    error = abs(Fraction(back.amount) - Fraction(money.amount))
    assert error <= unit(a_ccy) / 2 + Fraction(back_rate) * unit(b_ccy) / 2 + TINY


@fast
@given(pairs, rates, st.data())
def test_round_trip_through_a_finer_currency_is_exact(
    pair: tuple[str, str], rate: Decimal, data: Any
) -> None:
    a_ccy, b_ccy = pair
    assume(unit(b_ccy) / Fraction(rate) <= unit(a_ccy))  # one B unit is worth <= one A unit
    money = data.draw(monies(a_ccy, max_minor=10 ** (8 + minor_unit(a_ccy))))
    assert round_trip(money, b_ccy, rate)[0] == money


def test_an_absurd_amount_is_named_short() -> None:
    """A 400-digit amount quoted whole would bury the reason in a dead letter."""
    with pytest.raises(MoneyError) as refused:
        Money.of("1" * 400 + ".00", "USD")
    assert (
        str(refused.value) == "absurd amount 1.111111e+399 USD: must be below 10**15 in magnitude"
    )
