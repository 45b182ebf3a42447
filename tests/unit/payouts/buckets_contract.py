"""The contract every `TokenBuckets` adapter passes (subclassed per adapter): the in-memory
buckets here, the Redis script on the real embedded Redis in
tests/integration/payouts/test_rate_limit_redis.py. Each answer is compared with the pure
arithmetic of services/payouts/domain/token_bucket.py."""

from __future__ import annotations

import random

import pytest

from services.payouts.domain.token_bucket import Bucket, BucketLimit, take
from services.payouts.rate_limit import TokenBuckets

T0 = 1_000.0
TEN_A_SECOND = BucketLimit(rate=10.0, capacity=2.0)


class TokenBucketsContract:
    @pytest.fixture
    def buckets(self) -> TokenBuckets:
        raise NotImplementedError

    @pytest.fixture
    def key(self) -> str:
        return f"rail-{random.getrandbits(48):x}"

    async def test_a_new_bucket_is_full_then_names_the_wait(
        self, buckets: TokenBuckets, key: str
    ) -> None:
        assert await buckets.take(key, TEN_A_SECOND, 1, T0) == 0.0
        assert await buckets.take(key, TEN_A_SECOND, 1, T0) == 0.0
        assert await buckets.take(key, TEN_A_SECOND, 1, T0) == pytest.approx(0.1)

    async def test_the_named_wait_is_enough_and_a_refusal_takes_nothing(
        self, buckets: TokenBuckets, key: str
    ) -> None:
        await buckets.take(key, TEN_A_SECOND, 2, T0)
        first = await buckets.take(key, TEN_A_SECOND, 2, T0 + 0.05)
        assert first == pytest.approx(0.15)
        assert await buckets.take(key, TEN_A_SECOND, 2, T0 + 0.05) == pytest.approx(0.15)
        assert await buckets.take(key, TEN_A_SECOND, 2, T0 + 0.05 + first) == 0.0

    async def test_tokens_saved_up_stop_at_the_capacity(
        self, buckets: TokenBuckets, key: str
    ) -> None:
        await buckets.take(key, TEN_A_SECOND, 2, T0)
        later = T0 + 3600
        granted = [await buckets.take(key, TEN_A_SECOND, 1, later) for _ in range(3)]
        assert granted[:2] == [0.0, 0.0] and granted[2] > 0

    async def test_a_clock_stepping_back_mints_nothing(
        self, buckets: TokenBuckets, key: str
    ) -> None:
        await buckets.take(key, TEN_A_SECOND, 2, T0 + 10)
        assert await buckets.take(key, TEN_A_SECOND, 1, T0) == pytest.approx(0.1)
        assert await buckets.take(key, TEN_A_SECOND, 1, T0 + 10.1) == 0.0

    async def test_a_call_larger_than_the_bucket_is_refused(
        self, buckets: TokenBuckets, key: str
    ) -> None:
        with pytest.raises(ValueError, match="never fits"):
            await buckets.take(key, TEN_A_SECOND, 3, T0)

    async def test_buckets_are_apart_by_key(self, buckets: TokenBuckets, key: str) -> None:
        await buckets.take(key, TEN_A_SECOND, 2, T0)
        assert await buckets.take(key + "-other", TEN_A_SECOND, 2, T0) == 0.0

    async def test_every_answer_is_the_arithmetic_of_the_domain(
        self, buckets: TokenBuckets, key: str
    ) -> None:
        draw = random.Random(1414)
        limit = BucketLimit(rate=7.5, capacity=3.0)
        model: Bucket | None = None
        now = T0
        for _ in range(150):
            now = round(now + draw.choice([0.0, 0.0, 0.013, 0.1, 0.4, -0.2]), 3)
            cost = draw.choice([1, 1, 2, 3])
            model, expected = take(model, limit, cost, now)
            assert await buckets.take(key, limit, cost, now) == pytest.approx(expected, abs=1e-6)

    async def test_without_a_time_the_store_reads_its_own_clock(
        self, buckets: TokenBuckets, key: str
    ) -> None:
        slow = BucketLimit(rate=0.5, capacity=1.0)
        assert await buckets.take(key, slow, 1) == 0.0
        assert 0 < await buckets.take(key, slow, 1) <= 2.0
