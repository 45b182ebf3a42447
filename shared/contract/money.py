"""Money and FX rules: the one place where amounts are created, rounded, split and converted.

* An amount is a :class:`~decimal.Decimal` held in :class:`Money` with its ISO 4217 currency
  code, quantised to the currency's minor unit (JPY 0 decimals, USD 2, KWD and BHD 3). Floats
  are refused everywhere: binary floats cannot hold most decimal amounts exactly.
* Rounding happens only where the caller asks for it (``Money.of``, ``quantize``, ``times``,
  ``allocate``, ``FxSnapshot.convert``) and defaults to :data:`ROUNDING`.
* Every conversion returns a :class:`Conversion` recording the rate, snapshot time and source.
* On the wire (JSON, events, HTTP) money is ``{"amount": "123.45", "currency": "EUR"}``, the
  amount being a decimal *string*.
"""

from __future__ import annotations

import decimal
import functools
import math
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final

from iso4217 import Currency
from pydantic import AfterValidator, GetCoreSchemaHandler, GetJsonSchemaHandler, WithJsonSchema
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

# Banker's rounding: a half goes to the even neighbour, so over many payouts the rounding
# errors cancel out on average instead of always favouring one side as ROUND_HALF_UP does.
ROUNDING: Final[str] = decimal.ROUND_HALF_EVEN

# Exclusive bound on abs(amount) in major units. Nothing real comes near it; anything at or
# above it is a unit mix-up or garbage, and the bound keeps every amount within 19 digits.
MAX_ABS_AMOUNT: Final = Decimal(10) ** 15

# The textual amount format accepted from strings and JSON: digits, optional '-' and fraction.
# No exponents, spaces, '_' separators or non-ASCII digits (all of which Decimal() would take).
AMOUNT_PATTERN: Final = r"^-?[0-9]+(\.[0-9]+)?$"
_AMOUNT_TEXT: Final = re.compile(AMOUNT_PATTERN)
_CODE: Final = re.compile(r"[A-Z]{3}")
# Codes check_currency has accepted (bounded by ISO 4217): amounts are made in hot loops, and
# a set lookup is cheaper than the pattern and the table each time.
_ACCEPTED: Final[set[str]] = set()
_ROUNDING_MODES: Final = frozenset(
    getattr(decimal, n) for n in dir(decimal) if n.startswith("ROUND_")
)

# Private arithmetic context, so results never depend on the precision or traps a caller set
# on its thread. 34 digits (decimal128) holds any in-bound amount exactly and gives FX rates
# far more precision than any minor unit needs.
_CTX: Final = decimal.Context(
    prec=34,
    rounding=ROUNDING,
    Emax=decimal.MAX_EMAX,
    Emin=decimal.MIN_EMIN,
    traps=[decimal.InvalidOperation, decimal.DivisionByZero, decimal.Overflow],
)


class MoneyError(ValueError):
    """An invalid amount, currency, ratio, rate or operation; the message says what is allowed."""


class FxRateMissing(MoneyError):
    """The FX snapshot has no rate for a currency that a conversion needs."""


def check_currency(code: str) -> str:
    """Return ``code`` if it is an ISO 4217 code usable for money, else raise MoneyError.

    Codes are exactly three upper-case letters; 'usd' is an error, not silently upper-cased.
    Codes without a minor unit (XAU gold, XDR, XXX, ...) are not money and are refused.
    """
    if type(code) is str and code in _ACCEPTED:
        return code
    if not isinstance(code, str) or not _CODE.fullmatch(code):
        raise MoneyError(
            f"currency must be a 3-letter upper-case ISO 4217 code like 'USD', got {code!r}"
        )
    _exponent(code)
    if type(code) is str:
        _ACCEPTED.add(code)
    return code


def is_currency(code: str) -> bool:
    """True if ``code`` passes :func:`check_currency`."""
    try:
        check_currency(code)
    except MoneyError:
        return False
    return True


def minor_unit(currency: str) -> int:
    """Number of decimal places of ``currency``'s minor unit (ISO 4217 exponent: JPY 0, USD 2)."""
    return _exponent(check_currency(currency))


@functools.cache
def _exponent(code: str) -> int:
    # Only valid codes are cached (exceptions are not), so the cache is bounded by ISO 4217.
    try:
        exponent = Currency(code).exponent
    except ValueError:
        raise MoneyError(f"unknown currency {code!r}: not an ISO 4217 code") from None
    if exponent is None:
        raise MoneyError(
            f"{code} has no minor unit in ISO 4217 (metal, fund or test code) and cannot hold money"
        )
    return int(exponent)


