"""Reusable constrained field types of the event contract.

Each type validates the same way from JSON and from Python objects, so an event built in
code obeys exactly the rules a consumer enforces on the wire. Numbers that must stay exact
(rates, ratios) travel as decimal strings, like money; floats are only used for estimates
(shares, averages, scores) and are always finite.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Final, TypeVar

import pycountry
from pycountry.db import Database
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    PlainSerializer,
    StringConstraints,
    WithJsonSchema,
)

from shared.contract.events.vocabulary import AgeBucket
from shared.contract.money import check_currency

MAX_COUNT: Final = 10**12
SHARE_SUM_TOLERANCE: Final = 1e-6

MAX_TOPICS: Final = 50
MAX_TAGS: Final = 100
MAX_KEYWORDS: Final = 100
MAX_PROMO_CODES: Final = 50
MAX_DELIVERABLES: Final = 50
MAX_SUGGESTIONS: Final = 500
MAX_EXCLUDED_CREATORS: Final = 10_000
MAX_TARGET_COUNTRIES: Final = 250
MAX_MAP_ENTRIES: Final = 300

_T = TypeVar("_T")


# Checked by pydantic-core's own regex engine, not by a Python function per string: an answer
# of 24 x 50 suggestions holds ~20k strings. Unicode category Cc is exactly U+0000-U+001F and
# U+007F-U+009F (fixed by Unicode's stability policy); WHITESPACE lists every character for
# which str.isspace() is true outside Cc, spelled out so that JSON Schema's regex dialect
# reads the pattern the same way.
_CC: Final = r"\x00-\x1f\x7f-\x9f"
_WHITESPACE: Final = r"\x20\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
NO_CONTROL: Final = rf"^[^{_CC}]*$"
NO_CONTROL_EXCEPT_LINE_BREAKS: Final = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
NO_WHITESPACE_OR_CONTROL: Final = rf"^[^{_CC}{_WHITESPACE}]*$"
PATTERN_MESSAGES: Final = {
    NO_CONTROL: "must not contain control characters (newlines, tabs, NUL, ...)",
    NO_CONTROL_EXCEPT_LINE_BREAKS: "must not contain control characters other than newline and tab",
    NO_WHITESPACE_OR_CONTROL: "must not contain whitespace or control characters",
}
"""What a text that breaks one of these patterns is told (the codec's reasons)."""


Id = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=128, pattern=NO_WHITESPACE_OR_CONTROL),
]
"""An identifier: 1-128 characters, no whitespace or control characters."""

PromoCode = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=64, pattern=NO_WHITESPACE_OR_CONTROL),
]
"""A promo code exactly as the shop reports it (case is kept): 1-64 characters, no spaces."""

ShortText = Annotated[str, StringConstraints(strict=True, max_length=200, pattern=NO_CONTROL)]
"""One line of text, at most 200 characters."""

Name = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=200, pattern=NO_CONTROL)
]
"""A non-empty ShortText (handles, model versions, feed names)."""

LongText = Annotated[
    str, StringConstraints(strict=True, max_length=5000, pattern=NO_CONTROL_EXCEPT_LINE_BREAKS)
]
"""Free text (bios, captions, descriptions), at most 5000 characters; newlines allowed."""

VisitorId = Annotated[
    str,
    StringConstraints(strict=True, pattern=r"^[0-9a-f]{64}$"),
    WithJsonSchema({"type": "string", "pattern": "^[0-9a-f]{64}$"}),
]
"""A visitor, hashed by the sender: 64 lower-case hex digits (e.g. SHA-256 of a salted cookie
id). CreatorFlow never receives the raw identifier, only compares hashes for equality."""

Referrer = Annotated[
    str,
    StringConstraints(strict=True, min_length=1, max_length=2048, pattern=NO_WHITESPACE_OR_CONTROL),
]
"""Where a visitor came from (a URL or a host), at most 2048 characters, no whitespace."""

