"""Rails benchmark: a burst of payouts through a rail that answers in 50 ms, under its rate limit.

Starts the embedded Kafka/PostgreSQL/Redis and two payouts replicas, each in its own process as
deployed (one consumer group, one rate-limit bucket per rail in Redis). Every creator is paid
through Stripe, here a local server that follows Stripe's transfers API (the one the tests
use), in a process of its own as a rail on another host, that answers each request after
`--latency-ms` and notes when each reached it. `--burst` confirmations are produced at once;
printed: payouts/s from the first confirmation produced to the last `payout.sent`, the rail's
limit, the most requests the rail saw in any one second (the limit is never to be passed), the
most it had under way at once (bounded by the dispatchers' rounds), and whether the goal is
met: >= 500 payouts/s with a 50 ms rail, never over the rail's limit. Printed, not asserted,
beside a baseline: the same burst through the same kind of replicas with a limit far above what
they can ask, in the same run; and the limiter's own ceiling for the burst (its saved-up
tokens, then its refill), which no dispatcher can beat at that limit.

Usage: python bench/bench_rails.py [--burst 3000] [--limit 600] [--latency-ms 50]
"""

from __future__ import annotations

import bisect
import sys
import tempfile
import time
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TextIO

from aiokafka import AIOKafkaProducer

from services.payouts.rate_limit import RailLimit
from services.payouts.schema import SCHEMA
from shared.contract.events import Topic
from shared.runtime.db import create_pool
from shared.tools.infra import InfraUrls
from shared.tools.infra.service_processes import ServiceProcesses, service_metrics
from shared.tools.latency_floor import Arrivals, of_type

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from command_line import run_with_options, verdict  # bench/ is the script's directory
from servers import (  # bench/ is the script's directory
    embedded_servers,
    produce_all,
    quiet_logs,
    stored,
)

from tests.integration.payouts.stripe_server import FakeStripe
from tests.unit.payouts.builders import account, confirmed, funded_deal

REPLICAS = 2
DESTINATION = "acct_test_destination_1"  # every creator's (the builders' default)
UNLIMITED = 1_000_000.0  # requests/s: far above what two replicas can ask
GOAL_PER_SECOND = 500


def most_in_one_second(times: list[float]) -> int:
    ordered = sorted(times)
    return max((bisect.bisect_left(ordered, t + 1.0) - i for i, t in enumerate(ordered)), default=0)


async def burst_through(
    urls: InfraUrls, burst: int, limit: float, latency: float, log: TextIO
) -> dict[str, Any]:
    rail = FakeStripe(accounts={DESTINATION}, latency=latency)
    run = uuid.uuid4().hex[:8]
    deals = [f"bench-{run}-{i}" for i in range(burst)]
    bootstrap = urls.kafka_bootstrap_servers
    env = urls.as_env() | {
        "PAYOUTS_PROVIDER": "rails",
        "PAYOUTS_STRIPE_API_KEY": rail.api_key,
        "PAYOUTS_STRIPE_RATE_LIMIT": str(limit),
        "PAYOUTS_EXPECTED_REPLICAS": str(REPLICAS),
        "PAYOUTS_SETTLE_CHECK_SECONDS": "3600",
        "PAYOUTS_COMMISSION_CHECK_SECONDS": "3600",
    }
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(rail.in_own_process())
        env["PAYOUTS_STRIPE_API_BASE"] = rail.base_url
        processes = ServiceProcesses((), env, lambda label, line: log.write(f"{label} {line}\n"))
        await stack.enter_async_context(processes)
        labels = [f"payouts-{i + 1}" for i in range(REPLICAS)]
        for label in labels:
            await processes.launch("payouts", label)
        for label in labels:
            await processes.wait_ready(label)
        pool = await create_pool(urls.database_url, schema=SCHEMA.name)
        stack.push_async_callback(pool.close)
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
        await producer.start()
        stack.push_async_callback(producer.stop)
        receiver = Arrivals(bootstrap, Topic.PAYOUTS_STATUS, of_type("payout.sent"))
        await receiver.start()
        stack.push_async_callback(receiver.stop)
        signed = []
        for deal in deals:
            # Funded by its brand: an unfunded deal's payout waits for funds and never sends.
            signed += [
                account(f"cr-{deal}", currency="USD", destination=DESTINATION),
                *funded_deal(deal, f"cr-{deal}", deliverables=(("dl-1", 1),)),
            ]
        await produce_all(producer, signed)
        await stored(pool, "payouts_deals", f"bench-{run}-", len(deals), seconds=300)
        began = time.perf_counter()  # the receiver's clock
        cut = time.monotonic()  # the rail's (its process's requests are timed with it)
        confirmations = [confirmed(d, "dl-1") for d in deals]
        await produce_all(producer, confirmations)
        await receiver.wait_for(set(deals), 600)
        elapsed = max(receiver.received[d] for d in deals) - began
        modes = [await _limiter_mode(processes.running[label].http_port) for label in labels]
    arrivals = [r.at for r in rail.requests if r.at >= cut]
    return {
        "per_second": burst / elapsed,
        "most_in_a_second": most_in_one_second(arrivals),
        "calls": len(arrivals),
        "paid": len(rail.transfers),
        "most_under_way": rail.most_under_way,
        "modes": modes,
    }


