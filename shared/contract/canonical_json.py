"""RFC 8785 canonical JSON (JSON Canonicalization Scheme), the bytes a signature covers.

The `rfc8785` package is the reference, but it is written in Python and walks every value
itself: about 1.6 ms for a 26 KB `match.suggested`, which made signing cost more than
building the answer. Python's own `json` encoder (in C) writes the very same bytes when
sorting keys without spaces, for all but a few values: RFC 8785 writes numbers as
ECMAScript does (`5`, not `5.0`; `1e-7`, not `1e-07`), sorts keys by their UTF-16 code units
and refuses integers beyond 2**53 - 1. `canonical_json` therefore first checks, in one pass
that also turns whole floats into integers, that the document holds only values on which the
two agree; a document holding anything else (a float below 1e-4 or above 1e16, a non-ASCII
key, a type other than the plain JSON ones) is handed to `rfc8785` whole. A property test
(tests/unit/test_canonical_json.py) holds both to the same output, errors included.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

CanonicalizationError = rfc8785.CanonicalizationError

_LARGEST_INT: int = 2**53 - 1
_LARGEST_PLAIN_FLOAT = 1e16  # from here on repr() writes an exponent, ECMAScript not until 1e21
_SMALLEST_PLAIN_FLOAT = 1e-4  # below it repr() writes an exponent, ECMAScript not until 1e-7
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


class _Unusual(Exception):
    """A value on which the json module and RFC 8785 may differ."""


def canonical_json(value: Any) -> bytes:
    """`value` as RFC 8785 canonical JSON bytes. Raises as `rfc8785` does where RFC 8785
    has no form for it: CanonicalizationError (NaN, integers beyond 2**53 - 1, non-string
    keys, lone surrogates in values), UnicodeEncodeError (lone surrogates in keys)."""
    try:
        return _ENCODER.encode(_as_plain(value)).encode()
    except (_Unusual, UnicodeEncodeError):
        return rfc8785.dumps(value)


def _as_plain(value: Any) -> Any:
    """`value` with whole floats as integers (ECMAScript writes 5.0 as 5, and -0.0 as 0);
    raises _Unusual for anything else the json module would write otherwise."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is dict:
        plain = {}
        for key, item in value.items():
            if type(key) is not str or not key.isascii():  # ASCII sorts alike in UTF-16
                raise _Unusual
            plain[key] = _as_plain(item)
        return plain
    if kind is list or kind is tuple:
        return [_as_plain(item) for item in value]
    if kind is int:
        if -_LARGEST_INT <= value <= _LARGEST_INT:
            return value
        raise _Unusual
    if kind is float:
        if value.is_integer():
            if -_LARGEST_INT <= value <= _LARGEST_INT:
                return int(value)
        elif _SMALLEST_PLAIN_FLOAT <= abs(value) < _LARGEST_PLAIN_FLOAT:  # NaN and inf fail
            return value
    raise _Unusual
