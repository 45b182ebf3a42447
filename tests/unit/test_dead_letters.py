"""The dead letters of one record, one per service that refused it, share its correlation id."""

from __future__ import annotations

from shared.contract.events import Topic, encode
from shared.contract.events.examples import valid_example
from shared.contract.events.registry import EventType
from shared.runtime.kafka import DeadLetters, Delivery, RetryPolicy
from tests.support.kafka_io import RecordingBroker


async def _dead_letter(services: list[str], delivery: Delivery) -> list[str]:
    broker = RecordingBroker()
    for service in services:
        letters = DeadLetters(broker, service=service, retry=RetryPolicy())  # type: ignore[arg-type]
        await letters.send(delivery, "EventRejected", "refused")
    return [str(copy["correlation_id"]) for copy in broker.published]


async def test_each_services_copy_of_a_record_carries_one_correlation_id() -> None:
    deal = encode(valid_example(EventType.DEAL_SIGNED))
    record = Delivery(Topic.CAMPAIGN_DEALS, 1, 7, b"d-1", deal, ())
    copies = await _dead_letter(["matching", "tracking", "payouts"], record)
    assert len(set(copies)) == 1
    # Another record (here the next offset) has another.
    other = Delivery(Topic.CAMPAIGN_DEALS, 1, 8, b"d-1", deal, ())
    assert await _dead_letter(["tracking"], other) != copies[:1]


async def test_a_record_with_a_correlation_id_keeps_it_in_its_dead_letters() -> None:
    deal = encode(valid_example(EventType.DEAL_SIGNED))
    record = Delivery(Topic.CAMPAIGN_DEALS, 1, 7, b"d-1", deal, (("correlation_id", b"brand-42"),))
    assert await _dead_letter(["tracking", "payouts"], record) == ["brand-42", "brand-42"]
