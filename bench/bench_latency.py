"""End-to-end latency benchmark: post observed -> deliverable auto-confirmed -> `payout.sent`.

Starts the embedded Kafka/PostgreSQL/Redis, then in the same run:

1. floor: the same three broker hops done by raw aiokafka clients and nothing else: a
   post-sized message produced to a topic, read by a relay that produces a confirmation-sized
   message to a second topic, read by a relay that produces a payout-sized message to a third,
   read by the receiver; at `--rate` per second, p50/p99 from the first send to the last
   receipt;
2. the tracking and payouts services (one instance each, each in its own process as
   deployed; sandbox provider at zero latency): for deals already signed, with accounts on
   file and FX rates current, one `post.metrics.observed` at `--rate` per second, each the
   post that completes its deal's only deliverable. Tracking confirms the deliverable
   (`deliverable.confirmed`), payouts pays the fee; latency from producing the post to
   receiving its deal's `payout.sent`, p50/p99, with the time to `deliverable.confirmed` and
   from there to `payout.sent` apart, and the stages of the latter. Beside it, the mean of
   payouts' own `creatorflow_payout_post_to_sent_seconds` (its /metrics) over the same
   payouts: it ends when the payout is recorded as sent, before the relay publishes it.

Prints both latencies, their ratio and whether post -> `payout.sent` p99 <= 1 s.
Usage: python bench/bench_latency.py [--rate 200] [--count 2000]
"""

from __future__ import annotations

