"""Fixed-window counters in Redis: the creator page's link redemptions and the brand API's
requests per key. A window starts with its first request and its counter expires with it, so
what Redis loses costs nothing but a fresh window."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as redis


@dataclass(frozen=True)
class Limit:
    attempts: int
    window_seconds: int


@dataclass(frozen=True)
class Window:
    """A counter after counting one more: `count` so far in the window, which ends in
    `reset_seconds` (at least 1)."""

    limit: Limit
    count: int
    reset_seconds: int

    @property
    def exceeded(self) -> bool:
        return self.count > self.limit.attempts

    @property
    def remaining(self) -> int:
        return max(self.limit.attempts - self.count, 0)


async def count_one(client: redis.Redis, key: str, limit: Limit) -> Window:
    """Count one request under `key`, atomically (raises Redis' errors)."""
    async with client.pipeline(transaction=True) as pipe:
        # The window starts with the first request (SET NX: Redis 6 has no EXPIRE NX).
        pipe.set(key, 0, ex=limit.window_seconds, nx=True)
        pipe.incr(key)
        pipe.ttl(key)
        _, count, ttl = await pipe.execute()
    reset = int(ttl) if int(ttl) > 0 else limit.window_seconds
    return Window(limit, int(count), reset)
