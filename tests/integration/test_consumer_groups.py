"""Consumer-group membership on the broker in use, where the brokers differ
(docs/apache-kafka.md, "Differences seen")."""

from __future__ import annotations

import asyncio
import uuid
from typing import Final

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.runtime.config import KafkaKind, Settings
from shared.tools.infra import InfraUrls

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EMBEDDED_KAFKA: Final = Settings().kafka is not KafkaKind.APACHE
# A healthy broker assigns within seconds; the stuck one never does (watched for minutes).
JOIN_SECONDS: Final = 25.0


@pytest.mark.timeout(180)
@pytest.mark.xfail(
    EMBEDDED_KAFKA,
    raises=TimeoutError,
    strict=True,
    reason="Tansu 0.6 keeps a leader that left during a rebalance; the chaos suite avoids it",
)
async def test_a_member_joining_as_the_leader_leaves_gets_partitions(infra: InfraUrls) -> None:
    """The group's leader stops (LeaveGroup) just after a new member asked to join: the new
    member must still be assigned the partitions. Tansu drops the leaver from the members but
    keeps it as the leader, so every SyncGroup of the new member fails for ever; this is what
    kept a restarted matching from ever getting ready in `make chaos`, when the second matching
    instance left as the first one came back (tests/chaos/faults.py)."""
    settings = Settings()
    bootstrap = infra.kafka_bootstrap_servers
    topic, group = f"groups-{uuid.uuid4().hex[:8]}", f"groups-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, settings.kafka_replication_factor)])
    finally:
        await admin.close()

    def member(name: str) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group, client_id=name)

    leader = member("leader")
    await leader.start()
    # A member joins and leaves first: aiokafka sends LeaveGroup only from generation 1 on,
    # as it does for any instance that took part in a rebalance.
    passing = member("passing")
    await passing.start()
    await passing.stop()
    while leader._coordinator.generation < 1 or not leader.assignment():
        await leader.getmany(timeout_ms=100)

    newcomer = member("newcomer")
    joining = asyncio.ensure_future(newcomer.start())
    try:
        await asyncio.sleep(1.0)  # its JoinGroup is in: the group is rebalancing
        await leader.stop()
        await asyncio.wait_for(asyncio.shield(joining), JOIN_SECONDS)
        assert newcomer.assignment(), "joined without partitions"
    finally:
        joining.cancel()
        await asyncio.gather(joining, return_exceptions=True)
        await newcomer.stop()
