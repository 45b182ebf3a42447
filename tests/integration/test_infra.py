"""The embedded servers: they answer, and they never outlive the process that started them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis
from aiokafka.admin import AIOKafkaAdminClient

from shared.config import KafkaKind, Settings
from shared.events import TOPICS, dlq_topic
from shared.infra import InfraUrls
from shared.infra.process import pid_alive

pytestmark = pytest.mark.integration

EMBEDDED = not any(
    os.environ.get(v) for v in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL")
)
needs_embedded = pytest.mark.skipif(not EMBEDDED, reason="external servers configured")
_SETTINGS = Settings()
# The embedded broker is one process; a local Apache Kafka cluster one per node.
KAFKA_PROCESSES = (
    {f"kafka-{n}" for n in range(1, _SETTINGS.kafka_brokers + 1)}
    if _SETTINGS.kafka is KafkaKind.APACHE
    else {"kafka"}
)


async def test_servers_answer(
    infra: InfraUrls, topics: None, db_pool: asyncpg.Pool, redis_client: redis.Redis
) -> None:
    assert await db_pool.fetchval("SELECT 1") == 1
    assert await redis_client.ping()
    admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka_bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    assert set(TOPICS) <= existing
    assert {dlq_topic(t) for t in TOPICS} <= existing


def _wait_dead(pids: dict[str, int], timeout: float = 20.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [name for name, pid in pids.items() if pid_alive(pid)]
        if not alive:
            return []
        time.sleep(0.1)
    return alive


_HOLDER = """
import json, sys, time
from pathlib import Path
from shared.config import Settings
from shared.infra import EmbeddedInfra
stack = EmbeddedInfra(Path(sys.argv[1]), Settings(), durable=False)
stack.start()
print(json.dumps(stack.pids()), flush=True)
time.sleep(600)
"""


@needs_embedded
@pytest.mark.slow
def test_servers_die_with_a_killed_parent(tmp_path: Path) -> None:
    """`kill -9` of the process that started the servers leaves no server behind."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        pids = json.loads(holder.stdout.readline())
        assert set(pids) == {*KAFKA_PROCESSES, "postgres", "redis"}
        assert all(pid_alive(pid) for pid in pids.values())
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert _wait_dead(pids) == []


@needs_embedded
@pytest.mark.slow
def test_infra_up_status_down(tmp_path: Path) -> None:
    """The background servers of `creatorflow infra up` run until `infra down`."""
    env = {**os.environ, "CREATORFLOW_DATA_DIR": str(tmp_path)}
    cli = [sys.executable, "-m", "shared.cli"]
    up = subprocess.run([*cli, "infra", "up"], env=env, capture_output=True, text=True)
    try:
        assert up.returncode == 0, up.stderr
        assert "KAFKA_BOOTSTRAP_SERVERS" in up.stdout
        assert "creatorflow@" not in up.stdout, "the database password must not be printed"
        state = json.loads((tmp_path / "infra.json").read_text())
        pids = {name: p["pid"] for name, p in state["processes"].items()}
        status = subprocess.run([*cli, "infra", "status"], env=env, capture_output=True, text=True)
        assert status.returncode == 0, status.stderr
        assert "running" in status.stdout
    finally:
        down = subprocess.run([*cli, "infra", "down"], env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert _wait_dead(pids) == []
    after = subprocess.run([*cli, "infra", "status"], env=env, capture_output=True, text=True)
    assert after.returncode == 1
    assert "not running" in after.stderr
