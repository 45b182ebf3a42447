"""The raw floor of an event path: the same broker hops done by bare aiokafka clients.

An event that a post starts crosses three topics before the creator is paid (the post, the
`deliverable.confirmed` tracking publishes, the `payout.sent` payouts publishes). The floor is
what those hops cost with no service in between: a message produced to the first topic, read
by a relay that at once produces the next hop's message to the second, and so on, read by a
receiver at the end. `make bench` (bench/bench_latency.py) and the demo print it beside the
services' end-to-end latency measured in the same run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.security import BaseSecurity

from shared.contract.events import decode, encode
from shared.contract.events.examples import valid_example
from shared.runtime.kafka import client_options, ensure_topics, partitions_of

FLOOR_TOPICS = ("creatorflow.floor-1", "creatorflow.floor-2", "creatorflow.floor-3")
# The fetch settings of the floor's clients: a fetch returns within 10 ms when no data comes,
# and the loop polls every 5 ms.
FETCH_MAX_WAIT_MS = 10
POLL_MS = 5

Tag = Callable[[Any], str | None]


def of_type(kind: str, ids: dict[str, str] | None = None) -> Tag:
    """Tags the records of `kind` events by their deal, keeping their event ids in `ids` if
    given. A record whose bytes do not name `kind` is passed over undecoded: the receiver runs
    on the cores it measures, and most records of a status topic are of other types."""
    named = kind.encode()

    def tag(record: Any) -> str | None:
        value = record.value or b""
        if named not in value:
            return None
        event = decode(record.topic, value)
        if event.type != kind:
            return None
        if ids is not None:
            ids.setdefault(str(event.data.deal_id), event.id)
        return str(event.data.deal_id)

    return tag


def post_to_payout_hops() -> list[bytes]:
    """What the three hops of post -> payout carry: example events of their types, encoded."""
    kinds = ("post.metrics.observed", "deliverable.confirmed", "payout.sent")
    return [encode(valid_example(kind)) for kind in kinds]


def quantile(samples: Sequence[float], q: float) -> float:
    """The sample at rank q (nearest rank) of `samples`."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def reader(
    bootstrap: str, topics: Sequence[str], security: BaseSecurity | None = None
) -> AIOKafkaConsumer:
    """A consumer of `topics` from their current end, without a consumer group."""
    consumer = AIOKafkaConsumer(
        **client_options(bootstrap, security),
        enable_auto_commit=False,
        fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
    )
    await consumer.start()
    partitions = await partitions_of(consumer, topics)
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    for tp in partitions:
        await consumer.position(tp)
    return consumer


class Arrivals:
    """Records when each tagged message of a topic arrives: `received` (perf_counter) and
    `wall` (time.time), by tag."""

    def __init__(
        self, bootstrap: str, topic: str, tag_of: Tag, security: BaseSecurity | None = None
    ) -> None:
        self.bootstrap, self.topic, self.tag_of, self.security = bootstrap, topic, tag_of, security
        self.received: dict[str, float] = {}
        self.wall: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        consumer = await reader(self.bootstrap, [self.topic], self.security)
        self._task = asyncio.create_task(self._run(consumer))

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=1000)
                now, wall = time.perf_counter(), time.time()
                for records in batch.values():
                    for record in records:
                        tag = self.tag_of(record)
                        if tag is not None and tag not in self.received:
                            self.received[tag] = now
                            self.wall[tag] = wall
        finally:
            await consumer.stop()

    async def wait_for(self, tags: set[str], seconds: float) -> None:
        deadline = time.perf_counter() + seconds
        while not tags <= self.received.keys():
            if time.perf_counter() > deadline:
                missing = len(tags - self.received.keys())
                raise TimeoutError(
                    f"{missing} of {len(tags)} messages did not reach {self.topic} in {seconds}s"
                )
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


async def paced(
    producer: AIOKafkaProducer,
    messages: Sequence[tuple[str, bytes, bytes, str]],
    rate: float,
    sent_at: dict[str, float],
    wall_sent_at: dict[str, float] | None = None,
) -> None:
    """Send (topic, key, value, tag) at `rate` per second, recording each send time
    (perf_counter) by tag, and its wall-clock time (epoch seconds) in `wall_sent_at` if given."""
    start = time.perf_counter()
    pending = []
    for i, (topic, key, value, tag) in enumerate(messages):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        sent_at[tag] = time.perf_counter()
        if wall_sent_at is not None:
            wall_sent_at[tag] = time.time()
        pending.append(await producer.send(topic, value, key=key))
    await asyncio.gather(*pending)


async def _relay(
    bootstrap: str, source: str, target: str, value: bytes, security: BaseSecurity | None
) -> None:
    """Forward each message of `source` to `target` under the same key, as `value`."""
    consumer = await reader(bootstrap, [source], security)
    producer = AIOKafkaProducer(**client_options(bootstrap, security), linger_ms=0)
    await producer.start()
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=POLL_MS, max_records=1000)
            sent = [
                await producer.send(target, value, key=record.key)
                for records in batch.values()
                for record in records
            ]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()
        await consumer.stop()


