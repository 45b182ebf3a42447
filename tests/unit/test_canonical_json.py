"""`canonical_json` writes what the `rfc8785` reference writes, for every JSON value."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from shared.contract import canonical_json as module
from shared.contract.canonical_json import CanonicalizationError, canonical_json
from shared.contract.events import EVENT_SPECS, encode
from shared.contract.events.examples import valid_example

_ANY_CHARACTER = st.characters(codec=None)  # surrogates and astral characters too
_KEYS = st.text(_ANY_CHARACTER, max_size=4) | st.sampled_from(["a", "b", "A", "é", "😀", "\ufb33"])
_NUMBERS = (
    st.integers()
    | st.integers(-(2**53) - 3, 2**53 + 3)
    | st.floats()
    | st.floats(-1e-3, 1e-3)
    | st.floats(1e15, 1e22)
    | st.sampled_from([0.0, -0.0, 5.0, 1e-4, 1e-7, 9.999e-5, 1e16, 1e21, 2.0**53, 2.0**53 + 2])
)
_SCALARS = st.none() | st.booleans() | _NUMBERS | st.text(_ANY_CHARACTER, max_size=8)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(_KEYS, inner, max_size=4)
    ),
    max_leaves=20,
)


def _outcome(write: Any, value: Any) -> bytes | str:
    try:
        return bytes(write(value))
    except ValueError as error:  # CanonicalizationError, or the reference's UnicodeEncodeError
        return f"refused: {type(error).__name__}"


@given(_VALUES)
def test_writes_what_the_reference_writes(value: Any) -> None:
    assert _outcome(canonical_json, value) == _outcome(rfc8785.dumps, value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 8785 appendix B's numbers, and the cases where repr() writes otherwise.
        (5.0, b"5"),
        (-0.0, b"0"),
        (1e-7, b"1e-7"),
        (1e-5, b"0.00001"),
        (1e21, b"1e+21"),
        (1e20, b"100000000000000000000"),
        (333333333.33333329, b"333333333.3333333"),
        (9007199254740991, b"9007199254740991"),
        ({"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001f600": 5}, None),
    ],
)
def test_known_forms(value: Any, expected: bytes | None) -> None:
    assert canonical_json(value) == (expected or rfc8785.dumps(value))


@pytest.mark.parametrize("value", [math.nan, math.inf, 2**53, {1: "a"}, "\ud800", object()])
def test_refuses_what_rfc_8785_has_no_form_for(value: Any) -> None:
    with pytest.raises(CanonicalizationError):
        canonical_json(value)


@pytest.mark.parametrize("spec", EVENT_SPECS, ids=lambda spec: spec.type)
def test_every_example_event_takes_the_fast_path(spec: Any) -> None:
    """The json module writes our events; the reference is only for unusual documents."""
    document = json.loads(encode(valid_example(spec.type)))
    assert module._ENCODER.encode(module._as_plain(document)).encode() == rfc8785.dumps(document)
