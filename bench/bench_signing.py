"""Signing benchmark: what a signature costs per event, against decoding the same event.

For one `order.redeemed` (the busiest signed type: shops send every order) and one
`deal.signed`, in this process, one core:

1. floor: decoding the event as a service does (`shared.contract.events.decode`), events/s;
2. signing it as a sender does (RFC 8785 canonical form + Ed25519), events/s;
3. checking it as a service does (`shared.runtime.trust.Trust.check`: parse, canonical form,
   Ed25519 verify, key and party checks), events/s, and that check's cost as a share of
   decode + check: the slowdown of a consumer that did nothing else.

Then what it does to tracking: the tracking service (its own process, on fresh embedded
Kafka and PostgreSQL each time) works off the backlog of bench/bench_tracking.py (1,000
deals, 70 % post snapshots, 30 % orders and refunds) twice, with the deals, orders and
refunds unsigned, then signed by a registered brand and shop key (checked in the consumer,
the post snapshots unsigned either way): events/s of each (the better of two runs each, in
the order unsigned, signed, signed, unsigned) and their ratio.

Usage: python bench/bench_signing.py [--seconds 2] [--tracking-events 60000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_tracking  # bench/ is the script's directory
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from servers import embedded_servers  # bench/ is the script's directory

from services.tracking.app import SERVICE
from services.tracking.schema import SCHEMA
from shared.contract.events import (
    SigningKeyRegistered,
    Topic,
    decode,
    encode,
    event_key,
    make_event,
    spec_for_type,
)
from shared.contract.events.codec import sign_event
from shared.contract.events.examples import valid_example
from shared.contract.signing import Party, key_id, public_key_text, sign_json
from shared.runtime.db import create_pool
from shared.runtime.trust import KeyRegistry, Trust


def rate(work: Callable[[], Any], seconds: float) -> float:
    """Calls per second of `work`, measured over about `seconds`."""
    done, began = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        for _ in range(200):
            work()
        done += 200
    return done / elapsed


def measure(event_type: str, party: Party, owner_field: str | None, seconds: float) -> None:
    key = Ed25519PrivateKey.generate()
    event = valid_example(event_type)
    owner = getattr(event.data, owner_field) if owner_field else "shop-1"
    registry = KeyRegistry()
    public = public_key_text(key.public_key())
    registry.apply(
        make_event(
            SigningKeyRegistered(
                key_id=key_id(public), party=party, owner_id=owner, public_key=public
            ),
            source="bench",
        )
    )
    trust = Trust(registry, None, require_signatures=True)
    topic = spec_for_type(event_type).topic
    raw = encode(event)
    signed = sign_event(event, key)
    signed_raw = encode(signed)
    loop = asyncio.new_event_loop()

    def check() -> None:
        loop.run_until_complete(trust.check(signed, signed_raw))

    decoded = rate(lambda: decode(topic, signed_raw), seconds)
    signing = rate(lambda: sign_json(raw, key), seconds)
    checking = rate(check, seconds)
    share = (1 / checking) / (1 / decoded + 1 / checking)
    print(
        f"{event_type:<16} {len(signed_raw):>5} B  decode {decoded:>9,.0f}/s (floor)  "
        f"sign {signing:>8,.0f}/s ({signing / decoded:.2f}x)  "
        f"check {checking:>8,.0f}/s ({checking / decoded:.2f}x)  "
        f"check = {share:.0%} of decode + check"
    )
    loop.close()


def signed_backlog(
    messages: list[tuple[str, bytes, bytes]],
) -> tuple[list[tuple[str, bytes, bytes]], list[tuple[str, bytes, bytes]]]:
    """`messages` with every deal signed by brand br-1's key and every order and refund by
    shop-1's, and the registrations of both keys."""
    keys = {
        Topic.CAMPAIGN_DEALS: (Party.BRAND, "br-1", Ed25519PrivateKey.generate()),
        Topic.TRACKING_ORDERS: (Party.SHOP, "shop-1", Ed25519PrivateKey.generate()),
    }
    registrations = []
    for party, owner, key in keys.values():
        public = public_key_text(key.public_key())
        data = SigningKeyRegistered(
            key_id=key_id(public), party=party, owner_id=owner, public_key=public
        )
        event = make_event(data, source="bench")
        registrations.append((Topic.OPERATOR_SIGNING_KEYS, event_key(event), encode(event)))
    signed = [
        (topic, key, sign_json(value, keys[topic][2]) if topic in keys else value)
        for topic, key, value in messages
    ]
    return registrations, signed


async def tracking_rate(root: Path, events: int, *, signed: bool) -> tuple[float, int]:
    """Events/s of the tracking service working off `events` events (and how many signed)."""
    name = "signed" if signed else "unsigned"
    async with embedded_servers(root / name) as urls:
        workload = bench_tracking.Workload(seed=1)
        setup = workload.setup()
        backlog = setup + [workload.next()[2] for _ in range(events)]
        registrations: list[tuple[str, bytes, bytes]] = []
        if signed:
            registrations, backlog = signed_backlog(backlog)
        await bench_tracking.produce(urls.kafka_bootstrap_servers, registrations + backlog)
        process = bench_tracking.start_service(
            urls, ["-m", "services.tracking"], root / f"tracking-{name}.log"
        )
        pool = await create_pool(urls.database_url, schema=SCHEMA.name, min_size=1, max_size=2)
        try:
            await bench_tracking.wait_applied(pool, SERVICE, len(backlog), limit=600)
            count, seconds = await bench_tracking.rate_of(pool, SERVICE)
        finally:
            await pool.close()
            bench_tracking.stop_service(process)
    checked = sum(1 for topic, _, value in backlog if b'"signature"' in value)
    return count / seconds, checked


def measure_tracking(events: int) -> None:
    """Each case twice, in the order unsigned, signed, signed, unsigned, the better of each
    kept: the machine's other load then weighs on both alike."""
    rates: dict[bool, list[float]] = {False: [], True: []}
    checked = 0
    with tempfile.TemporaryDirectory(prefix="bench-signing-") as tmp:
        for n, signed in enumerate((False, True, True, False)):
            rate, count = asyncio.run(tracking_rate(Path(tmp) / str(n), events, signed=signed))
            rates[signed].append(rate)
            checked = max(checked, count)
    unsigned, signed_rate = max(rates[False]), max(rates[True])
    print(
        f"tracking, {events:,} events ({checked:,} of them signed deals, orders and refunds in "
        f"the signed runs), best of 2 each: unsigned {unsigned:,.0f} events/s, signed "
        f"{signed_rate:,.0f} events/s, ratio signed / unsigned {signed_rate / unsigned:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument(
        "--tracking-events", type=int, default=60_000, help="0 leaves tracking's case out"
    )
    args = parser.parse_args()
    print("\n== signing: events/s on one core, ratios to decoding the same event ==")
    measure("order.redeemed", Party.SHOP, None, args.seconds)
    measure("deal.signed", Party.BRAND, "brand_id", args.seconds)
    if args.tracking_events:
        measure_tracking(args.tracking_events)


if __name__ == "__main__":
    main()