async def chained_floor(
    bootstrap: str,
    values: Sequence[bytes],
    *,
    rate: float,
    count: int,
    security: BaseSecurity | None = None,
    warm_up: int = 20,
) -> list[float]:
    """Seconds from producing each of `count` messages (at `rate` per second) to the arrival of
    the last hop's message it caused, through `len(values)` chained topics; `values[i]` is what
    hop i carries. Topics are created if missing, with 3 partitions like the services' (their
    default `KAFKA_PARTITIONS`)."""
    topics = FLOOR_TOPICS[: len(values)]
    if len(topics) != len(values):
        raise ValueError(f"at most {len(FLOOR_TOPICS)} hops")
    await ensure_topics(
        bootstrap, partitions=3, replication_factor=1, topics=topics, security=security
    )
    relays = [
        asyncio.create_task(_relay(bootstrap, topics[i], topics[i + 1], values[i + 1], security))
        for i in range(len(topics) - 1)
    ]
    arrivals = Arrivals(bootstrap, topics[-1], lambda r: r.key.decode(), security)
    producer = AIOKafkaProducer(**client_options(bootstrap, security), linger_ms=0)
    run = uuid.uuid4().hex[:8]
    try:
        await arrivals.start()
        await producer.start()
        warm = [f"{run}-w{i}" for i in range(warm_up)]
        # The relays may still be seeking to the end of their topics: send the warm-up until
        # it comes through.
        for attempt in range(5):
            await paced(producer, [(topics[0], t.encode(), values[0], t) for t in warm], rate, {})
            try:
                await arrivals.wait_for(set(warm), 5)
                break
            except TimeoutError:
                if attempt == 4:
                    raise
                warm = [f"{t}+" for t in warm]
        tags = [f"{run}-{i}" for i in range(count)]
        sent_at: dict[str, float] = {}
        await paced(producer, [(topics[0], t.encode(), values[0], t) for t in tags], rate, sent_at)
        await arrivals.wait_for(set(tags), 60)
    finally:
        await producer.stop()
        await arrivals.stop()
        for task in relays:
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
    return [arrivals.received[t] - sent_at[t] for t in tags]


# Where a confirmation's time went inside payouts, from its own tables: the inbox's claim, the
# `payout.scheduled` and `payout.sent` rows of its outbox, and when the relay published the latter.
_PAYOUT_STAGES = """
SELECT e.deal_id, extract(epoch FROM p.processed_at) AS consumed,
       extract(epoch FROM s.created_at) AS scheduled, extract(epoch FROM t.created_at) AS sent,
       extract(epoch FROM t.published_at) AS published
FROM unnest($1::text[], $2::text[]) AS e(deal_id, event_id)
JOIN processed_events p ON p.consumer = 'payouts' AND p.event_id = e.event_id
JOIN outbox s ON convert_from(s.value, 'UTF8')::jsonb->>'type' = 'payout.scheduled'
     AND convert_from(s.value, 'UTF8')::jsonb->'data'->>'deal_id' = e.deal_id
JOIN outbox t ON convert_from(t.value, 'UTF8')::jsonb->>'type' = 'payout.sent'
     AND convert_from(t.value, 'UTF8')::jsonb->'data'->>'deal_id' = e.deal_id
"""
PAYOUT_STAGES = ("poll", "consume", "dispatch", "relay", "deliver")


async def payout_stages(
    pool: Any,
    confirmation_ids: Mapping[str, str],
    sent_at: Mapping[str, float],
    received_at: Mapping[str, float],
) -> dict[str, list[float]]:
    """Seconds each deal's `deliverable.confirmed` spent in each stage up to `payout.sent`
    received, by stage (PAYOUT_STAGES). `confirmation_ids` maps a deal to its confirmation's
    event id; `sent_at` and `received_at` are wall-clock times (`time.time()`), as the
    database's timestamps are; `consumed` is the consuming transaction's start. `pool` is
    connected to payouts' schema."""
    deals = [d for d in confirmation_ids if d in sent_at and d in received_at]
    ids = [confirmation_ids[d] for d in deals]
    rows = await pool.fetch(_PAYOUT_STAGES, deals, ids)
    # The relay marks a row published just after Kafka took it: a reader of the topic may be
    # quicker. Read again until the marks are in (a few tries).
    for _ in range(50):
        if all(r["published"] is not None for r in rows):
            break
        await asyncio.sleep(0.1)
        rows = await pool.fetch(_PAYOUT_STAGES, deals, ids)
    parts: dict[str, list[float]] = {k: [] for k in PAYOUT_STAGES}
    for r in rows:
        d = r["deal_id"]
        parts["poll"].append(float(r["consumed"]) - sent_at[d])
        parts["consume"].append(float(r["scheduled"] - r["consumed"]))
        parts["dispatch"].append(float(r["sent"] - r["scheduled"]))
        parts["relay"].append(float(r["published"] - r["sent"]))
        parts["deliver"].append(received_at[d] - float(r["published"]))
    return parts


def stage_quantiles(stages: Mapping[str, list[float]]) -> dict[str, float]:
    """The p50 (`stage_<name>`) and p99 (`stage99_<name>`) seconds of each stage measured in
    `payout_stages`."""
    p50 = {f"stage_{k}": quantile(v, 0.5) for k, v in stages.items() if v}
    return p50 | {f"stage99_{k}": quantile(v, 0.99) for k, v in stages.items() if v}


def stage_lines(summary: Mapping[str, float], lead: str = "") -> list[str]:
    """Two lines, p50 then p99, of each stage's milliseconds in `summary` (which holds what
    `stage_quantiles` gave, maybe among other numbers), each line starting with `lead`."""
    lines = []
    for label, prefix in (("p50", "stage_"), ("p99", "stage99_")):
        stages = ", ".join(
            f"{k[len(prefix) :]} {v * 1000:.1f}" for k, v in summary.items() if k.startswith(prefix)
        )
        lines.append(f"{lead}{label} per stage (ms): {stages}")
    return lines
