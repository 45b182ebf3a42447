"""The rails' rate limiter on a fake clock: the bucket arithmetic, the in-memory buckets
against the contract the Redis script passes too, replicas sharing one bucket, the local
fallback while the shared buckets are unreachable, and the way back to them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from redis.exceptions import ConnectionError as RedisConnectionError

from services.payouts.domain.token_bucket import Bucket, BucketLimit, take
from services.payouts.providers import TransferRequest
from services.payouts.providers.rails import Rails
from services.payouts.providers.sandbox import SandboxProvider
from services.payouts.rate_limit import (
    ARRIVAL_SPREAD_SECONDS,
    MemoryBuckets,
    RailLimit,
    RateLimiter,
    TokenBuckets,
)
from shared.contract.money import Money
from shared.runtime.observability import PAYOUT_RATE_LIMIT_MODE
from tests.unit.payouts.buckets_contract import TokenBucketsContract


class FakeClock:
    """Time moves only when someone sleeps, to the end of that sleep: two replicas sleeping
    at once move it once, as real time would."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        until = self.now + seconds
        await asyncio.sleep(0)
        self.now = max(self.now, until)


class TestMemoryBuckets(TokenBucketsContract):
    @pytest.fixture
    def buckets(self) -> TokenBuckets:
        return MemoryBuckets()


class Unreachable:
    """Shared buckets whose server is down until `up` is set."""

    def __init__(self, clock: FakeClock) -> None:
        self.up = False
        self.calls = 0
        self.inner = MemoryBuckets(clock)

    async def take(
        self, key: str, limit: BucketLimit, cost: float, now: float | None = None
    ) -> float:
        self.calls += 1
        if not self.up:
            raise RedisConnectionError("Connection refused")
        return await self.inner.take(key, limit, cost, now)


def most_in_any_window(times: Sequence[float], seconds: float = 1.0) -> int:
    """The most grants within `seconds` of one another (a window opening at each grant)."""
    ordered = sorted(times)
    return max(
        sum(1 for t in ordered[i:] if t < start + seconds - 1e-9) for i, start in enumerate(ordered)
    )


@given(
    rate=st.floats(0.5, 200),
    capacity=st.integers(1, 5),
    steps=st.lists(st.tuples(st.floats(0, 0.5), st.integers(1, 5)), min_size=1, max_size=60),
)
def test_a_bucket_never_grants_more_than_its_capacity_plus_its_refill(
    rate: float, capacity: int, steps: list[tuple[float, int]]
) -> None:
    limit = BucketLimit(rate, float(capacity))
    bucket: Bucket | None = None
    now, granted = 0.0, 0
    for elapsed, cost in steps:
        now += elapsed
        bucket, wait = take(bucket, limit, min(cost, capacity), now)
        granted += min(cost, capacity) if wait == 0 else 0
        assert wait >= 0
    assert granted <= capacity + rate * now + 1e-6


def test_a_rail_limit_leaves_room_for_its_costliest_call_and_late_arrivals() -> None:
    stretched = 1 + ARRIVAL_SPREAD_SECONDS
    wise = RailLimit(10, largest_call=3)
    # 3 saved up + 7 over a second stretched by the spread: 10 reach the rail in any second.
    assert wise.shared() == BucketLimit(7 / stretched, 3)
    assert wise.local(4) == BucketLimit(7 / stretched / 4, 3)
    assert RailLimit(600).shared() == BucketLimit(540 / stretched, 60)  # a tenth saved up
    limit = RailLimit(600).shared()
    # Tokens granted over 1 + spread seconds (a second at the rail) stay within the limit.
    assert limit.capacity + limit.rate * stretched <= 600 + 1e-9
    with pytest.raises(ValueError, match="no room"):
        RailLimit(3, largest_call=3)


async def test_two_replicas_sharing_a_bucket_stay_within_the_limit_together() -> None:
    clock = FakeClock()
    shared = MemoryBuckets(clock)
    limits = {"stripe": RailLimit(25)}
    replicas = [RateLimiter(shared, limits, clock=clock, sleep=clock.sleep) for _ in range(2)]
    grants: list[float] = []

    async def pay(limiter: RateLimiter, calls: int) -> None:
        for _ in range(calls):
            await limiter.acquire("stripe")
            grants.append(clock())

    start = clock()
    await asyncio.gather(*(pay(limiter, 60) for limiter in replicas for _ in range(3)))
    assert len(grants) == 360
    assert most_in_any_window(grants) <= 25
    # Not slower than the limit either: what the bucket held, then its refill.
    bucket = limits["stripe"].shared()
    assert clock() - start <= (360 - bucket.capacity) / bucket.rate + 0.1


async def test_calls_costing_several_requests_take_as_many_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(
        MemoryBuckets(clock), {"wise": RailLimit(10, 3)}, clock=clock, sleep=clock.sleep
    )
    requests: list[float] = []
    for _ in range(20):
        await limiter.acquire("wise", 3)
        requests += [clock()] * 3
    assert most_in_any_window(requests) <= 10