@functools.cache
def _quantum(currency: str) -> Decimal:
    return Decimal((0, (1,), -minor_unit(currency)))  # e.g. Decimal("0.01") for USD


def _to_decimal(value: object, currency: str, *, parse_str: bool) -> Decimal:
    """Accept Decimal and int (and decimal strings if ``parse_str``); never float or bool."""
    where = f" {currency}" if currency else ""
    allowed = "a Decimal, an int or a decimal string" if parse_str else "a Decimal or an int"
    if isinstance(value, float):
        raise MoneyError(
            f"float amount {value!r}{where} refused (floats are inexact): use {allowed}"
        )
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str) and parse_str:
        if not _AMOUNT_TEXT.fullmatch(value):
            raise MoneyError(f"amount {value!r}{where} is not a plain decimal like '-12.30'")
        return Decimal(value)
    if not isinstance(value, Decimal):
        raise MoneyError(f"amount must be {allowed}, got {type(value).__name__} {value!r}")
    if not value.is_finite():
        raise MoneyError(f"amount {value}{where} refused: must be a finite number")
    return value


def quantize(amount: Decimal | int, currency: str, rounding: str = ROUNDING) -> Decimal:
    """Round ``amount`` (major units of ``currency``) to the currency's minor unit.

    Uses ``rounding`` (a ``decimal.ROUND_*`` mode, default :data:`ROUNDING`). Idempotent.
    Negative zero becomes zero. Raises MoneyError if abs(amount) >= :data:`MAX_ABS_AMOUNT`.
    """
    value = _to_decimal(amount, currency, parse_str=False)
    if rounding not in _ROUNDING_MODES:
        raise MoneyError(f"unknown rounding {rounding!r}; use one of {sorted(_ROUNDING_MODES)}")
    return _rounded(value, check_currency(currency), rounding)


def _rounded(value: Decimal, currency: str, rounding: str) -> Decimal:
    """`quantize` of a finite Decimal in a checked currency with a known rounding mode."""
    _check_bound(value, currency)
    rounded = value.quantize(_quantum(currency), rounding=rounding, context=_CTX)
    return rounded if rounded else rounded.copy_abs()


def _check_bound(value: Decimal, currency: str) -> None:
    if value.copy_abs() >= MAX_ABS_AMOUNT:  # copy_abs is exact; abs() rounds to the context
        # Sci notation for a long one: a 400-digit amount quoted whole buries the reason.
        shown = value if len(str(value)) <= 40 else f"{value:.6e}"
        raise MoneyError(f"absurd amount {shown} {currency}: must be below 10**15 in magnitude")


def _exact_product(a: Decimal, b: Decimal) -> Decimal:
    # Enough digits for the full product, so the only rounding is the explicit final one.
    ctx = _CTX.copy()
    ctx.prec = len(a.as_tuple().digits) + len(b.as_tuple().digits)
    return ctx.multiply(a, b)


def _inexact(amount: Decimal, currency: str) -> str:
    places = minor_unit(currency)
    return f"{amount} is not an exact {currency} amount: {currency} has {places} decimal places"


def _fail(exc: MoneyError) -> PydanticCustomError:
    return PydanticCustomError("money", "{reason}", {"reason": str(exc)})