Tag = Annotated[
    str, StringConstraints(strict=True, min_length=1, max_length=100, pattern=NO_CONTROL)
]
"""A topic, hashtag, keyword, flag or reason code: 1-100 characters."""


def _two_letter_code_check(
    standard: str, what: str, registry: Database[Any], *, upper: bool, example: str
) -> Callable[[str], str]:
    """A check for a two-letter ISO code: countries and languages follow the same two steps,
    the letters' case first (its error shows the expected form), then the ISO list itself."""
    case = "an upper-case" if upper else "a lower-case"

    def check(code: str) -> str:
        right_case = code.isupper() if upper else code.islower()
        if not (len(code) == 2 and code.isascii() and code.isalpha() and right_case):
            raise ValueError(f"{code!r} is not {case} {standard} code such as {example!r}")
        if registry.get(alpha_2=code) is None:
            raise ValueError(f"{code!r} is not an {standard} {what} code")
        return code

    return check


_check_country = _two_letter_code_check(
    "ISO 3166-1 alpha-2", "country", pycountry.countries, upper=True, example="US"
)
_check_language = _two_letter_code_check(
    "ISO 639-1", "language", pycountry.languages, upper=False, example="en"
)


CountryCode = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(_check_country),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{2}$", "examples": ["US", "DE"]}),
]
"""ISO 3166-1 alpha-2 country code, upper case."""

LanguageCode = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(_check_language),
    WithJsonSchema({"type": "string", "pattern": "^[a-z]{2}$", "examples": ["en", "de"]}),
]
"""ISO 639-1 language code, lower case."""

CurrencyCode = Annotated[
    str,
    StringConstraints(strict=True),
    AfterValidator(check_currency),
    WithJsonSchema({"type": "string", "pattern": "^[A-Z]{3}$", "examples": ["USD", "EUR"]}),
]
"""ISO 4217 currency code of a currency you can pay in, upper case."""


def _require_text_timestamp(value: object) -> object:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        # Said here: the parser's own words for a minute 60 are "unexpected extra characters".
        try:
            datetime.fromisoformat(value.upper())  # RFC 3339 allows a lower-case t and z
        except ValueError:
            raise ValueError(
                f"{value[:40]!r} is not an RFC 3339 timestamp such as '2025-01-31T12:00:00Z' "
                "(a date, 'T', a time within the day, a zone)"
            ) from None
        return value
    raise ValueError("must be an RFC 3339 timestamp string such as '2025-01-31T12:00:00Z'")


def _to_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("timestamp has no time zone; add 'Z' or an offset such as '+02:00'")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError(
            "timestamp is out of range once converted to UTC (after year 9999)"
        ) from None


UtcDatetime = Annotated[datetime, BeforeValidator(_require_text_timestamp), AfterValidator(_to_utc)]
"""An RFC 3339 timestamp with a zone or offset, normalised to UTC; naive times are refused."""

Count = Annotated[int, Field(strict=True, ge=0, le=MAX_COUNT)]
"""A whole number of things (followers, likes, orders), 0..10**12; never a float or string."""

Share = Annotated[float, Field(strict=True, ge=0.0, le=1.0, allow_inf_nan=False)]
"""A fraction of an audience in [0, 1]."""

Estimate = Annotated[float, Field(strict=True, ge=0.0, le=float(MAX_COUNT), allow_inf_nan=False)]
"""A non-negative finite estimate: a mean of counts, a model's engagement rate."""

