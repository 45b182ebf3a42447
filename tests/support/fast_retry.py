"""Kafka consumers for tests that give up quickly: three attempts, milliseconds apart, then
the dead-letter topic."""

from __future__ import annotations

from faststream.kafka import KafkaBroker

from shared.runtime.kafka import DeadLetters, RetryPolicy, SafeConsumer

FAST_RETRY = RetryPolicy(initial_seconds=0.01, max_seconds=0.05, max_attempts=3)


def fast_consumer(broker: KafkaBroker, service: str) -> SafeConsumer:
    """A consumer policy retrying at FAST_RETRY, dead-lettering through `broker` as `service`."""
    return SafeConsumer(DeadLetters(broker, service=service, retry=FAST_RETRY), FAST_RETRY)