async def test_a_rail_without_a_limit_waits_for_nothing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(MemoryBuckets(clock), {}, clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        await limiter.acquire("sandbox")
    assert clock() == 1_000.0


async def test_redis_down_each_replica_keeps_its_share_and_comes_back() -> None:
    clock = FakeClock()
    shared = Unreachable(clock)
    shared.up = True
    limiter = RateLimiter(
        shared,
        {"stripe": RailLimit(25)},
        expected_replicas=4,
        recheck_seconds=5,
        clock=clock,
        sleep=clock.sleep,
    )
    await limiter.acquire("stripe")
    assert limiter.mode == "redis"
    assert PAYOUT_RATE_LIMIT_MODE.labels(mode="redis")._value.get() == 1

    shared.up = False
    local: list[float] = []
    for _ in range(60):
        await limiter.acquire("stripe")  # never raises: the local bucket answers
        local.append(clock())
    assert limiter.mode == "local"
    assert PAYOUT_RATE_LIMIT_MODE.labels(mode="local")._value.get() == 1
    assert PAYOUT_RATE_LIMIT_MODE.labels(mode="redis")._value.get() == 0
    # A quarter of the refill, plus what the bucket holds: 5.6 + 2.5 a second.
    share = RailLimit(25).local(4)
    assert most_in_any_window(local) <= share.rate + share.capacity
    assert shared.calls <= 2 + (local[-1] - local[0]) / 5  # asked again every 5 s, no more

    shared.up = True
    await clock.sleep(5)
    await limiter.acquire("stripe")
    assert limiter.mode == "redis"
    assert PAYOUT_RATE_LIMIT_MODE.labels(mode="redis")._value.get() == 1


async def test_the_mode_follows_redis_while_no_rail_is_called() -> None:
    """`watch` asks every recheck interval, taking nothing: an idle replica's metric says
    Redis went away, and that it came back, without waiting for the next payout."""
    clock = FakeClock()
    shared = Unreachable(clock)
    shared.up = True
    limiter = RateLimiter(
        shared, {"stripe": RailLimit(25)}, recheck_seconds=5, clock=clock, sleep=clock.sleep
    )

    async def turns_to(mode: str) -> bool:
        for _ in range(100):  # the loop's turns; the fake clock moves only when it sleeps
            if limiter.mode == mode:
                return True
            await asyncio.sleep(0)
        return False

    watching = asyncio.create_task(limiter.watch())
    try:
        shared.up = False
        assert await turns_to("local")
        assert PAYOUT_RATE_LIMIT_MODE.labels(mode="local")._value.get() == 1
        shared.up = True
        assert await turns_to("redis")
        assert PAYOUT_RATE_LIMIT_MODE.labels(mode="redis")._value.get() == 1
    finally:
        watching.cancel()
    # Nothing was taken: the bucket is as full as it was.
    assert await shared.inner.take("stripe", RailLimit(25).shared(), 2.5, clock()) == 0.0


async def test_a_stalled_redis_counts_as_down() -> None:
    clock = FakeClock()

    class Stalled:
        async def take(
            self, key: str, limit: BucketLimit, cost: float, now: float | None = None
        ) -> float:
            await asyncio.sleep(3600)
            return 0.0

    limiter = RateLimiter(Stalled(), {"paypal": RailLimit(10)}, clock=clock, sleep=clock.sleep)
    await asyncio.wait_for(limiter.acquire("paypal"), 5)
    assert limiter.mode == "local"


def test_without_redis_the_limits_are_local_from_the_start() -> None:
    limiter = RateLimiter(None, {"stripe": RailLimit(25)})
    assert limiter.mode == "local"


class Recording:
    def __init__(self) -> None:
        self.asked: list[tuple[str, int]] = []

    async def acquire(self, rail: str, cost: int = 1) -> None:
        self.asked.append((rail, cost))


async def test_every_call_to_a_limited_rail_asks_for_the_requests_it_makes() -> None:
    stripe, wise = SandboxProvider(), SandboxProvider()
    limiter = Recording()
    rails = Rails({"stripe": stripe, "wise": wise}).limited(limiter)
    request = TransferRequest("p-1", Money.of("10.00", "USD"), SecretStr("dest"), "wise", "fee")
    wise_rail = rails.get("wise")
    assert wise_rail is not None
    accepted = await wise_rail.send(request)
    assert await wise_rail.lookup(request) is not None
    await wise_rail.settlement(accepted.provider_ref)
    legacy = rails.get(None)  # payouts sent before rails were chosen: Stripe's
    assert legacy is not None
    await legacy.settlement("sbx_x")
    assert limiter.asked == [("wise", 3), ("wise", 2), ("wise", 1), ("stripe", 1)]
    assert list(wise.transfers) == ["p-1"] and not stripe.transfers
    assert rails.get("paypal") is None  # not configured: nothing to limit
    assert Rails({"stripe": stripe}).get("stripe") is stripe  # no limiter: the rail itself
