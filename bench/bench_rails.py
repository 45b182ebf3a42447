"""Rails benchmark: a burst of payouts through a rail that answers in 50 ms, under its rate limit.

Starts the embedded Kafka/PostgreSQL/Redis and two payouts replicas (one consumer group, one
rate-limit bucket per rail in Redis). Every creator is paid through Stripe, here a fake rail
that answers each call after `--latency-ms` and notes when each call reached it. `--burst`
confirmations are produced at once; printed: payouts/s from the first confirmation produced
to the last `payout.sent`, the rail's limit, the most calls the rail saw in any one second
(the limit is never to be passed), and the most calls it had under way at once (bounded by
the dispatchers' batches). Issue 18 asks for >= 500 payouts/s with a 50 ms rail, never over
the rail's limit. Printed, not asserted, beside a baseline: the same burst through the same
replicas without a limit, in the same run; and the limiter's own ceiling for the burst (its
saved-up tokens, then its refill), which no dispatcher can beat at that limit.

Usage: python bench/bench_rails.py [--burst 3000] [--limit 600] [--latency-ms 50]
"""

from __future__ import annotations

import asyncio
import bisect
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from services.payouts.providers import Settlement, TransferAccepted, TransferRequest
from services.payouts.rate_limit import RailLimit
from services.payouts.schema import SCHEMA
from services.payouts.settings import PayoutsSettings
from shared.contract.events import Topic, decode
from shared.runtime.service import ServiceRuntime
from shared.tools.infra import InfraUrls
from shared.tools.latency_floor import Arrivals

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from command_line import run_with_options  # bench/ is the script's directory
from servers import (  # bench/ is the script's directory
    embedded_servers,
    produce_all,
    quiet_logs,
    stored,
)

from tests.support.payouts_setup import ObservedPayouts
from tests.unit.payouts.builders import account, confirmed, funded_deal

REPLICAS = 2


class SlowRail:
    """A rail answering every call after `latency` seconds; notes when each call arrived."""

    name = "stripe"

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.arrivals: list[float] = []
        self.keys: set[str] = set()
        self.under_way = 0
        self.most_under_way = 0

    async def _call(self) -> None:
        self.arrivals.append(time.monotonic())
        self.under_way += 1
        self.most_under_way = max(self.most_under_way, self.under_way)
        try:
            await asyncio.sleep(self.latency)
        finally:
            self.under_way -= 1

    async def send(self, request: TransferRequest) -> TransferAccepted:
        await self._call()
        self.keys.add(request.idempotency_key)
        return TransferAccepted(f"tr_{request.idempotency_key}")

    async def lookup(self, request: TransferRequest) -> TransferAccepted | None:
        await self._call()
        known = request.idempotency_key in self.keys
        return TransferAccepted(f"tr_{request.idempotency_key}", True) if known else None

    async def settlement(self, provider_ref: str) -> Settlement:
        await self._call()
        return Settlement("pending")

    async def aclose(self) -> None:
        return None


def most_in_one_second(times: list[float]) -> int:
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered)), default=0)


def sent_deal(record: Any) -> str | None:
    event = decode(record.topic, record.value or b"")
    return str(event.data.deal_id) if event.type == "payout.sent" else None


async def burst_through(
    urls: InfraUrls, burst: int, limit: float, latency: float, *, limited: bool = True
) -> dict[str, Any]:
    rail = SlowRail(latency)
    settings = PayoutsSettings(
        stripe_rate_limit=limit,
        expected_replicas=REPLICAS,
        settle_check_seconds=3600,
        commission_check_seconds=3600,
    )
    group = f"payouts-bench-rails-{uuid.uuid4().hex[:6]}"
    setups = [
        ObservedPayouts(settings, rail, group_id=group, rate_limited=limited)
        for _ in range(REPLICAS)
    ]
    run = uuid.uuid4().hex[:8]
    deals = [f"bench-{run}-{i}" for i in range(burst)]
    bootstrap = urls.kafka_bootstrap_servers
    async with AsyncExitStack() as stack:
        for setup in setups:
            runtime = ServiceRuntime("payouts", setup, schema=SCHEMA, urls=urls, uses_redis=True)
            await stack.enter_async_context(runtime)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        stack.push_async_callback(producer.stop)
        receiver = Arrivals(bootstrap, Topic.PAYOUTS_STATUS, sent_deal)
        await receiver.start()
        stack.push_async_callback(receiver.stop)
        signed = []
        for deal in deals:
            # Funded by its brand: an unfunded deal's payout waits for funds and never sends.
            signed += [
                account(f"cr-{deal}", currency="USD"),
                *funded_deal(deal, f"cr-{deal}", deliverables=(("dl-1", 1),)),
            ]
        await produce_all(producer, signed)
        assert setups[0].service is not None
        pool = setups[0].service.db.pool
        await stored(pool, "payouts_deals", f"bench-{run}-", len(deals), seconds=300)
        rail.arrivals.clear()
        began = time.perf_counter()
        confirmations = [confirmed(d, "dl-1") for d in deals]
        await produce_all(producer, confirmations)
        await receiver.wait_for(set(deals), 600)
        elapsed = max(receiver.received[d] for d in deals) - began
        modes = [s.service.limiter.mode for s in setups if s.service and s.service.limiter]
    return {
        "per_second": burst / elapsed,
        "most_in_a_second": most_in_one_second(rail.arrivals),
        "calls": len(rail.arrivals),
        "paid": len(rail.keys),
        "most_under_way": rail.most_under_way,
        "modes": modes,
    }


async def main(burst: int, limit: float, latency_ms: float) -> None:
    quiet_logs()
    root = Path(tempfile.mkdtemp(prefix="creatorflow-bench-rails-"))
    async with embedded_servers(root) as urls:
        unlimited = await burst_through(urls, burst, limit, latency_ms / 1000, limited=False)
        result = await burst_through(urls, burst, limit, latency_ms / 1000)
    most = result["most_in_a_second"]
    print(
        f"rails benchmark: a burst of {burst} payouts through a rail answering in "
        f"{latency_ms:g} ms, limited to {limit:g} requests/s, {REPLICAS} replicas sharing "
        f"its bucket in Redis (mode: {', '.join(result['modes'])})"
    )
    print(
        f"throughput: {result['per_second']:.0f} payouts/s "
        f"({result['per_second'] / limit:.2f} of the rail's limit; issue 18 asks >= 500/s)"
    )
    # What the limiter lets through at most: its saved-up tokens at once, then its refill.
    # One call a payout here, so this bounds the burst's payouts/s whatever the code does.
    bucket = RailLimit(limit)
    ceiling = burst / ((burst - bucket.capacity) / bucket.refill)
    print(
        f"the limiter's ceiling: {bucket.capacity:g} calls at once, then {bucket.refill:.0f}/s, "
        f"so at most {ceiling:.0f} payouts/s for this burst ({result['per_second'] / ceiling:.2f} "
        "of it reached)"
    )
    print(
        f"baseline, the same burst without a limit: {unlimited['per_second']:.0f} payouts/s, "
        f"{unlimited['most_in_a_second']} calls in its busiest second "
        f"(ratio limited / unlimited {result['per_second'] / unlimited['per_second']:.2f})"
    )
    verdict = "never over it" if most <= limit else "OVER the limit"
    print(f"most calls the rail saw in any one second: {most} ({verdict}, limit {limit:g})")
    print(
        f"calls: {result['calls']} for {result['paid']} payouts; "
        f"most under way at once: {result['most_under_way']}"
    )


if __name__ == "__main__":
    run_with_options(main, __doc__, burst=3000, limit=600.0, latency_ms=50.0)
