"""Payouts benchmark: confirmation -> `payout.sent` latency at a steady rate, and payouts/s.

Starts the embedded Kafka/PostgreSQL/Redis, then:

1. baseline: a raw aiokafka produce -> consume round trip through the same broker, at the same
   rate and with messages of the same size (a `deliverable.confirmed` event), p50/p99;
2. the payouts service (one instance in its own process, as deployed; sandbox provider at
   zero latency, 5 % platform fee, FX conversion into EUR/JPY/KWD): for deals already signed,
   with accounts on file, one `deliverable.confirmed` each at `--rate` per second; latency
   from producing the confirmation to receiving its `payout.sent` on `payouts.status`,
   p50/p99;
3. throughput: `--burst` confirmations produced at once; payouts/s until the last
   `payout.sent`, against the raw broker's consume rate for the same number of messages.

Each goal is printed with whether this run met it: p99 <= 250 ms, p99 <= 5x the raw round
trip's p99, and a burst of >= 2,000 payouts/s.

Usage: python bench/bench_payouts.py [--rate 200] [--count 2000] [--burst 3000]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from services.payouts.schema import SCHEMA
from shared.contract.events import CloudEvent, Topic, encode, event_key
from shared.runtime.db import create_pool
from shared.runtime.kafka import ensure_topics
from shared.tools.infra import InfraUrls
from shared.tools.infra.service_processes import ServiceProcesses
from shared.tools.latency_floor import (
    Arrivals,
    of_type,
    paced,
    payout_stages,
    quantile,
    stage_lines,
    stage_quantiles,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from command_line import run_with_options, verdict  # bench/ is the script's directory
from servers import (  # bench/ is the script's directory
    embedded_servers,
    produce_all,
    quiet_logs,
    stored,
)

from tests.unit.payouts.builders import account, confirmed, funded_deal, fx

BASELINE_TOPIC = "bench.payouts-roundtrip"
# Confirmation -> payout.sent p99 within this many times the raw round trip's p99, and the
# burst's payouts/s with the zero-latency sandbox.
GOAL_FLOOR_RATIO = 5.0
GOAL_BURST_PER_SECOND = 2000
RATES = {"EUR": "0.9215", "JPY": "151.32", "KWD": "0.3071"}
CURRENCIES = ["EUR", "JPY", "KWD", "USD"]


wall_sent_at: dict[str, float] = {}


async def baseline(urls: InfraUrls, rate: float, count: int, burst: int) -> dict[str, float]:
    bootstrap = urls.kafka_bootstrap_servers
    await ensure_topics(bootstrap, partitions=3, replication_factor=1, topics=[BASELINE_TOPIC])
    receiver = Arrivals(bootstrap, BASELINE_TOPIC, lambda r: r.key.decode())
    await receiver.start()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    value = encode(confirmed("deal-baseline-" + uuid.uuid4().hex, "dl-1"))
    try:
        tags = [f"rt-{i}" for i in range(count)]
        sent_at: dict[str, float] = {}
        await paced(producer, [(BASELINE_TOPIC, t.encode(), value, t) for t in tags], rate, sent_at)
        await receiver.wait_for(set(tags), 60)
        latencies = [receiver.received[t] - sent_at[t] for t in tags]
        burst_tags = [f"burst-{i}" for i in range(burst)]
        began = time.perf_counter()
        pending = [await producer.send(BASELINE_TOPIC, value, key=t.encode()) for t in burst_tags]
        await asyncio.gather(*pending)
        await receiver.wait_for(set(burst_tags), 60)
        elapsed = max(receiver.received[t] for t in burst_tags) - began
    finally:
        await producer.stop()
        await receiver.stop()
    return _summary(latencies, burst, elapsed)


def _summary(latencies: list[float], burst: int, elapsed: float) -> dict[str, float]:
    """The p50 and p99 of `latencies`, and the rate of a burst of `burst` in `elapsed` s."""
    return {
        "p50": quantile(latencies, 0.5),
        "p99": quantile(latencies, 0.99),
        "per_second": burst / elapsed,
    }


async def payouts(
    urls: InfraUrls, root: Path, rate: float, count: int, burst: int
) -> dict[str, float]:
    bootstrap = urls.kafka_bootstrap_servers
    env = urls.as_env() | {
        "PAYOUTS_PLATFORM_FEE_BPS": "500",
        "PAYOUTS_SANDBOX_LATENCY_MS": "0",
        # Settlement is polled at the service's default interval (1 s), as deployed: polled
        # less often, it settles more at once, and that holds up the payouts being sent.
    }
    run = uuid.uuid4().hex[:8]
    steady = [f"bench-{run}-s{i}" for i in range(count)]
    bursty = [f"bench-{run}-b{i}" for i in range(burst)]
    creators = {deal: f"cr-{deal}" for deal in steady + bursty}
    # The service runs in its own process, as deployed: the bench's own producing and reading
    # (decoding every payout.sent) would otherwise share its event loop and its core.
    async with AsyncExitStack() as stack:
        log = stack.enter_context((root / "payouts.log").open("a"))
        await stack.enter_async_context(
            ServiceProcesses(("payouts",), env, lambda _, line: log.write(line + "\n"))
        )
        pool = await create_pool(urls.database_url, schema=SCHEMA.name)
        stack.push_async_callback(pool.close)
        # As the floor's producer: a linger would be counted in every latency, not in the floor.
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
        await producer.start()
        receiver = Arrivals(bootstrap, Topic.PAYOUTS_STATUS, of_type("payout.sent"))
        await receiver.start()
        try:
            setup_events: list[CloudEvent[Any]] = [fx(RATES)]
            for i, (deal, creator) in enumerate(creators.items()):
                setup_events.append(account(creator, currency=CURRENCIES[i % len(CURRENCIES)]))
                # The brand funds each fee with its deal: no payout waits for funds.
                setup_events += funded_deal(deal, creator, deliverables=(("dl-1", 1),))
            await produce_all(producer, setup_events)
            await stored(pool, "payouts_deals", f"bench-{run}-", len(creators))
            # A short warm-up at the same rate, not measured.
            warm = [f"bench-{run}-w{i}" for i in range(50)]
            await produce_all(
                producer,
                [account(f"cr-{d}", currency="EUR") for d in warm]
                + [e for d in warm for e in funded_deal(d, f"cr-{d}", deliverables=(("dl-1", 1),))],
            )
            await asyncio.sleep(2)
            await paced(producer, _confirmations(warm), rate, {})
            await receiver.wait_for(set(warm), 60)

            sent_at: dict[str, float] = {}
            await paced(producer, _confirmations(steady), rate, sent_at, wall_sent_at)
            await receiver.wait_for(set(steady), 120)
            latencies = [receiver.received[d] - sent_at[d] for d in steady]
            stages = await _stages(pool, steady, receiver.wall)

            began = time.perf_counter()
            await produce_all(producer, [confirmed(d, "dl-1") for d in bursty])
            await receiver.wait_for(set(bursty), 300)
            elapsed = max(receiver.received[d] for d in bursty) - began
        finally:
            await receiver.stop()
            await producer.stop()
    return {
        **_summary(latencies, burst, elapsed),
        "mean": statistics.fmean(latencies),
        **stages,
    }


async def _stages(
    pool: Any, deals: Sequence[str], wall_received_at: dict[str, float]
) -> dict[str, float]:
    """Median and p99 time spent in each stage (wall clock, database timestamps), in seconds."""
    ids = {d: confirmation_ids[d] for d in deals}
    parts = await payout_stages(pool, ids, wall_sent_at, wall_received_at)
    return stage_quantiles(parts)


confirmation_ids: dict[str, str] = {}


def _confirmations(deals: Sequence[str]) -> list[tuple[str, bytes, bytes, str]]:
    out = []
    for deal in deals:
        event = confirmed(deal, "dl-1")
        confirmation_ids[deal] = event.id
        out.append((Topic.DELIVERABLES_CONFIRMED.value, event_key(event), encode(event), deal))
    return out


async def main(rate: float, count: int, burst: int) -> None:
    quiet_logs()
    root = Path(tempfile.mkdtemp(prefix="creatorflow-bench-payouts-"))
    async with embedded_servers(root) as urls:
        base = await baseline(urls, rate, count, burst)
        service = await payouts(urls, root, rate, count, burst)
    ms = 1000.0
    print(f"payouts benchmark: {count} confirmations at {rate:g}/s, then a burst of {burst}")
    print("  zero-latency sandbox provider, 5 % platform fee, FX into EUR/JPY/KWD/USD")
    print(f"{'':42}{'p50 ms':>10}{'p99 ms':>10}")
    print(
        f"{'baseline: raw produce -> consume':42}{base['p50'] * ms:10.1f}{base['p99'] * ms:10.1f}"
    )
    print(
        f"{'payouts: confirmation -> payout.sent':42}"
        f"{service['p50'] * ms:10.1f}{service['p99'] * ms:10.1f}"
    )
    print(
        f"{'ratio (payouts / baseline)':42}"
        f"{service['p50'] / base['p50']:10.1f}{service['p99'] / base['p99']:10.1f}"
    )
    for line in stage_lines(service):
        print(line)
    ratio = service["p99"] / base["p99"]
    print(f"goal p99 <= 250 ms: {verdict(service['p99'] * ms <= 250)}")
    print(f"goal p99 <= {GOAL_FLOOR_RATIO:g}x the raw p99: {verdict(ratio <= GOAL_FLOOR_RATIO)}")
    print(
        f"throughput: {service['per_second']:.0f} payouts/s "
        f"(raw broker {base['per_second']:.0f} msg/s for the same {burst} messages, "
        f"ratio {service['per_second'] / base['per_second']:.3f})"
    )
    print(
        f"goal burst >= {GOAL_BURST_PER_SECOND:,} payouts/s: "
        f"{verdict(service['per_second'] >= GOAL_BURST_PER_SECOND)}"
    )


if __name__ == "__main__":
    run_with_options(main, __doc__, rate=200.0, count=2000, burst=3000)
