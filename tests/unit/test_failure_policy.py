"""The consumer's failure policy, without a broker: what is retried, what is dead-lettered."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY

from shared.contract.errors import EventRejected
from shared.contract.events import CloudEvent, encode, event_key
from shared.contract.events.examples import valid_example
from shared.runtime.config import Settings
from shared.runtime.kafka import (
    DeadLetters,
    Delivery,
    RetryPolicy,
    SafeConsumer,
    dispatch_by_type,
    make_broker,
    subscribe_event_batches,
    subscribe_events,
)
from shared.runtime.observability import EVENTS_CONSUMED, EVENTS_FAILED
from shared.runtime.pipeline import PipelinedBatches

RETRY = RetryPolicy(initial_seconds=0.001, max_seconds=0.002, max_attempts=3)


class RecordingDeadLetters(DeadLetters):
    def __init__(self) -> None:
        self.sent: list[tuple[int, str, str]] = []

    async def send(self, delivery: Delivery, error_class: str, message: str) -> None:
        self.sent.append((delivery.offset, error_class, message))


def delivery(offset: int, value: bytes, topic: str = "tracking.orders") -> Delivery:
    return Delivery(topic, 0, offset, b"key", value, ())


def order(offset: int) -> Delivery:
    event = valid_example("order.redeemed").model_copy(update={"id": f"event-{offset}"})
    return Delivery("tracking.orders", 0, offset, event_key(event), encode(event), ())


@pytest.fixture
def dead() -> RecordingDeadLetters:
    return RecordingDeadLetters()


async def test_undecodable_goes_to_dlq_without_calling_the_handler(
    dead: RecordingDeadLetters,
) -> None:
    calls = []

    async def handler(event: CloudEvent[Any], source: Delivery) -> None:
        calls.append(event)

    await SafeConsumer(dead, RETRY).handle(delivery(7, b"\xff not json"), handler)
    assert calls == []
    assert [(o, c) for o, c, _ in dead.sent] == [(7, "InvalidJSON")]


async def test_transient_errors_are_retried_past_max_attempts(dead: RecordingDeadLetters) -> None:
    attempts = 0

    async def handler(event: CloudEvent[Any], source: Delivery) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 10:
            raise ConnectionResetError("postgres went away")

    await SafeConsumer(dead, RETRY).handle(order(1), handler)
    assert attempts == 10
    assert dead.sent == []


async def test_unexpected_errors_are_dead_lettered_after_max_attempts(
    dead: RecordingDeadLetters,
) -> None:
    attempts = 0

    async def handler(event: CloudEvent[Any], source: Delivery) -> None:
        nonlocal attempts
        attempts += 1
        raise ZeroDivisionError("division by zero")

    await SafeConsumer(dead, RETRY).handle(order(3), handler)
    assert attempts == RETRY.max_attempts
    assert dead.sent == [
        (3, "ZeroDivisionError", "ZeroDivisionError: division by zero (after 3 attempts)")
    ]


async def test_unexpected_errors_on_a_topic_with_secrets_keep_only_their_class(
    dead: RecordingDeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    event = valid_example("creator.payout-account.upserted")
    account = Delivery("creator.payout-accounts", 0, 4, event_key(event), encode(event), ())

    async def handler(event: CloudEvent[Any], source: Delivery) -> None:
        raise ValueError(f"cannot route {event.data.destination.get_secret_value()}")

    await SafeConsumer(dead, RETRY).handle(account, handler)
    secret = event.data.destination.get_secret_value()
    assert dead.sent == [(4, "ValueError", "ValueError (after 3 attempts)")]
    logged = capsys.readouterr()
    assert "handler failed, retrying" in logged.out + logged.err
    assert secret not in logged.out + logged.err


async def test_batch_bisects_down_to_the_poison_events(dead: RecordingDeadLetters) -> None:
    poison = {"event-5", "event-11"}
    calls: list[list[str]] = []
    handled: list[str] = []

    async def handler(batch: Sequence[tuple[CloudEvent[Any], Delivery]]) -> None:
        ids = [e.id for e, _ in batch]
        calls.append(ids)
        if poison & set(ids):
            raise EventRejected("order amount exceeds the deal's cap")
        handled.extend(ids)

    batch = [order(i) for i in range(16)] + [delivery(16, b"{}")]
    await SafeConsumer(dead, RETRY).handle_batch(batch, handler)
    assert handled == [f"event-{i}" for i in range(16) if f"event-{i}" not in poison]
    assert sorted((o, c) for o, c, _ in dead.sent) == [
        (5, "EventRejected"),
        (11, "EventRejected"),
        (16, "SchemaViolation"),
    ]
    assert len(calls) < 16, "bisection, not one call per event"


async def test_dispatch_by_type_ignores_other_valid_types() -> None:
    seen: list[str] = []

    async def redeemed(event: CloudEvent[Any], source: Delivery) -> None:
        seen.append(event.type)

    dispatch = dispatch_by_type({"order.redeemed": redeemed})
    await dispatch(valid_example("order.redeemed"), order(0))
    await dispatch(valid_example("order.refunded"), order(1))
    assert seen == ["order.redeemed"]


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_seconds=0.1, max_seconds=2.0, max_attempts=5)
    for attempt in range(1, 40):
        ceiling = min(2.0, 0.1 * 2**attempt)
        assert ceiling / 2 <= policy.delay(attempt) <= ceiling


async def test_a_decoder_crash_is_dead_lettered_not_lost(
    dead: RecordingDeadLetters, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*_: object, **__: object) -> None:
        raise OverflowError("date value out of range")

    monkeypatch.setattr("shared.runtime.kafka.decode", crash)
    calls = []

    async def handler(event: CloudEvent[Any], source: Delivery) -> None:
        calls.append(event)

    await SafeConsumer(dead, RETRY).handle(order(9), handler)
    assert calls == []
    assert dead.sent == [(9, "OverflowError", "undecodable: date value out of range")]


async def test_a_second_reader_of_the_same_records_is_not_counted_again(
    dead: RecordingDeadLetters,
) -> None:
    """A follower (shared.runtime.follow) reads records the group consumer also counts."""

    async def handler(batch: Sequence[tuple[CloudEvent[Any], Delivery]]) -> None:
        return None

    def counts() -> tuple[float, float]:
        consumed = EVENTS_CONSUMED.labels("tracking.orders")._value.get()
        failed = EVENTS_FAILED.labels("tracking.orders", "InvalidJSON")._value.get()
        return consumed, failed

    before = counts()
    await SafeConsumer(dead, RETRY, counted=False).handle_batch(
        [order(20), delivery(21, b"\xff not json")], handler
    )
    assert counts() == before
    assert [o for o, _, _ in dead.sent] == [21]  # the policy still applies
    await SafeConsumer(dead, RETRY).handle_batch([order(22), delivery(23, b"\xff")], handler)
    assert counts() == (before[0] + 1, before[1] + 1)


async def test_each_input_topic_is_exported_at_zero_before_its_first_event(
    dead: RecordingDeadLetters,
) -> None:
    """increase() counts nothing for a series whose first sample is 1: without a 0 first, the
    first dead letter after a start would not raise the DeadLettersGrowing alert."""

    def series(topic: str) -> tuple[float | None, float | None]:
        labels = {"topic": topic}
        return (
            REGISTRY.get_sample_value("creatorflow_events_consumed_total", labels),
            REGISTRY.get_sample_value("creatorflow_events_dead_lettered_total", labels),
        )

    async def one(event: CloudEvent[Any], delivery: Delivery) -> None:
        return None

    async def many(batch: Sequence[tuple[CloudEvent[Any], Delivery]]) -> None:
        return None

    broker, counted = make_broker(Settings(), "kafka:9092"), SafeConsumer(dead, RETRY)
    assert series("zero.one") == (None, None)
    subscribe_events(broker, ["zero.one"], group_id="g1", handler=one, consumer=counted)
    subscribe_event_batches(
        broker, ["zero.a", "zero.b"], group_id="g2", handler=many, consumer=counted
    )
    PipelinedBatches("kafka:9092", ["zero.p"], group_id="g4", handler=many, consumer=counted)
    assert [series(t) for t in ("zero.one", "zero.a", "zero.b", "zero.p")] == [(0.0, 0.0)] * 4
    # A second reader leaves the counting to the consumer it follows.
    follower = SafeConsumer(dead, RETRY, counted=False)
    subscribe_event_batches(broker, ["zero.f"], group_id="g3", handler=many, consumer=follower)
    assert series("zero.f") == (None, None)
