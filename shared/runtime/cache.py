"""Redis: holds only what can be rebuilt from Postgres or Kafka (docs/architecture.md §2)."""

from __future__ import annotations

import redis.asyncio as redis


async def create_redis(redis_url: str) -> redis.Redis:
    """A connected client (fails fast if the server is unreachable); close with `aclose()`."""
    client = redis.Redis.from_url(
        redis_url, health_check_interval=30, socket_connect_timeout=5, decode_responses=False
    )
    await client.ping()
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
