"""The rails' rate limits: one token bucket per rail, shared by every payouts replica in Redis.

Every call to a rail (send, lookup, settlement poll) first takes as many tokens as the API
requests it usually makes (`services/payouts/providers/rails.py`). The bucket of a rail with a
limit of `L` requests a second holds at most `c` tokens (a tenth of `L`, at least its costliest
call) and gains `(L - c) / (1 + s)` a second, so in any second at most `L` requests reach the
rail, whatever the number of replicas: the bucket lives in Redis and one Lua script reads,
refills and takes atomically, on the server's clock. `s` (ARRIVAL_SPREAD_SECONDS) is how much
later than its token a call may reach the rail: a second at the rail then holds the tokens of
`1 + s` seconds of the bucket.

Redis unreachable (or slower than `REDIS_TIMEOUT_SECONDS`), a replica keeps a bucket of its own
for each rail at `1 / expected_replicas` of that rate: payouts go on, slower, and never twice
(the limiter only delays calls; the idempotency keys and the dispatcher's lease are untouched).
It asks Redis again every `recheck_seconds` and shares the buckets again once Redis answers.
Each switch is logged, and `creatorflow_payout_rate_limit_mode` says which mode is in use; while
no rail is called, `watch` asks Redis every `recheck_seconds` so that both stay current.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, Protocol

import redis.asyncio as redis
import structlog
from redis.exceptions import RedisError

from services.payouts.domain.token_bucket import Bucket, BucketLimit, take
from shared.runtime.observability import PAYOUT_RATE_LIMIT_MODE

log = structlog.get_logger(__name__)

Mode = Literal["redis", "local"]
KEY_PREFIX: Final = "creatorflow:payouts:rail-rate:"
# A Redis that answers slower than this counts as down for this call (the call then takes a
# local token): a stalled server must not stall payouts.
REDIS_TIMEOUT_SECONDS: Final = 0.5
BURST_SECONDS: Final = 0.1
# A call reaches the rail after its token was taken: a dispatcher round's calls go out one
# after another, the replica's event loop may be busy, its process may wait for a core, and a
# network path adds its jitter. `bench/bench_rails.py` (two replicas and the rail in processes
# of their own, on two cores shared with PostgreSQL and Kafka) timed calls reaching the rail up
# to 141-203 ms after their token (p99 79-137 ms), and with 50 ms allowed the rail saw more
# than its limit of 600 requests in the busiest second of two runs in five (603, 608). 200 ms
# cover what was seen, and a Wise send, whose three requests take their tokens at once and
# whose third goes out two answers later (100 ms at a rail answering in 50 ms), at the cost
# of an eighth of the rate.
ARRIVAL_SPREAD_SECONDS: Final = 0.2


class TokenBuckets(Protocol):
    """Named token buckets (`services/payouts/domain/token_bucket.py`)."""

    async def take(
        self, key: str, limit: BucketLimit, cost: float, now: float | None = None
    ) -> float:
        """Take `cost` tokens from bucket `key` at `now` (seconds; None: the store's own
        clock): 0.0 if taken, else the seconds to wait before asking again (nothing taken)."""
        ...


class MemoryBuckets:
    """Buckets in this process's memory: the local fallback, and the fake of `RedisBuckets`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, Bucket] = {}

    async def take(
        self, key: str, limit: BucketLimit, cost: float, now: float | None = None
    ) -> float:
        at = self._clock() if now is None else now
        self._buckets[key], wait = take(self._buckets.get(key), limit, cost, at)
        return wait


# The arithmetic of services/payouts/domain/token_bucket.py::take (CRUMB included), on the
# server. Times are integer microseconds (Redis TIME when ARGV[4] is empty), tokens printed
# with 17 digits so nothing is lost between calls. A bucket left alone until full is the same
# as no bucket: it expires then.
_TAKE: Final = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now
if ARGV[4] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[4])
end
if cost > capacity then
  return redis.error_reply('a call never fits its bucket')
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = capacity, now
if state[1] and state[2] then
  local last = tonumber(state[2])
  at = math.max(last, now)
  tokens = math.min(capacity, tonumber(state[1]) + (at - last) / 1000000 * rate)
end
local wait = 0
if tokens + 1e-9 >= cost then
  tokens = math.max(tokens - cost, 0)
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
  'at', string.format('%.0f', at))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity / rate * 1000) + 1000)
return string.format('%.17g', wait)
"""


class RedisBuckets:
    """Buckets in Redis, one hash per key, changed only by one atomic script. Their clock is
    the server's, the same for every replica, unless `clock` is given (tests)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = KEY_PREFIX,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._script = client.register_script(_TAKE)
        self._prefix = prefix
        self._clock = clock

    async def take(
        self, key: str, limit: BucketLimit, cost: float, now: float | None = None
    ) -> float:
        if cost > limit.capacity:
            raise ValueError(f"a call of {cost} tokens never fits a bucket of {limit.capacity}")
        if now is None and self._clock is not None:
            now = self._clock()
        at = "" if now is None else str(round(now * 1_000_000))
        args = [repr(limit.rate), repr(limit.capacity), repr(float(cost)), at]
        answer = await self._script(keys=[self._prefix + key], args=args)
        return float(answer)


