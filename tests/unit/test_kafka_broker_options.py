"""What every service's FastStream broker asks of Kafka, whatever the security settings."""

from __future__ import annotations

from typing import Any

import pytest

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
