"""A `deal.cancelled` ends its deal no earlier than when it reached the broker, less the clock
skew allowed: the consumer gives each delivery that floor from its record's timestamp, and
`campaign.deals` is created with the broker's append time so the sender cannot set it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from shared.contract.events import CloudEvent, encode
from shared.contract.events.deals import cancellation_time
from shared.contract.events.examples import valid_example
from shared.runtime import service
from shared.runtime.kafka import Delivery, SafeConsumer, topic_config
from shared.runtime.unit_of_work import NewEvents
from tests.unit.test_failure_policy import RETRY, RecordingDeadLetters

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
SKEW = timedelta(minutes=5)


def test_a_cancellation_ends_its_deal_at_its_time_or_its_floor_whichever_is_later() -> None:
    dated = NOW - timedelta(days=3)
    assert cancellation_time(dated, NOW - SKEW) == NOW - SKEW
    assert cancellation_time(NOW, NOW - SKEW) == NOW
    assert cancellation_time(dated, None) == dated


async def test_the_consumer_gives_each_delivery_its_arrival_less_the_skew() -> None:
    event = valid_example("deal.cancelled")
    arrived = int(NOW.timestamp() * 1000)
    stamps = [arrived, None, -1]  # -1: a record without a timestamp
    deliveries = [
        Delivery("campaign.deals", 0, n, event.subject.encode(), encode(event), (), timestamp_ms=ts)
        for n, ts in enumerate(stamps)
    ]
    seen: list[tuple[CloudEvent[Any], Delivery]] = []

    async def handler(batch: Sequence[tuple[CloudEvent[Any], Delivery]]) -> None:
        seen.extend(batch)

    consumer = SafeConsumer(RecordingDeadLetters(), RETRY, max_clock_skew=SKEW, clock=lambda: NOW)
    for one in deliveries:  # one identity: each alone
        await consumer.handle_batch([one], handler)
    assert [delivery.not_before for _, delivery in seen] == [NOW - SKEW, None, None]
    assert NewEvents.of(seen[:1], {event.identity}).not_before() == {event.identity: NOW - SKEW}


def test_campaign_deals_carries_the_broker_s_time() -> None:
    assert topic_config("campaign.deals")["message.timestamp.type"] == "LogAppendTime"
    assert "message.timestamp.type" not in topic_config("tracking.orders")


async def test_a_service_logs_a_setting_a_topic_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    async def lacking(*_: Any) -> list[tuple[str, str, str, str]]:
        return [("campaign.deals", "message.timestamp.type", "LogAppendTime", "CreateTime")]

    monkeypatch.setattr(service, "settings_not_applied", lacking)
    with capture_logs() as logs:
        await service._warn_of_settings_not_applied("127.0.0.1:1", None)
    [entry] = logs
    assert entry["log_level"] == "warning" and entry["topic"] == "campaign.deals"
    assert entry["setting"] == "message.timestamp.type=LogAppendTime"
