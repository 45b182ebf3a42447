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

from shared.contract.events import TOPICS, dlq_topic
from shared.runtime.config import KafkaKind, Settings
from shared.runtime.server_urls import pid_alive
from shared.tools.infra import InfraUrls
from shared.tools.infra.stack import EmbeddedInfra, read_state, start_stopped

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
from shared.runtime.config import Settings
from shared.tools.infra import EmbeddedInfra
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
    cli = [sys.executable, "-m", "shared.tools.cli"]
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
        # Redis stops: `infra up` starts it again on its port, and leaves the others running
        # (the embedded Kafka would come back empty).
        os.kill(pids["redis"], signal.SIGKILL)
        assert _wait_dead({"redis": pids["redis"]}) == []
        stopped = subprocess.run([*cli, "infra", "status"], env=env, capture_output=True, text=True)
        assert stopped.returncode == 1 and "infra up starts them again" in stopped.stderr
        again = subprocess.run([*cli, "infra", "up"], env=env, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert "Started again: redis" in again.stdout, again.stdout
        restarted = json.loads((tmp_path / "infra.json").read_text())
        assert restarted["urls"] == state["urls"]
        now = {name: p["pid"] for name, p in restarted["processes"].items()}
        kept = set(pids) - {"redis"}  # Kafka's process (or each node's) and PostgreSQL's
        assert {n: now[n] for n in kept} == {n: pids[n] for n in kept}
        pids["redis"] = now["redis"]
    finally:
        down = subprocess.run([*cli, "infra", "down"], env=env, capture_output=True, text=True)
    assert down.returncode == 0, down.stderr
    assert _wait_dead(pids) == []
    after = subprocess.run([*cli, "infra", "status"], env=env, capture_output=True, text=True)
    assert after.returncode == 1
    assert "not running" in after.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs PostgreSQL's own account")
async def test_postgres_started_as_root_widens_no_existing_directory(tmp_path: Path) -> None:
    """As root, PostgreSQL runs as a system account without a login shell, from a path of its
    own: the checkout's directories and the wheel's files keep their permissions."""
    import pwd

    from shared.tools.infra import postgres_account
    from shared.tools.infra.process import free_port
    from shared.tools.infra.servers import _postgres_bin_path, start_postgres

    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    data = private / "stack" / "postgres" / "data"
    watched = [private, *private.parents, *_postgres_bin_path().parents][:12]
    watched += [_postgres_bin_path(), *_postgres_bin_path().iterdir()]
    before = {path: path.stat().st_mode for path in watched}

    port = free_port()
    proc = start_postgres(data, port, "pw", detached=False, durable=False)
    try:
        conn = await asyncpg.connect(f"postgresql://postgres:pw@127.0.0.1:{port}/postgres")
        assert await conn.fetchval("SELECT 1") == 1
        await conn.close()
        account = pwd.getpwnam(postgres_account.ACCOUNT)
        assert account.pw_shell in ("/usr/sbin/nologin", "/bin/false")
        cluster = data.resolve()
        assert cluster.is_relative_to(postgres_account.root_dir())
        assert cluster.stat().st_uid == account.pw_uid
        assert cluster.stat().st_mode & 0o777 == 0o700
    finally:
        proc.stop()
    assert {path: path.stat().st_mode for path in watched} == before
    postgres_account.discard(data)
    assert not cluster.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs PostgreSQL's own account")
async def test_postgres_data_as_root_lives_and_dies_with_its_data_dir(tmp_path: Path) -> None:
    """The cluster kept elsewhere behaves as if it were in the data dir: kept across restarts,
    gone once the data dir is removed."""
    import shutil

    from shared.tools.infra.process import free_port
    from shared.tools.infra.servers import start_postgres

    data = tmp_path / "stack" / "postgres" / "data"

    async def run(statement: str) -> object:
        port = free_port()
        proc = start_postgres(data, port, "pw", detached=False, durable=True)
        try:
            conn = await asyncpg.connect(f"postgresql://postgres:pw@127.0.0.1:{port}/postgres")
            try:
                return await conn.fetchval(statement)
            finally:
                await conn.close()
        finally:
            proc.stop()

    await run("CREATE TABLE kept (n int)")
    assert await run("SELECT to_regclass('kept') IS NOT NULL") is True
    shutil.rmtree(tmp_path / "stack")
    assert await run("SELECT to_regclass('kept') IS NOT NULL") is False


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs PostgreSQL's own account")
def test_only_clusters_whose_data_dir_is_gone_are_discarded(tmp_path: Path) -> None:
    """A stopped server whose data dir still links to it (an outage drill in another
    process) keeps its data; one whose data dir was removed loses it."""
    import shutil

    from shared.tools.infra import postgres_account
    from shared.tools.infra.servers import _postgres_bin_path

    kept, gone = tmp_path / "kept" / "data", tmp_path / "gone" / "data"
    for data_dir in (kept, gone):
        postgres_account.prepare(data_dir, _postgres_bin_path(), durable=True)
    clusters = {d: d.resolve() for d in (kept, gone)}
    shutil.rmtree(tmp_path / "gone")
    assert postgres_account.discard_unused_under(tmp_path) == [gone]
    assert clusters[kept].exists() and not clusters[gone].exists()
    shutil.rmtree(tmp_path / "kept")
    assert postgres_account.discard_unused_under(tmp_path) == [kept]


@needs_embedded
@pytest.mark.slow
def test_a_server_started_again_during_a_run_stops_with_it(tmp_path: Path) -> None:
    """`creatorflow up` holds its servers; one that died and `infra up` started again (on its
    port, a new process) stops with `up` too, rather than outlive it and block the next
    start on its data."""
    infra = EmbeddedInfra(tmp_path, Settings(), announce=True)
    infra.start()
    try:
        original = infra.processes["redis"].pid
        os.kill(original, signal.SIGKILL)
        assert _wait_dead({"redis": original}) == []
        state = read_state(tmp_path)
        assert state is not None
        assert start_stopped(tmp_path, Settings(), state) == ["redis"]
        restarted = read_state(tmp_path)
        assert restarted is not None
        again = restarted.processes["redis"].pid
        assert again != original and pid_alive(again)
    finally:
        infra.stop()
    assert _wait_dead({"redis": again}) == []
    assert not (tmp_path / "infra.json").exists()


@needs_embedded
@pytest.mark.slow
@pytest.mark.skipif(
    _SETTINGS.kafka is not KafkaKind.APACHE or _SETTINGS.kafka_brokers < 2,
    reason="runs in make test-kafka: a node of a local Apache Kafka cluster",
)
def test_a_stopped_kafka_node_starts_again_alone(tmp_path: Path) -> None:
    """`infra up` after one node of the cluster stopped starts that node again on its ports
    with its data; PostgreSQL, Redis and the other nodes (and what is connected to them)
    keep running where they are."""
    infra = EmbeddedInfra(tmp_path, Settings(), announce=True)
    urls = infra.start()
    try:
        before = {name: p.pid for name, p in infra.processes.items()}
        os.kill(before["kafka-2"], signal.SIGKILL)
        assert _wait_dead({"kafka-2": before["kafka-2"]}) == []
        state = read_state(tmp_path)
        assert state is not None
        assert start_stopped(tmp_path, Settings(), state) == ["kafka-2"]
        after = read_state(tmp_path)
        assert after is not None and after.urls == urls
        pids = {name: p.pid for name, p in after.processes.items()}
        assert pids["kafka-2"] != before["kafka-2"] and pid_alive(pids["kafka-2"])
        assert {n: p for n, p in pids.items() if n != "kafka-2"} == {
            n: p for n, p in before.items() if n != "kafka-2"
        }
    finally:
        infra.stop()