Score = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A finite model output (match score, feature contribution)."""

_DECIMAL_TEXT_PATTERN: Final = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"
_DECIMAL_TEXT: Final = re.compile(_DECIMAL_TEXT_PATTERN)
_MAX_DECIMAL_DIGITS: Final = 40


def _parse_decimal_text(value: object) -> Decimal:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("must be a finite decimal")
        exponent = value.as_tuple().exponent
        too_fine = isinstance(exponent, int) and exponent < -_MAX_DECIMAL_DIGITS
        if value.adjusted() >= _MAX_DECIMAL_DIGITS or too_fine:
            raise ValueError(f"must have at most {_MAX_DECIMAL_DIGITS} digits each side of '.'")
        return value
    if isinstance(value, str):
        if len(value) > 2 * _MAX_DECIMAL_DIGITS + 2 or not _DECIMAL_TEXT.fullmatch(value):
            raise ValueError("must be a plain decimal string such as '0.15' (no exponent)")
        return Decimal(value)
    raise ValueError("must be a decimal string such as '0.15', not a JSON number (keeps it exact)")


def _plain_decimal_text(value: Decimal) -> str:
    return format(value, "f")


_FROM_DECIMAL_TEXT = BeforeValidator(_parse_decimal_text)
_TO_DECIMAL_TEXT = PlainSerializer(_plain_decimal_text, return_type=str, when_used="json")


def _decimal_text_schema(example: str) -> WithJsonSchema:
    return WithJsonSchema(
        {"type": "string", "pattern": _DECIMAL_TEXT_PATTERN, "examples": [example]}
    )


Rate = Annotated[
    Decimal,
    _FROM_DECIMAL_TEXT,
    Field(ge=0, le=1, decimal_places=6),
    _TO_DECIMAL_TEXT,
    _decimal_text_schema("0.10"),
]
"""A fraction in [0, 1] with at most 6 decimals (commission rates), as a decimal string."""

Ratio = Annotated[
    Decimal, _FROM_DECIMAL_TEXT, Field(ge=0), _TO_DECIMAL_TEXT, _decimal_text_schema("2.5")
]
"""A non-negative exact ratio (engagement rate, CPM, ROAS, ...), as a decimal string."""

SignedRatio = Annotated[
    Decimal, _FROM_DECIMAL_TEXT, _TO_DECIMAL_TEXT, _decimal_text_schema("-12.5")
]
"""An exact ratio that may be negative (ROI %), as a decimal string."""

PositiveDecimal = Annotated[
    Decimal, _FROM_DECIMAL_TEXT, Field(gt=0), _TO_DECIMAL_TEXT, _decimal_text_schema("1.0842")
]
"""A strictly positive exact number (FX rates), as a decimal string."""


def _unique(items: tuple[_T, ...]) -> tuple[_T, ...]:
    seen: set[_T] = set()
    for item in items:
        if item in seen:
            raise ValueError(f"duplicate value {item!r}; each value may appear once")
        seen.add(item)
    return items


def shares_at_most_one(shares: Mapping[_T, float]) -> Mapping[_T, float]:
    """`shares` unchanged; ValueError if they sum to more than 1 (beyond float rounding)."""
    total = sum(shares.values())
    if total > 1 + SHARE_SUM_TOLERANCE:
        raise ValueError(f"shares sum to {total:.6g}; they must sum to at most 1")
    return shares


Topics = Annotated[tuple[Tag, ...], Field(max_length=MAX_TOPICS)]
Tags = Annotated[tuple[Tag, ...], Field(max_length=MAX_TAGS)]
Keywords = Annotated[tuple[Tag, ...], Field(max_length=MAX_KEYWORDS)]
Flags = Annotated[tuple[Tag, ...], Field(max_length=MAX_TAGS)]
PromoCodes = Annotated[
    tuple[PromoCode, ...], Field(max_length=MAX_PROMO_CODES), AfterValidator(_unique)
]
ExcludedCreatorIds = Annotated[tuple[Id, ...], Field(max_length=MAX_EXCLUDED_CREATORS)]
CountryShares = Annotated[
    dict[CountryCode, Share],
    Field(max_length=MAX_MAP_ENTRIES),
    AfterValidator(shares_at_most_one),
]
"""Share of the audience per country; the shares sum to at most 1 (the rest is unknown)."""

AgeShares = Annotated[
    dict[AgeBucket, Share],
    Field(max_length=MAX_MAP_ENTRIES),
    AfterValidator(shares_at_most_one),
]
"""Share of the audience per age bucket; the shares sum to at most 1."""