async def _limiter_mode(http_port: int) -> str:
    """Where a replica keeps its rate-limit buckets (`redis` or `local`), from its /metrics."""
    for family in await service_metrics(http_port):
        if family.name == "creatorflow_payout_rate_limit_mode":
            return next((s.labels["mode"] for s in family.samples if s.value == 1), "?")
    return "?"


async def main(burst: int, limit: float, latency_ms: float) -> None:
    quiet_logs()
    root = Path(tempfile.mkdtemp(prefix="creatorflow-bench-rails-"))
    with (root / "payouts.log").open("a") as log:
        # Each burst on servers of its own: nothing of the first (consumer-group members,
        # payouts whose settlement is polled) reaches into the second.
        async with embedded_servers(root / "unlimited") as urls:
            unlimited = await burst_through(urls, burst, UNLIMITED, latency_ms / 1000, log)
        async with embedded_servers(root / "limited") as urls:
            result = await burst_through(urls, burst, limit, latency_ms / 1000, log)
    most = result["most_in_a_second"]
    print(
        f"rails benchmark: a burst of {burst} payouts through a rail answering in "
        f"{latency_ms:g} ms, limited to {limit:g} requests/s, {REPLICAS} replicas (each its own "
        f"process) sharing its bucket (mode: {', '.join(result['modes'])}); their output: "
        f"{root / 'payouts.log'}"
    )
    print(
        f"throughput: {result['per_second']:.0f} payouts/s "
        f"({result['per_second'] / limit:.2f} of the rail's limit)"
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
        f"baseline, the same burst without a limit that binds: "
        f"{unlimited['per_second']:.0f} payouts/s, "
        f"{unlimited['most_in_a_second']} requests in its busiest second "
        f"(ratio limited / unlimited {result['per_second'] / unlimited['per_second']:.2f})"
    )
    over = "never over it" if most <= limit else "OVER the limit"
    print(f"most requests the rail saw in any one second: {most} ({over}, limit {limit:g})")
    met = result["per_second"] >= GOAL_PER_SECOND and most <= limit
    print(f"goal >= {GOAL_PER_SECOND} payouts/s, never over the rail's limit: {verdict(met)}")
    print(
        f"requests: {result['calls']} for {result['paid']} payouts; "
        f"most under way at once: {result['most_under_way']}"
    )


if __name__ == "__main__":
    run_with_options(main, __doc__, burst=3000, limit=600.0, latency_ms=50.0)