@dataclass(frozen=True)
class RailLimit:
    """A rail's limit in API requests a second, and the most requests one call makes."""

    requests_per_second: float
    largest_call: int = 1

    def __post_init__(self) -> None:
        if self.requests_per_second <= self.capacity:
            raise ValueError(
                f"a rail limit of {self.requests_per_second} requests/s leaves no room for a "
                f"call of {self.largest_call} requests"
            )

    @property
    def capacity(self) -> float:
        """What the bucket saves up: a tenth of a second's requests, so a dispatcher round
        goes out at once rather than one by one, and never less than the costliest call."""
        return max(float(self.largest_call), self.requests_per_second * BURST_SECONDS)

    @property
    def refill(self) -> float:
        """Tokens a second: what the limit leaves beyond the saved-up ones, over a second
        stretched by the calls' arrival spread."""
        return (self.requests_per_second - self.capacity) / (1 + ARRIVAL_SPREAD_SECONDS)

    def shared(self) -> BucketLimit:
        """The bucket every replica shares: at most `requests_per_second` reach the rail in
        any second."""
        return BucketLimit(self.refill, self.capacity)

    def local(self, replicas: int) -> BucketLimit:
        """One replica's bucket while Redis is out of reach: its share of the refill."""
        return BucketLimit(self.refill / replicas, self.capacity)


class RateLimiter:
    """`acquire(rail, cost)` waits until the rail may take `cost` more requests.

    `shared` is None for a process without Redis: then the local buckets are all there is.
    Waiters of one rail in this process queue behind a lock, so one of them at a time asks the
    buckets and sleeps out the wait they name.
    """

    def __init__(
        self,
        shared: TokenBuckets | None,
        limits: Mapping[str, RailLimit],
        *,
        expected_replicas: int = 2,
        recheck_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        local: TokenBuckets | None = None,
    ) -> None:
        if expected_replicas < 1:
            raise ValueError("expected_replicas must be >= 1")
        self._shared = shared
        self._limits = dict(limits)
        self._replicas = expected_replicas
        self._recheck = recheck_seconds
        self._clock = clock
        self._sleep = sleep
        self._local = local or MemoryBuckets(clock)
        self._locks: dict[str, asyncio.Lock] = {}
        self._retry_shared_at = 0.0
        self.mode: Mode = "local"
        self._show("redis" if shared is not None else "local")
        if shared is None:
            log.warning("rail rate limits kept locally: no Redis", **self._local_rates())

    def limit(self, rail: str) -> RailLimit | None:
        return self._limits.get(rail)

    async def acquire(self, rail: str, cost: int = 1) -> None:
        """Wait for `cost` tokens of `rail`; a rail without a limit goes at once."""
        limit = self._limits.get(rail)
        if limit is None:
            return
        cost = min(cost, limit.largest_call)
        lock = self._locks.setdefault(rail, asyncio.Lock())
        async with lock:
            while (wait := await self._take(rail, limit, cost)) > 0:
                await self._sleep(wait)

    async def watch(self) -> None:
        """A background loop: ask the shared buckets every `recheck_seconds` even when no
        rail is called, so the mode (its log lines and metric) follows Redis going away and
        coming back while payouts are idle. Asking takes nothing (a cost of zero)."""
        if self._shared is None or not self._limits:
            return
        rail, limit = next(iter(sorted(self._limits.items())))
        while True:
            await self._sleep(self._recheck)
            await self._take(rail, limit, 0)

    async def _take(self, rail: str, limit: RailLimit, cost: int) -> float:
        if self._shared is not None and self._clock() >= self._retry_shared_at:
            try:
                wait = await asyncio.wait_for(
                    self._shared.take(rail, limit.shared(), cost), REDIS_TIMEOUT_SECONDS
                )
            except (RedisError, OSError, TimeoutError) as error:
                self._retry_shared_at = self._clock() + self._recheck
                if self.mode == "redis":
                    log.warning(
                        "rail rate limits kept locally: Redis unreachable",
                        error=f"{type(error).__name__}: {error}",
                        retry_seconds=self._recheck,
                        **self._local_rates(),
                    )
                self._show("local")
            else:
                if self.mode == "local":
                    log.info("rail rate limits shared through Redis again")
                self._show("redis")
                return wait
        return await self._local.take(rail, limit.local(self._replicas), cost)

    def _show(self, mode: Mode) -> None:
        self.mode = mode
        PAYOUT_RATE_LIMIT_MODE.labels(mode="redis").set(1 if mode == "redis" else 0)
        PAYOUT_RATE_LIMIT_MODE.labels(mode="local").set(1 if mode == "local" else 0)

    def _local_rates(self) -> dict[str, float]:
        return {
            f"{rail}_requests_per_second": round(limit.local(self._replicas).rate, 2)
            for rail, limit in self._limits.items()
        }
