"""The contract's text rules (no control characters; no whitespace in ids and codes) hold for
every Unicode character exactly as `str.isspace()` and category Cc define them, whichever
regex engine checks them, and a text breaking one is refused with a reason that says why."""

from __future__ import annotations

import sys
import unicodedata
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.contract.events import Topic, decode
from shared.contract.events.types import Id, LongText, Name, PromoCode, Referrer, ShortText, Tag

# Every character a rule names lies below U+3100 (test below); above it, a sample.
BELOW = 0x3100
CHARACTERS = [chr(c) for c in range(BELOW)] + [
    chr(c) for c in range(BELOW, sys.maxunicode + 1, 97) if not 0xD800 <= c <= 0xDFFF
]


def control(c: str) -> bool:
    return unicodedata.category(c) == "Cc"


RULES: list[tuple[Any, Any]] = [
    (Id, lambda c: control(c) or c.isspace()),
    (PromoCode, lambda c: control(c) or c.isspace()),
    (Referrer, lambda c: control(c) or c.isspace()),
    (ShortText, control),
    (Name, control),
    (Tag, control),
    (LongText, lambda c: control(c) and c not in "\n\t\r"),
]


@pytest.mark.parametrize(("kind", "refused"), RULES, ids=lambda x: getattr(x, "__name__", ""))
def test_each_character_is_refused_exactly_when_the_rule_says(kind: Any, refused: Any) -> None:
    adapter = TypeAdapter(kind)
    wrong = []
    for c in CHARACTERS:
        expected = refused(c)
        try:
            adapter.validate_python(f"a{c}b")
            accepted = True
        except ValidationError:
            accepted = False
        if accepted == expected:
            wrong.append(f"U+{ord(c):04X}")
        if len(wrong) > 5:
            break
    assert wrong == []


def test_no_character_above_the_checked_range_is_whitespace_or_control() -> None:
    named = [c for c in range(BELOW, sys.maxunicode + 1) if chr(c).isspace() or control(chr(c))]
    assert named == []


def test_a_control_character_is_refused_with_a_reason_that_names_it() -> None:
    raw = (
        b'{"specversion":"1.0","id":"e-1","source":"shop/x","type":"match.feedback",'
        b'"time":"2025-01-01T00:00:00Z","datacontenttype":"application/json",'
        b'"data":{"campaign_id":"cmp\\u0000-1","creator_id":"cr-1","decision":"hired",'
        b'"reason":""}}'
    )
    with pytest.raises(Exception) as caught:
        decode(Topic.MATCH_FEEDBACK, raw)
    assert "must not contain whitespace or control characters" in str(caught.value)
    assert "data.campaign_id" in str(caught.value)
