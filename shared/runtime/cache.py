"""Redis: holds only what can be rebuilt from Postgres or Kafka (docs/architecture.md §2)."""

from __future__ import annotations

import redis.asyncio as redis
import structlog

log = structlog.get_logger(__name__)


async def create_redis(redis_url: str, *, required: bool = True) -> redis.Redis:
    """A connected client; close with `aclose()`. Fails fast if the server is unreachable,
    unless not `required`: then the client is returned anyway (it connects on its next
    command) and the outage is logged, for a service that keeps working without Redis."""
    client = redis.Redis.from_url(
        redis_url, health_check_interval=30, socket_connect_timeout=5, decode_responses=False
    )
    try:
        await client.ping()
    except (redis.RedisError, OSError) as error:
        if required:
            await client.aclose()
            raise
        log.warning(
            "Redis unreachable at start; carrying on without it until it answers",
            error=type(error).__name__,
        )
    return client


def redis_client(redis_url: str, *, timeout_seconds: float = 1.0) -> redis.Redis:
    """A client that connects on first use, for a service that goes on without Redis: every
    command, connecting included, fails within `timeout_seconds` while Redis is unreachable,
    and the next one connects again."""
    return redis.Redis.from_url(
        redis_url,
        health_check_interval=30,
        socket_connect_timeout=timeout_seconds,
        socket_timeout=timeout_seconds,
        decode_responses=False,
    )
