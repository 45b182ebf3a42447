"""One Apache Kafka cluster lent to every test module that would otherwise start its own.

Starting three KRaft brokers costs 10 to 30 s on a 2-core machine, and `make test-kafka` has
more than a dozen modules that want fresh servers. On Apache Kafka they borrow this cluster
instead (fresh PostgreSQL and Redis still start per module), emptied before each borrower:
every topic deleted and every consumer group removed, so a module sees what a new cluster
would show it. Topics are recreated by the module's own `topics` fixture.

Modules whose subject is the cluster itself (broker restarts, static membership, security)
start their own.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import tempfile
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.protocol.admin import DeleteGroupsRequest
from pydantic import SecretStr

from shared.runtime.config import Settings
from shared.tools.infra import EmbeddedInfra

_NON_EMPTY_GROUP = 68
_EMPTY_WAIT_SECONDS = 30.0

_cluster: EmbeddedInfra | None = None


def lend(settings: Settings) -> str:
    """The bootstrap servers of the shared cluster, started on first use and emptied."""
    global _cluster
    if _cluster is None:
        root = Path(tempfile.mkdtemp(prefix="creatorflow-test-kafka-"))
        # Placeholders: the stack starts only what is not configured, here Kafka alone.
        unused = SecretStr("unused")
        only_kafka = settings.model_copy(update={"database_url": unused, "redis_url": unused})
        cluster = EmbeddedInfra(root, only_kafka, durable=False)
        cluster.start()
        _cluster = cluster
        atexit.register(cluster.stop)
        assert cluster.urls is not None
        return cluster.urls.kafka_bootstrap_servers
    assert _cluster.urls is not None
    bootstrap = _cluster.urls.kafka_bootstrap_servers
    # In a thread of its own: the caller may be inside pytest-asyncio's event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, empty(bootstrap)).result()
    return bootstrap


async def empty(bootstrap: str) -> None:
    """Delete every topic (but Kafka's own) and every consumer group, and wait until gone."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await _delete_groups(admin)
        topics = [t for t in await admin.list_topics() if not t.startswith("__")]
        if topics:
            await admin.delete_topics(topics)
            deadline = time.monotonic() + _EMPTY_WAIT_SECONDS
            while set(topics) & set(await admin.list_topics()):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"topics still listed after deletion: {topics[:5]}")
                await asyncio.sleep(0.2)
    finally:
        await admin.close()


async def _delete_groups(admin: AIOKafkaAdminClient) -> None:
    """Remove every group. A member left behind by a killed or static consumer keeps its
    group until the broker expires it (its session timeout), so those are waited for."""
    deadline = time.monotonic() + _EMPTY_WAIT_SECONDS
    groups = [group for group, _ in await admin.list_consumer_groups()]
    while groups:
        left = []
        for group in groups:
            coordinator = await admin.find_coordinator(group)
            response = await admin._send_request_to_node(coordinator, DeleteGroupsRequest([group]))
            for name, code in response.results:
                if code == _NON_EMPTY_GROUP:
                    left.append(name)
                elif code:
                    raise RuntimeError(f"could not delete consumer group {name}: error {code}")
        if left and time.monotonic() > deadline:
            raise RuntimeError(f"consumer groups still have members: {left}")
        groups = left
        if groups:
            await asyncio.sleep(0.5)
