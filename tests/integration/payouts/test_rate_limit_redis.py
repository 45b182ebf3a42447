"""The rails' rate limits on the real (embedded) Redis: the script passes the contract the
in-memory buckets pass, two replicas sharing its bucket stay within the limit together, and a
Redis outage slows the payouts service to its local share without stopping it or paying
anything twice, then it shares the buckets again."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
import redis.asyncio as redis

from services.payouts.providers.sandbox import SandboxProvider
from services.payouts.rate_limit import RailLimit, RateLimiter, RedisBuckets, TokenBuckets
from services.payouts.schema import SCHEMA
from services.payouts.settings import PayoutsSettings
from shared.runtime.observability import PAYOUT_RATE_LIMIT_MODE
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import EmbeddedInfra, InfraUrls
from tests.conftest import embedded_stack
from tests.integration.isolated import schema_pool, topics
from tests.integration.payouts.kafka_io import StatusWatcher
from tests.support.kafka_io import produce_events
from tests.support.payouts_setup import ObservedPayouts
from tests.support.waiting import eventually
from tests.unit.payouts.buckets_contract import TokenBucketsContract
from tests.unit.payouts.builders import account, confirmed, funded_deal, uid
from tests.unit.payouts.test_rate_limit import FakeClock, most_in_any_window

pytestmark = [pytest.mark.integration]

db_pool = schema_pool(SCHEMA)
__all__ = ["db_pool", "topics"]


@pytest.fixture(scope="module")
def stack() -> Iterator[EmbeddedInfra]:
    yield from embedded_stack()


@pytest.fixture(scope="module")
def infra(stack: EmbeddedInfra) -> InfraUrls:
    assert stack.urls is not None
    return stack.urls


class TestRedisBuckets(TokenBucketsContract):
    @pytest.fixture
    def buckets(self, redis_client: redis.Redis) -> TokenBuckets:
        return RedisBuckets(redis_client, prefix=f"test:{uuid.uuid4().hex}:")


async def test_two_replicas_sharing_the_redis_bucket_stay_within_the_limit_together(
    infra: InfraUrls,
) -> None:
    """Two limiters, each with its own Redis connection (as two processes), on one fake clock
    given to the script as its time: the grants of both, counted in every one-second window,
    never pass the rail's limit."""
    clock = FakeClock()
    prefix = f"test:{uuid.uuid4().hex}:"
    clients = [redis.Redis.from_url(infra.redis_url) for _ in range(2)]
    limits = {"stripe": RailLimit(20)}
    replicas = [
        RateLimiter(
            RedisBuckets(client, prefix=prefix, clock=clock), limits, clock=clock, sleep=clock.sleep
        )
        for client in clients
    ]
    grants: list[float] = []

    async def pay(limiter: RateLimiter, calls: int) -> None:
        for _ in range(calls):
            await limiter.acquire("stripe")
            grants.append(clock())

    try:
        await asyncio.gather(*(pay(limiter, 30) for limiter in replicas for _ in range(2)))
    finally:
        for client in clients:
            await client.aclose()
    assert all(limiter.mode == "redis" for limiter in replicas)
    assert len(grants) == 120
    assert most_in_any_window(grants) <= 20
    # And the bucket is used, not starved: what it saves up and about a second of its refill
    # (the rest of the limit is left for calls reaching the rail late).
    bucket = limits["stripe"].shared()
    assert most_in_any_window(grants) >= bucket.capacity + bucket.rate - 1


async def _owe(infra: InfraUrls, db_pool: asyncpg.Pool, count: int) -> list[str]:
    """`count` creators paid through Stripe, each owed one fee."""
    deals = []
    for _ in range(count):
        deal, creator = uid("deal"), uid("cr")
        first = account(creator, currency="USD", destination="acct_1Local", method="stripe")
        funding, signed = funded_deal(deal, creator)
        await produce_events(infra.kafka_bootstrap_servers, [first, funding])

        async def stored(ids: list[str] = [first.id, funding.id]) -> bool:  # noqa: B006
            found = await db_pool.fetchval(
                "SELECT count(*) FROM processed_events WHERE event_id = ANY($1::text[])", ids
            )
            return bool(found == len(ids))

        await eventually(stored, what="the account and the funding stored")
        await produce_events(
            infra.kafka_bootstrap_servers,
            [signed, confirmed(deal, "dl-1"), confirmed(deal, "dl-2")],
        )
        deals.append(deal)
    return deals


async def _all_sent(watcher: StatusWatcher, deals: list[str]) -> None:
    def sent() -> bool:
        return all(any(e.type == "payout.sent" for e in watcher.of({deal})) for deal in deals)

    await watcher.wait_for(sent, seconds=60, what="every payout sent")


async def test_a_redis_outage_slows_payouts_to_the_local_share_and_pays_none_twice(
    stack: EmbeddedInfra, infra: InfraUrls, watcher: StatusWatcher, db_pool: asyncpg.Pool
) -> None:
    if "redis" not in stack.processes:
        pytest.skip("Redis is external (REDIS_URL): this test stops and starts its own")
    sandbox = SandboxProvider()
    settings = PayoutsSettings(
        settle_check_seconds=3600,
        dispatch_idle_seconds=0.2,
        commission_check_seconds=3600,
        stripe_rate_limit=50,
        expected_replicas=2,
        rate_limit_recheck_seconds=0.3,
    )
    setup = ObservedPayouts(
        settings, sandbox, group_id=f"payouts-rl-{uuid.uuid4().hex[:8]}", rate_limited=True
    )
    runtime = ServiceRuntime(
        "payouts", setup, schema=SCHEMA, urls=infra, uses_redis=True, redis_required=False
    )
    async with runtime:
        assert setup.service is not None and setup.service.limiter is not None
        limiter = setup.service.limiter
        before = await _owe(infra, db_pool, 3)
        await _all_sent(watcher, before)
        assert limiter.mode == "redis"

        await asyncio.to_thread(stack.stop_server, "redis")
        during = await _owe(infra, db_pool, 3)
        await _all_sent(watcher, during)
        assert limiter.mode == "local"
        assert PAYOUT_RATE_LIMIT_MODE.labels(mode="local")._value.get() == 1

        await asyncio.to_thread(stack.start_server, "redis")
        after = await _owe(infra, db_pool, 3)
        await _all_sent(watcher, after)
        await eventually(lambda: _shared(limiter), what="the buckets shared again")
        await asyncio.sleep(0.5)  # time for a second transfer to show up, if one were coming
    deals = before + during + after
    sent = [e for e in watcher.of(set(deals)) if e.type == "payout.sent"]
    assert sorted(e.data.deal_id for e in sent) == sorted(deals)  # each once
    assert len(sandbox.transfers) == len(deals) and sandbox.calls == len(deals)


async def _shared(limiter: RateLimiter) -> bool:
    # A settlement poll or a send asks the buckets; a stray call here asks too.
    await limiter.acquire("stripe")
    return limiter.mode == "redis"
