"""What the creator page says of durations and how it reads `If-None-Match`."""

from __future__ import annotations

from datetime import timedelta

from services.payouts.creator_page.web import _duration, _entity_tags


def test_a_duration_is_said_in_words_never_longer_than_it_is() -> None:
    assert _duration(timedelta(hours=12)) == "12 hours"
    assert _duration(timedelta(hours=1)) == "1 hour"
    assert _duration(timedelta(minutes=90)) == "90 minutes"
    assert _duration(timedelta(minutes=15)) == "15 minutes"
    assert _duration(timedelta(seconds=61)) == "1 minute"


def test_if_none_match_tags_are_read_weakly_and_as_a_list() -> None:
    assert _entity_tags('"a"') == {'"a"'}
    assert _entity_tags('W/"a", "b"') == {'"a"', '"b"'}
    assert _entity_tags("") == set()
