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