import sys
import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from shared.contract.events import CloudEvent, Topic, encode, event_key
from shared.runtime.db import create_pool
from shared.tools.infra import InfraUrls
from shared.tools.infra.service_processes import ServiceProcesses, service_metrics
from shared.tools.latency_floor import (
    Arrivals,
    chained_floor,
    of_type,
    paced,
    payout_stages,
    post_to_payout_hops,
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

from tests.unit.payouts.builders import account, funded_deal, fx
from tests.unit.tracking.builders import post_event

RATES = {"EUR": "0.9215", "JPY": "151.32", "KWD": "0.3071"}
CURRENCIES = ["EUR", "JPY", "KWD", "USD"]
POST_TO_SENT = "creatorflow_payout_post_to_sent_seconds"


async def floor(urls: InfraUrls, rate: float, count: int) -> dict[str, float]:
    latencies = await chained_floor(
        urls.kafka_bootstrap_servers, post_to_payout_hops(), rate=rate, count=count, warm_up=50
    )
    return {"p50": quantile(latencies, 0.5), "p99": quantile(latencies, 0.99)}


def posts(deals: Sequence[str], now: datetime) -> list[tuple[str, bytes, bytes, str]]:
    out = []
    for deal in deals:
        event = post_event(
            f"post-{deal}",
            creator_id=f"cr-{deal}",
            deal_id=deal,
            kind="post",
            posted_at=now - timedelta(hours=1),
            observed_at=now,
        )
        out.append((Topic.TRACKING_POST_METRICS.value, event_key(event), encode(event), deal))
    return out


async def scrape(http_port: int, name: str) -> tuple[float, float]:
    """(count, sum) of histogram `name` on a service's /metrics."""
    values = {
        sample.name: sample.value
        for family in await service_metrics(http_port)
        for sample in family.samples
    }
    return values.get(f"{name}_count", 0.0), values.get(f"{name}_sum", 0.0)


async def services(urls: InfraUrls, rate: float, count: int, logs: Path) -> dict[str, float]:
    """Tracking and payouts, each in its own process as deployed, with the floor's load."""
    bootstrap = urls.kafka_bootstrap_servers
    run = uuid.uuid4().hex[:8]
    prefix = f"lat-{run}-"
    steady = [f"{prefix}s{i}" for i in range(count)]
    warm = [f"{prefix}w{i}" for i in range(50)]
    now = datetime.now(UTC)
    env = urls.as_env() | {
        "PAYOUTS_PLATFORM_FEE_BPS": "500",
        "PAYOUTS_SANDBOX_LATENCY_MS": "0",
        # Settlement is polled at the service's default interval (1 s), as deployed: polled
        # less often, it settles more at once, and that holds up the payouts being sent.
    }
    output = {name: (logs / f"{name}.log").open("a") for name in ("tracking", "payouts")}

    def write(label: str, line: str) -> None:
        output[label].write(line + "\n")

    pools = [
        await create_pool(urls.database_url, schema=schema, max_size=2)
        for schema in ("tracking", "payouts")
    ]
    try:
        async with ServiceProcesses(("tracking", "payouts"), env, write) as processes:
            port = processes.running["payouts"].http_port
            return await _measure(bootstrap, rate, now, warm, steady, prefix, pools, port)
    finally:
        for pool in pools:
            await pool.close()
        for file in output.values():
            file.close()


async def _measure(
    bootstrap: str,
    rate: float,
    now: datetime,
    warm: list[str],
    steady: list[str],
    prefix: str,
    pools: list[Any],
    payouts_port: int,
) -> dict[str, float]:
    tracking_pool, payouts_pool = pools
    # As the floor's producer: a linger would be counted in every latency, not in the floor.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    ids: dict[str, str] = {}
    confirmations = Arrivals(
        bootstrap, Topic.DELIVERABLES_CONFIRMED, of_type("deliverable.confirmed", ids)
    )
    paid = Arrivals(bootstrap, Topic.PAYOUTS_STATUS, of_type("payout.sent"))
    await confirmations.start()
    await paid.start()
    try:
        setup_events: list[CloudEvent[Any]] = [fx(RATES, as_of=now - timedelta(minutes=1))]
        for i, deal in enumerate(warm + steady):
            creator = f"cr-{deal}"
            setup_events.append(
                account(creator, currency=CURRENCIES[i % len(CURRENCIES)], time=now)
            )
            # The brand funds each fee with its deal: no payout waits for funds.
            setup_events += funded_deal(
                deal, creator, deliverables=(("dl-1", 1),), ends_at=now + timedelta(days=20)
            )
        await produce_all(producer, setup_events)
        await stored(payouts_pool, "payouts_deals", prefix, len(warm + steady))
        await stored(tracking_pool, "tracking_deals", prefix, len(warm + steady))

        # A short warm-up at the same rate, not measured.
        await paced(producer, posts(warm, now), rate, {})
        await paid.wait_for(set(warm), 60)

        before = await scrape(payouts_port, POST_TO_SENT)
        sent_at: dict[str, float] = {}
        await paced(producer, posts(steady, now), rate, sent_at)
        await paid.wait_for(set(steady), 120)
        after = await scrape(payouts_port, POST_TO_SENT)
        stages = await payout_stages(
            payouts_pool, {d: ids[d] for d in steady if d in ids}, confirmations.wall, paid.wall
        )
    finally:
        await confirmations.stop()
        await paid.stop()
        await producer.stop()
    total = [paid.received[d] - sent_at[d] for d in steady]
    seen = confirmations.received
    to_confirmed = [seen[d] - sent_at[d] for d in steady if d in seen]
    to_sent = [paid.received[d] - seen[d] for d in steady if d in seen]
    counted = after[0] - before[0]
    return {
        "p50": quantile(total, 0.5),
        "p99": quantile(total, 0.99),
        "confirmed_p50": quantile(to_confirmed, 0.5),
        "confirmed_p99": quantile(to_confirmed, 0.99),
        "sent_p50": quantile(to_sent, 0.5),
        "sent_p99": quantile(to_sent, 0.99),
        "histogram_count": counted,
        "histogram_mean": (after[1] - before[1]) / counted if counted else float("nan"),
        "mean": sum(total) / len(total),
        **stage_quantiles(stages),
    }


async def main(rate: float, count: int) -> None:
    quiet_logs()
    root = Path(tempfile.mkdtemp(prefix="creatorflow-bench-latency-"))
    async with embedded_servers(root) as urls:
        base = await floor(urls, rate, count)
        service = await services(urls, rate, count, root)
    ms = 1000.0
    print(f"end-to-end latency benchmark: {count} posts at {rate:g}/s, each completing a deal")
    print("  tracking confirms the deliverable, payouts pays the fee (zero-latency sandbox)")
    print(f"{'':46}{'p50 ms':>10}{'p99 ms':>10}")
    rows = [
        ("floor: raw produce -> consume, 3 hops", base["p50"], base["p99"]),
        ("post observed -> payout.sent", service["p50"], service["p99"]),
        ("  post -> deliverable.confirmed", service["confirmed_p50"], service["confirmed_p99"]),
        ("  deliverable.confirmed -> payout.sent", service["sent_p50"], service["sent_p99"]),
    ]
    for label, p50, p99 in rows:
        print(f"{label:46}{p50 * ms:10.1f}{p99 * ms:10.1f}")
    print(
        f"{'ratio (post -> payout.sent / floor)':46}"
        f"{service['p50'] / base['p50']:10.1f}{service['p99'] / base['p99']:10.1f}"
    )
    print(
        f"{POST_TO_SENT}: {service['histogram_count']:.0f} payouts, mean "
        f"{service['histogram_mean'] * ms:.1f} ms (here, to receipt: {service['mean'] * ms:.1f} ms)"
    )
    for line in stage_lines(service, lead="  confirmed -> sent, "):
        print(line)
    print(f"goal post -> payout.sent p99 <= 1 s: {verdict(service['p99'] <= 1.0)}")


if __name__ == "__main__":
    run_with_options(main, __doc__, rate=200.0, count=2000)
