"""What every service's FastStream broker asks of Kafka, whatever the security settings."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka.producer.message_accumulator import BatchBuilder

from shared.runtime.config import Settings
from shared.runtime.kafka import bootstrap_list, make_broker


def _connection(broker: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = broker._connection_kwargs
    return kwargs


def test_several_bootstrap_servers_reach_the_client_one_by_one() -> None:
    """FastStream takes a string for one server: "a:1,b:2" became one host named "a:1,b"."""
    broker = make_broker(Settings(), "127.0.0.1:9092, 127.0.0.1:9093,127.0.0.1:9094")
    assert _connection(broker)["bootstrap_servers"] == [
        "127.0.0.1:9092",
        "127.0.0.1:9093",
        "127.0.0.1:9094",
    ]


@pytest.mark.parametrize(("text", "servers"), [("kafka:9092", ["kafka:9092"]), ("a:1,", ["a:1"])])
def test_bootstrap_list(text: str, servers: list[str]) -> None:
    assert bootstrap_list(text) == servers


@pytest.mark.parametrize("idempotent", ["false", "true"])
def test_the_services_wait_for_every_in_sync_replica(
    monkeypatch: pytest.MonkeyPatch, idempotent: str
) -> None:
    monkeypatch.setenv("KAFKA_IDEMPOTENT_PRODUCER", idempotent)
    broker = make_broker(Settings(), "kafka:9092")
    assert _connection(broker)["acks"] == "all"
    assert _connection(broker)["enable_idempotence"] is (idempotent == "true")


def test_a_partition_batches_many_suggestions_in_one_produce_request() -> None:
    """A suggestion of 50 creators is ~33 KB. With aiokafka's 16 KiB batches each was a batch
    of its own, and a partition has one batch in flight at a time: the relay's 24 answers of
    a round took one broker round trip each."""
    size = _connection(make_broker(Settings(), "kafka:9092"))["max_batch_size"]
    assert size <= _connection(make_broker(Settings(), "kafka:9092"))["max_request_size"] // 2
    builder = BatchBuilder(size, 0, is_transactional=False)
    suggestion = b"x" * 33_000
    fitted = 0
    while builder.append(timestamp=0, key=b"campaign", value=suggestion) is not None:
        fitted += 1
    assert fitted >= 12
