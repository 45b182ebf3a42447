"""A service restarted after `kill -9` takes its partitions back without a rebalance.

Each instance that `ServiceProcesses` starts is a static group member (KAFKA_GROUP_INSTANCE_ID,
kept across restarts): the broker hands the restarted process its old member's partitions at
once, so the group's other members keep theirs. With dynamic membership (the id turned off)
the new member joins as a stranger and every member's partitions are revoked and reassigned,
after the old member's session has expired. The revocations seen by another member of the
group tell the two apart without timing anything.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from services.tracking.app import INPUT_TOPICS, SERVICE
from shared.runtime.config import KafkaKind, Settings
from shared.tools.infra import InfraUrls
from shared.tools.infra.service_processes import ServiceProcesses
from tests.conftest import embedded_servers
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        Settings().kafka is not KafkaKind.APACHE,
        reason="runs in make test-kafka: the embedded broker delays every join by seconds "
        "either way (docs/apache-kafka.md), so only Apache Kafka shows what it saves",
    ),
]


@pytest.fixture
def servers() -> Iterator[InfraUrls]:
    """Servers of its own for each case: the group starts with no member left by another."""
    yield from embedded_servers(own_kafka=True)


class Revocations(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.count = 0

    async def on_partitions_revoked(self, revoked: Any) -> None:
        if revoked:
            self.count += 1

    async def on_partitions_assigned(self, assigned: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("membership", "revoked_on_restart"), [("static", False), ("dynamic", True)]
)
async def test_the_rest_of_the_group_keeps_its_partitions_across_a_kill(
    servers: InfraUrls, tmp_path: Path, membership: str, revoked_on_restart: bool
) -> None:
    env = {**servers.as_env(), "CREATORFLOW_DATA_DIR": str(tmp_path)}
    if membership == "dynamic":
        env["KAFKA_GROUP_INSTANCE_ID"] = ""
    lines: list[str] = []
    processes = ServiceProcesses([SERVICE], env, lambda label, line: lines.append(line))
    async with processes:
        # Another member of the service's group, holding some of its partitions.
        revocations = Revocations()
        other = AIOKafkaConsumer(
            bootstrap_servers=servers.kafka_bootstrap_servers,
            group_id=SERVICE,
            group_instance_id=f"other-{uuid.uuid4().hex[:6]}",
            enable_auto_commit=False,
        )
        other.subscribe(list(INPUT_TOPICS), listener=revocations)
        await other.start()
        try:
            await eventually(
                lambda: bool(other.assignment()), 90, what="the other member's partitions"
            )
            await processes.wait_ready(SERVICE)  # its own share, after the other one joined
            before = revocations.count

            await processes.kill(SERVICE)
            await processes.launch(SERVICE)
            await processes.wait_ready(SERVICE, seconds=120)  # it holds partitions again

            revoked = revocations.count > before
            assert revoked is revoked_on_restart, (
                f"{membership} membership: the other member's partitions were "
                f"{'' if revoked else 'not '}revoked when the service came back"
            )
        finally:
            await other.stop()
