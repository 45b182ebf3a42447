"""Apache Kafka as CreatorFlow runs it (`make test-kafka`: 3 brokers, KAFKA_REPLICATION_FACTOR=3):
topics carry the replicas and in-sync minimum asked for, the idempotent producer works, and
a restarted broker keeps its log. Skipped on the embedded broker."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.contract.events import TOPICS, dlq_topic
from shared.runtime.config import KafkaKind, Settings
from shared.runtime.kafka import ensure_topics, min_insync_replicas
from shared.tools.infra import InfraUrls
from shared.tools.infra.apache_kafka import ApacheKafkaCluster
from shared.tools.infra.kafka_jars import default_cache_dir, kafka_jars, require_tools
from shared.tools.infra.process import stop_together

SETTINGS = Settings()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        SETTINGS.kafka is not KafkaKind.APACHE or bool(SETTINGS.kafka_bootstrap_servers),
        reason="needs the local Apache Kafka cluster (CREATORFLOW_KAFKA=apache)",
    ),
]


async def _replicas_and_in_sync_minimum(bootstrap: str, topics: list[str]) -> dict[str, tuple]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
        configs = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, t, {"min.insync.replicas": None})
                for t in topics
            ]
        )
    finally:
        await admin.close()
    replicas = {t["topic"]: {len(p["replicas"]) for p in t["partitions"]} for t in described}
    in_sync = {}
    for response in configs:
        for _code, _message, _type, name, entries in response.resources:
            in_sync[name] = {key: value for key, value, *_ in entries}["min.insync.replicas"]
    return {t: (replicas[t], in_sync[t]) for t in topics}


async def test_topics_and_dead_letter_topics_have_the_replicas_asked_for(
    infra: InfraUrls, topics: None
) -> None:
    factor = SETTINGS.kafka_replication_factor
    assert factor == SETTINGS.kafka_brokers, "make test-kafka replicates on every broker"
    names = [*TOPICS, *(dlq_topic(t) for t in TOPICS)]
    found = await _replicas_and_in_sync_minimum(infra.kafka_bootstrap_servers, names)
    expected = ({factor}, str(min_insync_replicas(factor)))
    wrong = {name: seen for name, seen in found.items() if seen != expected}
    assert not wrong, f"expected {expected} (replicas, min.insync.replicas) for every topic"
    print(f"\n{len(found)} topics: {factor} replicas each, min.insync.replicas={expected[1]}")


async def test_the_idempotent_producer_is_accepted(infra: InfraUrls, topics: None) -> None:
    """The embedded broker answers InitProducerId with UnknownError; Apache Kafka must not."""
    producer = AIOKafkaProducer(
        bootstrap_servers=infra.kafka_bootstrap_servers, enable_idempotence=True
    )
    await producer.start()
    try:
        sent = await producer.send_and_wait(dlq_topic(TOPICS[0]), b"idempotent", key=b"probe")
    finally:
        await producer.stop()
    assert sent.offset >= 0


async def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for value in values:
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str, count: int) -> list[bytes]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False
    )
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(60):
            while len(values) < count:
                batch = await consumer.getmany(timeout_ms=500)
                values += [r.value for records in batch.values() for r in records if r.value]
    finally:
        await consumer.stop()
    return values


@pytest.mark.slow
async def test_a_restarted_broker_keeps_its_log(tmp_path: Path) -> None:
    java = require_tools("java", "mvn")["java"]
    jars = kafka_jars(SETTINGS.cache_dir or default_cache_dir())
    cluster = ApacheKafkaCluster(tmp_path / "kafka", 1, jars, java)
    cluster.prepare()
    node = cluster.nodes[0]
    values = [f"kept-{i}".encode() for i in range(5)]
    proc = cluster.start_node(node, detached=False)
    try:
        await asyncio.to_thread(cluster.wait_ready, {node.name: proc}, 1)
        bootstrap = cluster.bootstrap_servers
        await ensure_topics(bootstrap, partitions=1, replication_factor=1, topics=["restart.probe"])
        await _produce(cluster.bootstrap_servers, "restart.probe", values)
        await asyncio.to_thread(stop_together, [proc])  # a clean stop, as an operator's
        assert not proc.alive()
        proc = cluster.start_node(node, detached=False)
        await asyncio.to_thread(cluster.wait_ready, {node.name: proc}, 1)
        assert await _read_all(cluster.bootstrap_servers, "restart.probe", 5) == values
    finally:
        await asyncio.to_thread(stop_together, [proc], 0.0)