@dataclass(frozen=True, slots=True, init=False)
class Money:
    """An exact amount of one currency.

    ``amount`` is in major units (euros, yen, dinars) and is stored with exactly the currency's
    minor-unit exponent (``Decimal("5.00")`` for USD, ``Decimal("5")`` for JPY). The constructor
    accepts Decimal or int and never rounds; :meth:`of` rounds explicitly.
    """

    amount: Decimal
    currency: str

    # A hand-written __init__ (rather than __post_init__) so type checkers accept int amounts
    # while ``amount`` itself stays typed as Decimal.
    def __init__(self, amount: Decimal | int, currency: str) -> None:
        currency = check_currency(currency)
        amount = _to_decimal(amount, currency, parse_str=False)
        exact = _rounded(amount, currency, ROUNDING)
        if exact != amount:
            raise MoneyError(
                f"{_inexact(amount, currency)}; round explicitly with Money.of(amount, currency)"
            )
        object.__setattr__(self, "amount", exact)
        object.__setattr__(self, "currency", currency)

    @classmethod
    def of(cls, amount: Decimal | int | str, currency: str, rounding: str = ROUNDING) -> Money:
        """Parse ``amount`` (Decimal, int or decimal string) and round it to the minor unit."""
        return cls(
            quantize(_to_decimal(amount, currency, parse_str=True), currency, rounding), currency
        )

    @classmethod
    def _exact(cls, amount: Decimal, currency: str) -> Money:
        """Money from an amount already exact in a checked currency, within the bound, and
        never negative zero: what arithmetic on Money gives, so it is not checked again."""
        money = object.__new__(cls)
        object.__setattr__(money, "amount", amount)
        object.__setattr__(money, "currency", currency)
        return money

    @classmethod
    def zero(cls, currency: str) -> Money:
        """Zero in ``currency`` (``0.00 USD``)."""
        return _zero(check_currency(currency))

    @classmethod
    def from_minor(cls, units: int, currency: str) -> Money:
        """Money from a whole number of minor units (cents, fils, yen): 1234 USD -> 12.34 USD."""
        if isinstance(units, bool) or not isinstance(units, int):
            raise MoneyError(f"minor units must be an int, got {type(units).__name__} {units!r}")
        return _from_minor(units, check_currency(currency))

    @property
    def minor_units(self) -> int:
        """The amount as a whole number of minor units: 12.34 USD -> 1234."""
        return int(self.amount.scaleb(minor_unit(self.currency), context=_CTX))

    def _same(self, other: Money, verb: str) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot {verb} Money and {type(other).__name__}")
        if self.currency != other.currency:
            raise MoneyError(f"cannot {verb} {self} and {other}: convert through an FxSnapshot")

    # Sums and differences of exact amounts with the same exponent are exact, with that
    # exponent (34 digits hold any of them), and never negative zero under half-even; only
    # the bound can be broken.
    def __add__(self, other: Money) -> Money:
        self._same(other, "add")
        total = _CTX.add(self.amount, other.amount)
        _check_bound(total, self.currency)
        return Money._exact(total, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other, "subtract")
        difference = _CTX.subtract(self.amount, other.amount)
        _check_bound(difference, self.currency)
        return Money._exact(difference, self.currency)

    def __neg__(self) -> Money:
        return Money._exact(
            self.amount.copy_negate() if self.amount else self.amount, self.currency
        )

    def __abs__(self) -> Money:
        return Money._exact(self.amount.copy_abs(), self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other, "compare")
        return self.amount >= other.amount

    def __bool__(self) -> bool:
        return not self.is_zero()

    def is_zero(self) -> bool:
        return self.amount.is_zero()

    def is_negative(self) -> bool:
        return self.amount < 0

    def times(self, factor: Decimal | int, rounding: str = ROUNDING) -> Money:
        """Multiply by an exact ``factor``; the product is rounded once to the minor unit."""
        exact = _exact_product(self.amount, _to_decimal(factor, self.currency, parse_str=False))
        return Money(quantize(exact, self.currency, rounding), self.currency)

    def allocate(self, ratios: Sequence[Decimal | int]) -> list[Money]:
        """Split into parts proportional to non-negative ``ratios`` that sum exactly to self.

        Largest-remainder method in whole minor units: each part gets the floor of its exact
        share, then the units left over go one each to the largest fractional remainders (ties:
        lowest index first). So every part is within one minor unit of its exact share, a zero
        ratio gets zero, and nothing is lost or created. Negative amounts are split by absolute
        value and negated.
        """
        weights = _whole_weights([_ratio(r, i) for i, r in enumerate(ratios)])
        whole = sum(weights)
        if not whole:
            raise MoneyError(f"allocate needs at least one positive ratio, got {list(ratios)}")
        if len(weights) == 1:
            return [self]  # the whole to the only share
        total = abs(self.minor_units)
        # Share i is total * w_i / whole minor units: its floor and remainder, in integers.
        shares = [divmod(total * w, whole) for w in weights]
        parts = [floor for floor, _ in shares]
        remainders = [remainder for _, remainder in shares]
        # The largest remainders (ties: lowest index) get the units left over.
        order = sorted(range(len(parts)), key=lambda i: (-remainders[i], i))
        for i in order[: total - sum(parts)]:
            parts[i] += 1
        sign = -1 if self.is_negative() else 1
        return [_from_minor(sign * p, self.currency) for p in parts]

    def to_json(self) -> dict[str, str]:
        """``{"amount": "123.45", "currency": "EUR"}``: plain digits, minor-unit decimals."""
        return {"amount": f"{self.amount:f}", "currency": self.currency}

    @classmethod
    def from_json(cls, obj: Mapping[str, object]) -> Money:
        """Inverse of :meth:`to_json`; the amount must be a decimal string exact in the currency."""
        if not isinstance(obj, Mapping) or set(obj) != {"amount", "currency"}:
            raise MoneyError(
                f"money JSON must have exactly the keys 'amount' and 'currency': {obj!r}"
            )
        currency, amount = obj["currency"], obj["amount"]
        if not isinstance(currency, str):
            raise MoneyError(f"currency must be a string, got {currency!r}")
        if not isinstance(amount, str):
            raise MoneyError(f"amount must be a decimal string like '12.30', got {amount!r}")
        return cls(_to_decimal(amount, currency, parse_str=True), currency)

    def __str__(self) -> str:
        return f"{self.amount:f} {self.currency}"

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        fields = core_schema.typed_dict_schema(
            {
                "amount": core_schema.typed_dict_field(
                    core_schema.no_info_plain_validator_function(_wire_amount)
                ),
                "currency": core_schema.typed_dict_field(
                    core_schema.no_info_plain_validator_function(_wire_currency)
                ),
            },
            extra_behavior="forbid",
        )
        return core_schema.no_info_wrap_validator_function(
            _validate_money,
            core_schema.chain_schema(
                [fields, core_schema.no_info_plain_validator_function(_money_from_fields)]
            ),
            # JSON mode gives the wire dict of strings; Python-mode model_dump() gives the same
            # keys with the Decimal amount, like any nested model. Both validate back to Money.
            serialization=core_schema.plain_serializer_function_ser_schema(
                _serialize_money, info_arg=True
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return _money_json_schema("Money", AMOUNT_PATTERN)


def _money_json_schema(title: str, amount_pattern: str) -> JsonSchemaValue:
    return {
        "title": title,
        "description": "Amount in major units as a decimal string, with the ISO 4217 code.",
        "type": "object",
        "properties": {
            "amount": {"type": "string", "pattern": amount_pattern, "examples": ["123.45"]},
            "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["EUR"]},
        },
        "required": ["amount", "currency"],
        "additionalProperties": False,
    }


def _whole_weights(ratios: Sequence[Decimal]) -> list[int]:
    """Non-negative finite `ratios` as integers in the same proportions: each times the
    common denominator of their exact fractions (a power of ten at most)."""
    fractions = [r.as_integer_ratio() for r in ratios]
    common = math.lcm(*(d for _, d in fractions))
    return [n * (common // d) for n, d in fractions]


@functools.cache
def _zero(currency: str) -> Money:
    return Money._exact(Decimal(0).scaleb(-_exponent(currency)), currency)


def _from_minor(units: int, currency: str) -> Money:
    """Money of `units` minor units of a checked currency."""
    amount = Decimal(units).scaleb(-_exponent(currency), context=_CTX)
    _check_bound(amount, currency)
    return Money._exact(amount, currency)


def _ratio(value: object, index: int) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise MoneyError(f"ratio #{index} must be a Decimal or int, got {value!r}")
    ratio = Decimal(value)
    if not ratio.is_finite() or ratio < 0:
        raise MoneyError(f"ratio #{index} must be finite and >= 0, got {value}")
    return ratio


def _wire_amount(value: object) -> Decimal:
    if not isinstance(value, str | Decimal):  # a Decimal can only come from Python-mode input
        raise PydanticCustomError(
            "money_amount_type",
            'amount must be sent as a decimal string such as "12.30", not a number '
            "(JSON numbers are binary floats and lose precision)",
        )
    try:
        return _to_decimal(value, "", parse_str=True)
    except MoneyError as exc:
        raise _fail(exc) from None


def _wire_currency(value: object) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("money_currency_type", 'currency must be a string like "EUR"')
    try:
        return check_currency(value)
    except MoneyError as exc:
        raise _fail(exc) from None


def _money_from_fields(fields: dict[str, Any]) -> Money:
    amount, currency = fields["amount"], fields["currency"]
    try:
        if quantize(amount, currency) != amount:
            raise MoneyError(_inexact(amount, currency))
        return Money(amount, currency)
    except MoneyError as exc:
        raise _fail(exc) from None


def _validate_money(value: Any, handler: core_schema.ValidatorFunctionWrapHandler) -> Money:
    if isinstance(value, Money):
        return value
    money: Money = handler(value)
    return money


def _serialize_money(money: Money, info: core_schema.SerializationInfo) -> dict[str, object]:
    if info.mode_is_json():
        return dict(money.to_json())
    return {"amount": money.amount, "currency": money.currency}


def _non_negative(money: Money) -> Money:
    if money.is_negative():
        raise MoneyError(f"{money} is negative; this amount must be zero or more")
    return money


NonNegativeMoney = Annotated[
    Money,
    AfterValidator(_non_negative),
    # Its schema says so too: a validator generated from the AsyncAPI documents refuses "-5".
    WithJsonSchema(_money_json_schema("NonNegativeMoney", r"^[0-9]+(\.[0-9]+)?$")),
]
"""A Money field that refuses negative amounts (fees, budgets, order amounts)."""


@dataclass(frozen=True, slots=True)
class Conversion:
    """Record of one conversion: ``result = quantize(source.amount * rate)`` at ``as_of``."""

    source: Money
    result: Money
    rate: Decimal  # units of result.currency per 1 unit of source.currency, unrounded
    as_of: datetime
    fx_source: str


@dataclass(frozen=True)
class FxSnapshot:
    """FX rates valid at ``as_of`` from ``source`` (e.g. "ecb"), quoted against ``base``.

    ``rates[c]`` is units of ``c`` per 1 unit of ``base``; the base itself is implicitly 1.
    Rates are positive finite Decimals, stored in a read-only copy.
    """

    base: str
    rates: Mapping[str, Decimal] = field(hash=False)
    as_of: datetime
    source: str
    # Why the snapshot must not be used for money (shared.runtime.fx_moves), None when trusted.
    suspect: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        check_currency(self.base)
        if not isinstance(self.as_of, datetime) or self.as_of.utcoffset() is None:
            raise MoneyError(f"FX snapshot as_of must be a timezone-aware datetime: {self.as_of!r}")
        if not isinstance(self.source, str) or not self.source.strip():
            raise MoneyError("FX snapshot source must name where the rates came from")
        rates: dict[str, Decimal] = {}
        for code, raw in dict(self.rates).items():
            check_currency(code)
            rate = _to_decimal(raw, code, parse_str=False)
            if rate <= 0:
                raise MoneyError(f"FX rate for {code} must be positive, got {rate}")
            if code == self.base and rate != 1:
                raise MoneyError(f"FX rate of the base {code} must be 1, got {rate}")
            rates[code] = rate
        rates.pop(self.base, None)
        object.__setattr__(self, "rates", types.MappingProxyType(rates))

    def _per_base(self, currency: str) -> Decimal:
        if currency == self.base:
            return Decimal(1)
        try:
            return self.rates[currency]
        except KeyError:
            raise FxRateMissing(
                f"no {currency} rate in FX snapshot base={self.base} "
                f"as_of={self.as_of.isoformat()} source={self.source}"
            ) from None

    def rate(self, from_ccy: str, to_ccy: str) -> Decimal:
        """Units of ``to_ccy`` per 1 unit of ``from_ccy``: direct, inverse or cross via the base.

        Computed to 34 significant digits and deliberately not rounded to any minor unit.
        """
        check_currency(from_ccy)
        check_currency(to_ccy)
        if from_ccy == to_ccy:
            return Decimal(1)
        with decimal.localcontext(_CTX) as ctx:
            return ctx.divide(self._per_base(to_ccy), self._per_base(from_ccy))

    def convert(self, money: Money, to_ccy: str, rounding: str = ROUNDING) -> Conversion:
        """Convert ``money`` to ``to_ccy``, rounding once to its minor unit with ``rounding``."""
        rate = self.rate(money.currency, to_ccy)
        result = Money._exact(
            quantize(_exact_product(money.amount, rate), to_ccy, rounding), to_ccy
        )
        return Conversion(money, result, rate, self.as_of, self.source)


# Significant digits of a rate as statements, pages, reports and the CLI show it. A rate between two
# currencies quoted against a third is a quotient of 30 or more digits; the amount shown
# beside it was converted at that full rate, which payout.sent's `fx_rate` carries.
SHOWN_RATE_DIGITS = 10


def shown_rate(rate: Decimal) -> str:
    """`rate` to `SHOWN_RATE_DIGITS` significant digits (half-even), without trailing zeros or
    an exponent: 0.8572978838849701573521432447097124 -> 0.8572978839, 151.3200 -> 151.32."""
    if not rate:
        return "0"
    places = rate.adjusted() - SHOWN_RATE_DIGITS + 1
    if places < 0:
        rate = rate.quantize(Decimal(1).scaleb(places), rounding=ROUNDING)
    text = f"{rate:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
