"""What the benchmarks share: throwaway embedded servers with the v1 topics, quiet logs,
events sent to their topics under their keys, and waiting for a service to store its deals."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.contract.events import CloudEvent, encode, event_key, spec_for_type
from shared.runtime.config import Settings
from shared.runtime.kafka import ensure_topics
from shared.runtime.observability import configure_logging
from shared.tools.infra import EmbeddedInfra, InfraUrls


def quiet_logs() -> None:
    """Warnings only (aiokafka's errors only): the benchmark's own lines stay readable."""
    configure_logging("bench", level="WARNING")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)


@asynccontextmanager
async def embedded_servers(root: Path) -> AsyncIterator[InfraUrls]:
    """Kafka (every v1 topic, 3 partitions), PostgreSQL and Redis under `root`, not durable."""
    with EmbeddedInfra(root, Settings(), durable=False) as infra:
        urls = infra.urls
        assert urls is not None
        await ensure_topics(urls.kafka_bootstrap_servers, partitions=3, replication_factor=1)
        yield urls


async def produce_all(producer: AIOKafkaProducer, events: Sequence[CloudEvent[Any]]) -> None:
    """Each event to its topic, under its key; returns once every send is acknowledged."""
    sent = [
        await producer.send(spec_for_type(e.type).topic, encode(e), key=event_key(e))
        for e in events
    ]
    await asyncio.gather(*sent)


async def stored(pool: Any, table: str, prefix: str, expected: int, seconds: float = 120) -> None:
    """Return once `table` holds `expected` deals whose id starts with `prefix`; end the
    benchmark if it does not within `seconds`."""
    deadline = time.perf_counter() + seconds
    query = f"SELECT count(*) FROM {table} WHERE deal_id LIKE $1"
    while await pool.fetchval(query, f"{prefix}%") < expected:
        if time.perf_counter() > deadline:
            raise SystemExit(f"deals were not stored in {table} in time")
        await asyncio.sleep(0.2)
