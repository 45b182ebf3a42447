"""The suite's reading of the dead letters: every record up to each DLQ partition's end, and
an offset missing below it read again."""

from __future__ import annotations

import uuid

import pytest
from aiokafka import AIOKafkaProducer

from shared.contract.events import TOPICS, dlq_topic
from shared.tools.infra import InfraUrls
from tests.chaos.observe import _read_dlqs
from tests.chaos.workload import INVALID_HEADER

pytestmark = pytest.mark.integration


async def test_a_dead_letter_left_out_of_a_read_is_read_again(
    infra: InfraUrls, topics: None
) -> None:
    bootstrap = infra.kafka_bootstrap_servers
    topic = dlq_topic(TOPICS[0])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(3):
            await producer.send_and_wait(
                topic,
                b"{}",
                key=uuid.uuid4().bytes,
                partition=0,
                headers=[("dlq.service", b"tests"), (INVALID_HEADER, str(n).encode())],
            )
    finally:
        await producer.stop()
    seen: dict[tuple[str, int, int], tuple[str, str | None]] = {}
    assert await _read_dlqs(bootstrap, seen) == 0
    ours = sorted(k for k, (service, _) in seen.items() if service == "tests")
    assert len(ours) >= 3 and all(k[:2] == (topic, 0) for k in ours)
    # A read that left one of them out (as the embedded broker's fetches sometimes do):
    left_out = ours[len(ours) // 2]
    kept = seen.pop(left_out)
    assert await _read_dlqs(bootstrap, seen) == 0
    assert seen[left_out] == kept
