"""The Kafka key and the envelope's subject must be the event's entity id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from shared.contract.events import CloudEvent, EventDecodeError, check_key, encode, event_key
from shared.contract.events.examples import valid_example
from shared.runtime.kafka import Delivery, SafeConsumer
from tests.unit.test_failure_policy import RETRY, RecordingDeadLetters


def _deal(deal_id: str) -> CloudEvent[Any]:
    example = valid_example("deal.signed")
    data = example.data.model_copy(update={"deal_id": deal_id})
    return example.model_copy(update={"data": data, "subject": deal_id, "id": f"e-{deal_id}"})


def test_the_entity_id_as_key_and_subject_passes() -> None:
    check_key(_deal("deal-1"), b"deal-1")
    check_key(_deal("deal-1").model_copy(update={"subject": None}), b"deal-1")


@pytest.mark.parametrize(
    ("key", "shown"), [(b"deal-2", "Kafka key 'deal-2'"), (None, "Kafka key missing")]
)
def test_another_or_no_key_is_refused(key: bytes | None, shown: str) -> None:
    with pytest.raises(EventDecodeError) as refused:
        check_key(_deal("deal-1"), key)
    assert refused.value.error_class == "KeyMismatch"
    assert refused.value.reason.startswith(f"{shown} is not data.deal_id 'deal-1'")


def test_a_subject_naming_another_entity_is_refused() -> None:
    event = _deal("deal-1").model_copy(update={"subject": "deal-2"})
    with pytest.raises(EventDecodeError, match=r"subject: 'deal-2' is not data\.deal_id 'deal-1'"):
        check_key(event, b"deal-1")


async def test_a_deal_sent_with_the_wrong_key_is_dead_lettered_alone() -> None:
    dead = RecordingDeadLetters()
    wrong, right = _deal("deal-1"), _deal("deal-2")
    deliveries = [
        Delivery("campaign.deals", 0, 0, b"deal-9", encode(wrong), ()),
        Delivery("campaign.deals", 0, 1, event_key(right), encode(right), ()),
    ]
    handled: list[str] = []

    async def handler(batch: Sequence[tuple[CloudEvent[Any], Delivery]]) -> None:
        handled.extend(event.data.deal_id for event, _ in batch)

    await SafeConsumer(dead, RETRY).handle_batch(deliveries, handler)
    assert handled == ["deal-2"]
    assert [(offset, error) for offset, error, _ in dead.sent] == [(0, "KeyMismatch")]
