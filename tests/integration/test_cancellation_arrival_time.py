"""`campaign.deals` carries the broker's append time, whatever time its sender gives: the
floor below which a `deal.cancelled` cannot date its deal's end (shared.runtime.kafka,
`topic_config`). The embedded broker keeps the producer's time, so this runs on Apache
Kafka (make test-kafka)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from typer.testing import CliRunner

from shared.contract.events import Topic, encode, event_key
from shared.contract.events.examples import valid_example
from shared.runtime.config import KafkaKind, Settings
from shared.runtime.kafka import min_insync_replicas, settings_not_applied, topic_config
from shared.tools.cli.main import app
from shared.tools.infra import InfraUrls
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        Settings().kafka is not KafkaKind.APACHE,
        reason="runs in make test-kafka: the embedded broker keeps the producer's timestamps",
    ),
]


async def test_a_backdated_record_on_campaign_deals_gets_the_broker_s_time(
    infra: InfraUrls, topics: None
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap_servers)
    await admin.start()
    try:
        [described] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, Topic.CAMPAIGN_DEALS)]
        )
    finally:
        await admin.close()
    configs = {entry[0]: entry[1] for entry in described.resources[0][4]}
    assert configs["message.timestamp.type"] == "LogAppendTime"

    cancelled = valid_example("deal.cancelled")
    backdated = datetime.now(UTC) - timedelta(days=30)
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers, acks="all")
    await producer.start()
    try:
        before_ms = int(time.time() * 1000)
        sent = await producer.send_and_wait(
            Topic.CAMPAIGN_DEALS,
            encode(cancelled),
            key=event_key(cancelled),
            timestamp_ms=int(backdated.timestamp() * 1000),
        )
    finally:
        await producer.stop()
    assert sent.timestamp_type == 1  # LogAppendTime
    assert sent.timestamp >= before_ms - 1_000  # the broker's clock, not the sender's


async def test_topics_create_names_a_setting_an_older_topic_lacks(
    infra: InfraUrls, topics: None
) -> None:
    """A `campaign.deals` created before it carried the broker's time keeps the producer's:
    `creatorflow topics create` leaves it, and says what to add."""
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap_servers)
    await admin.start()
    kept = {"min.insync.replicas": str(min_insync_replicas(Settings().kafka_replication_factor))}
    try:
        # As a topic created before: Kafka's default, the producer's time.
        older = kept | {"message.timestamp.type": "CreateTime"}
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, Topic.CAMPAIGN_DEALS, older)]
        )
        lacking = [(Topic.CAMPAIGN_DEALS, "message.timestamp.type", "LogAppendTime", "CreateTime")]

        async def altered() -> bool:  # every broker learns it from the controller, in a moment
            return await settings_not_applied(infra.kafka_bootstrap_servers) == lacking

        await eventually(altered, what="campaign.deals back to the producer's time")
        env = {"KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers}
        shown = await asyncio.to_thread(CliRunner().invoke, app, ["topics", "create"], env=env)
        assert shown.exit_code == 0, shown.output
        said = " ".join(shown.output.split())
        assert "campaign.deals has message.timestamp.type=CreateTime, not LogAppendTime" in said
        assert "--add-config message.timestamp.type=LogAppendTime" in said
    finally:
        restored = kept | topic_config(Topic.CAMPAIGN_DEALS)
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, Topic.CAMPAIGN_DEALS, restored)]
        )
        await admin.close()

    async def restored() -> bool:
        return await settings_not_applied(infra.kafka_bootstrap_servers) == []

    await eventually(restored, what="campaign.deals with the broker's time again")
