"""Shared fixtures: one embedded Kafka + PostgreSQL + Redis for the whole test session.

Set KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL and REDIS_URL to run against external servers, or
CREATORFLOW_KAFKA=apache (and CREATORFLOW_KAFKA_BROKERS=3) for a local Apache Kafka cluster
instead of the embedded broker (`make test-kafka`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as redis
from hypothesis import settings as hypothesis_settings

from shared.runtime.cache import create_redis
from shared.runtime.config import KafkaKind, Settings
from shared.runtime.db import ServiceSchema, create_pool, migrate
from shared.runtime.kafka import ensure_topics
from shared.runtime.server_urls import pid_alive
from shared.tools.infra import EmbeddedInfra, InfraUrls, postgres_account
from tests.support import shared_kafka

# The machines that run the tests are noisy: no generated example fails for being slow.
hypothesis_settings.register_profile("creatorflow", deadline=None)
hypothesis_settings.load_profile("creatorflow")

# The CLI's tables are as wide as the terminal; a test worker has none, and a cell cut to "…"
# would hide what a test looks for.
os.environ.setdefault("COLUMNS", "200")


def embedded_servers(*, own_kafka: bool = False) -> Iterator[InfraUrls]:
    """Kafka, PostgreSQL and Redis in a new temp dir (or the external ones configured).

    A local Apache Kafka cluster is lent, emptied, from one shared by the modules
    (tests/support/shared_kafka.py) unless `own_kafka`: the embedded broker starts in a
    second, three Apache Kafka brokers in ten or more.
    """
    for stack in embedded_stack(own_kafka=own_kafka):
        assert stack.urls is not None
        yield stack.urls


def embedded_stack(*, own_kafka: bool = False) -> Iterator[EmbeddedInfra]:
    """`embedded_servers`, as the stack itself: for tests that stop and start a server."""
    root = Path(tempfile.mkdtemp(prefix="creatorflow-test-"))
    settings = Settings()
    local_apache = settings.kafka is KafkaKind.APACHE and not settings.kafka_bootstrap_servers
    if local_apache and not own_kafka:
        lent = shared_kafka.lend(settings)
        settings = settings.model_copy(update={"kafka_bootstrap_servers": lent})
    stack = EmbeddedInfra(root, settings, durable=False)
    with stack:
        assert stack.urls is not None
        pids = stack.pids()
        yield stack
        pids.update(stack.pids())
    leftover = [name for name, pid in pids.items() if pid_alive(pid)]
    assert not leftover, f"embedded servers still running after their tests: {leftover}"


# The schema of the runtime's own tests (inbox, outbox, FX snapshots, services made up for
# a test); each service's tests use that service's schema (tests/integration/isolated.py).
RUNTIME_TESTS = ServiceSchema("runtime_tests")


async def migrated_pool(
    infra: InfraUrls, schema: ServiceSchema = RUNTIME_TESTS
) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(infra.database_url, schema=schema.name, min_size=1, max_size=10)
    await migrate(pool, schema)
    yield pool
    await pool.close()


@pytest.fixture(scope="session")
def infra() -> Iterator[InfraUrls]:
    # Kafka of its own: the modules that borrow the shared cluster empty it.
    yield from embedded_servers(own_kafka=True)


async def create_topics(infra: InfraUrls) -> None:
    """Every contract topic with 3 partitions, replicated as KAFKA_REPLICATION_FACTOR says."""
    replication = Settings().kafka_replication_factor
    await ensure_topics(infra.kafka_bootstrap_servers, partitions=3, replication_factor=replication)


@pytest.fixture(scope="session")
async def topics(infra: InfraUrls) -> None:
    await create_topics(infra)


@pytest.fixture(scope="session")
async def db_pool(infra: InfraUrls) -> AsyncIterator[asyncpg.Pool]:
    async for pool in migrated_pool(infra):
        yield pool


@pytest.fixture
async def redis_client(infra: InfraUrls) -> AsyncIterator[redis.Redis]:
    client = await create_redis(infra.redis_url)
    yield client
    await client.aclose()


def pytest_report_header() -> list[str]:
    external = [
        v for v in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "REDIS_URL") if os.environ.get(v)
    ]
    settings = Settings()
    if settings.kafka is KafkaKind.APACHE:
        local = f"Apache Kafka ({settings.kafka_brokers} brokers), PostgreSQL and Redis"
    else:
        local = "embedded (pip wheels)"
    where = f"external: {', '.join(external)}" if external else local
    replication = f"replication factor {settings.kafka_replication_factor}"
    idempotent = "idempotent producer " + ("on" if settings.kafka_idempotent_producer else "off")
    return [f"creatorflow infrastructure: {where}; {replication}, {idempotent}"]


def pytest_sessionfinish() -> None:
    # As root, durable clusters of temp data dirs live outside them (shared.tools.infra.
    # postgres_account): remove those whose data dir was removed (pytest prunes old ones).
    if os.geteuid() == 0:
        postgres_account.discard_unused_under(Path(tempfile.gettempdir()))
