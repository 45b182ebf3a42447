"""ServiceRuntime: a minimal service consumes, changes state, emits through the outbox."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import httpx
import pytest
import redis.exceptions
from aiokafka import AIOKafkaProducer

from shared.contract.events import CloudEvent, Topic, encode, event_key, make_event
from shared.contract.events.examples import valid_example
from shared.runtime.config import Settings
from shared.runtime.db import _MIGRATION_LOCK_ID
from shared.runtime.inbox import claim
from shared.runtime.kafka import Delivery, EventHandler, subscribe_event_batches, subscribe_events
from shared.runtime.outbox import OutboxRelay, enqueue
from shared.runtime.service import Background, Resources, ServiceRuntime, Setup
from shared.tools.infra import InfraUrls
from shared.tools.infra.process import free_port
from tests.conftest import RUNTIME_TESTS
from tests.support.kafka_io import produce_events, read_until
from tests.support.processes import python_process
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]


async def test_a_service_confirms_each_deal_once(infra: InfraUrls, topics: None) -> None:
    """Deals in (twice each) → one `deliverable.confirmed` per deal out, via inbox and outbox."""
    name = f"runtime-test-{uuid.uuid4().hex[:8]}"
    source = f"{name}/input"

    async def setup(resources: Resources) -> Sequence[Background]:
        async def on_deals(batch: Sequence[tuple[CloudEvent[Any], Delivery]]) -> None:
            mine = [(e, d) for e, d in batch if e.source == source]
            async with resources.pool.acquire() as conn, conn.transaction():
                new = await claim(conn, name, mine)
                confirmations = [
                    make_event(
                        valid_example("deliverable.confirmed").data.model_copy(
                            update={"deal_id": e.data.deal_id}
                        ),
                        source=name,
                        id=f"{name}-{e.data.deal_id}",
                    )
                    for e, _ in mine
                    if e.identity in new
                ]
                await enqueue(conn, confirmations, producer=name)

        subscribe_event_batches(
            resources.broker,
            [Topic.CAMPAIGN_DEALS],
            group_id=name,
            handler=on_deals,
            consumer=resources.consumer,
        )
        return [OutboxRelay(resources.pool, resources.broker, producer=name, poll_seconds=0.2).run]

    deals = [
        valid_example("deal.signed").model_copy(
            update={
                "id": f"{name}-deal-{i}",
                "source": source,
                "subject": f"{name}-deal-{i}",
                "data": valid_example("deal.signed").data.model_copy(
                    update={"deal_id": f"{name}-deal-{i}"}
                ),
            }
        )
        for i in range(5)
    ]
    async with ServiceRuntime(name, setup, schema=RUNTIME_TESTS, urls=infra) as runtime:
        assert runtime.resources is not None
        pool: asyncpg.Pool = runtime.resources.pool
        producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap_servers)
        await producer.start()
        try:
            for deal in deals + deals:
                await producer.send_and_wait(
                    Topic.CAMPAIGN_DEALS, encode(deal), key=event_key(deal)
                )
        finally:
            await producer.stop()
        confirmed = await _read_confirmations(infra, name, expected=len(deals))
        stored = await pool.fetchval(
            "SELECT count(*) FROM processed_events WHERE consumer = $1", name
        )
    assert sorted(confirmed) == sorted(f"{name}-deal-{i}" for i in range(5))
    assert stored == len(deals)


async def _read_confirmations(infra: InfraUrls, name: str, *, expected: int) -> list[str]:
    # Once all are in, a moment more for a duplicate to show up if one were coming.
    confirmations = await read_until(
        infra.kafka_bootstrap_servers,
        Topic.DELIVERABLES_CONFIRMED,
        lambda e: e.source == name,
        count=expected,
        linger=0.5,
    )
    return [e.data.deal_id for e in confirmations]


def on_any_port(
    name: str,
    setup: Setup,
    urls: InfraUrls,
    *,
    uses_redis: bool,
    redis_required: bool,
) -> ServiceRuntime:
    """A runtime of `name` on the tests' schema, serving HTTP on a port the system picks."""
    return ServiceRuntime(
        name,
        setup,
        schema=RUNTIME_TESTS,
        settings=Settings().model_copy(update={"http_port": 0}),
        urls=urls,
        uses_redis=uses_redis,
        redis_required=redis_required,
    )


def reading_fx(group_id: str, handler: EventHandler) -> Setup:
    """A service's setup with one consumer, of `fx.rates`, handing each event to `handler`."""

    async def setup(resources: Resources) -> Sequence[Background]:
        subscribe_events(
            resources.broker,
            [Topic.FX_RATES],
            group_id=group_id,
            handler=handler,
            consumer=resources.consumer,
        )
        return []

    return setup


def http_client(runtime: ServiceRuntime) -> httpx.AsyncClient:
    """A client of the running `runtime`'s HTTP server."""
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{runtime.http_port}")


@pytest.mark.parametrize(
    ("uses_redis", "redis_required"),
    [(False, True), (True, True), (True, False)],
    ids=["without-redis", "with-redis", "redis-down-not-required"],
)
async def test_health_readiness_and_metrics_endpoints(
    infra: InfraUrls, topics: None, uses_redis: bool, redis_required: bool
) -> None:
    """Readiness checks the servers a service needs, and only those: a service that does not
    use Redis, or goes on without it (payouts), starts and is ready while no Redis answers at
    its URL."""
    name = f"health-test-{uuid.uuid4().hex[:8]}"
    if not (uses_redis and redis_required):
        infra = dataclasses.replace(infra, redis_url=f"redis://127.0.0.1:{free_port()}/0")

    async def ignore(event: CloudEvent[Any], delivery: Delivery) -> None:
        return None

    runtime = on_any_port(
        name, reading_fx(name, ignore), infra, uses_redis=uses_redis, redis_required=redis_required
    )
    async with runtime:
        assert runtime.http_port
        assert runtime.resources is not None
        assert (runtime.resources.redis is not None) == uses_redis
        async with http_client(runtime) as http:
            live = await http.get("/healthz")
            assert live.status_code == 200 and live.json()["service"] == name

            answers: list[httpx.Response] = []

            async def ready() -> bool:
                answers.append(await http.get("/readyz"))
                assert answers[-1].status_code in (200, 503), answers[-1].text
                return answers[-1].status_code == 200

            await eventually(ready, 30, what="/readyz answering 200")
            expected = {"database": True, "broker": True, "consumer_assigned": True}
            if uses_redis:
                # Reported either way; counted only when required (Redis is down here when not).
                expected["cache"] = redis_required
            assert answers[-1].json()["checks"] == expected
            metrics = await http.get("/metrics")
            assert metrics.status_code == 200
            assert "creatorflow_events_consumed_total" in metrics.text

            # Lag appears once the broker has reported the partitions' high watermarks.
            async def lag_shown() -> bool:
                text = (await http.get("/metrics")).text
                return 'creatorflow_consumer_lag{partition="0",topic="fx.rates"}' in text

            await eventually(lag_shown, 20, what="the consumer lag of fx.rates in /metrics")
            assert (await http.get("/nope")).status_code == 404
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{runtime.http_port}/healthz")


async def test_a_service_that_can_work_without_redis_starts_and_stays_ready_without_it(
    infra: InfraUrls, topics: None
) -> None:
    """Payouts uses Redis to spare its database only: with Redis down it starts, /readyz
    answers 200 and shows Redis down; a service that needs Redis refuses to start."""
    no_redis = dataclasses.replace(infra, redis_url=f"redis://127.0.0.1:{free_port()}/0")

    async def setup(resources: Resources) -> Sequence[Background]:
        return []

    with pytest.raises(redis.exceptions.ConnectionError):
        async with ServiceRuntime(
            "needs-redis", setup, schema=RUNTIME_TESTS, urls=no_redis, uses_redis=True
        ):
            pass
    runtime = on_any_port("spares-db", setup, no_redis, uses_redis=True, redis_required=False)
    async with runtime:
        assert runtime.resources is not None and runtime.resources.redis is not None
        async with http_client(runtime) as http:
            ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["cache"] is False


async def test_a_service_that_cannot_reach_its_database_says_so_and_exits(
    infra: InfraUrls,
) -> None:
    """One line naming the failure, exit code 1 for the restart policy, and no password."""
    password = "Unreachable-Db-Pw-7731"  # a marker to look for in the output
    closed = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka_bootstrap_servers,
        "DATABASE_URL": f"postgresql://creatorflow:{password}@127.0.0.1:{closed}/creatorflow",
        "REDIS_URL": infra.redis_url,
    }
    process = await python_process("-m", "services.tracking", env=env)
    output = (await asyncio.wait_for(process.communicate(), 60))[0].decode()
    assert process.returncode == 1, output
    assert "could not start: a server is unreachable" in output
    assert str(closed) in output, "the error names the address it could not reach"
    assert "Traceback" not in output
    assert password not in output


async def test_a_service_stuck_in_start_up_stops_on_sigterm(infra: InfraUrls) -> None:
    """SIGTERM ends a service that is still starting (here: waiting for the migration lock
    another instance holds), as it ends a running one; a supervisor that replaces an instance
    that never got ready must not leave it behind."""
    env = {**os.environ, **infra.as_env()}
    holder = await asyncpg.connect(infra.database_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        process = await python_process("-m", "services.matching", env=env)
        try:
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            for _ in range(300):
                if await holder.fetchval(waiting):
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the service never reached the migration lock")
            process.send_signal(signal.SIGTERM)
            output = (await asyncio.wait_for(process.communicate(), 15))[0].decode()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    finally:
        await holder.close()
    assert process.returncode == 0, output
    assert "stopped during start-up" in output
    assert "Traceback" not in output


async def test_the_lag_grows_while_a_handler_is_blocked(infra: InfraUrls, topics: None) -> None:
    """A handler waiting (its database away) fetches nothing more, yet the backlog shows: the
    lag is the partitions' end, asked of the broker, less what the group committed."""
    name = f"lag-test-{uuid.uuid4().hex[:8]}"
    released = asyncio.Event()

    async def wait(event: CloudEvent[Any], delivery: Delivery) -> None:
        await released.wait()

    def lag(text: str) -> int:
        lines = [line for line in text.splitlines() if line.startswith("creatorflow_consumer_lag{")]
        return sum(
            int(float(line.rsplit(" ", 1)[1])) for line in lines if 'topic="fx.rates"' in line
        )

    runtime = on_any_port(
        name, reading_fx(name, wait), infra, uses_redis=False, redis_required=False
    )
    async with runtime, http_client(runtime) as http:

        async def shown() -> bool:
            return (
                'creatorflow_consumer_lag{partition="0",topic="fx.rates"}'
                in (await http.get("/metrics")).text
            )

        await eventually(shown, 30, what="the consumer lag of fx.rates in /metrics")
        before = lag((await http.get("/metrics")).text)
        event = valid_example("fx.rates.published")
        await produce_events(
            infra.kafka_bootstrap_servers,
            [event.model_copy(update={"id": f"{name}-{i}"}) for i in range(20)],
        )

        async def grown() -> bool:
            return lag((await http.get("/metrics")).text) >= before + 20

        try:
            await eventually(grown, 30, what="the lag grown by the 20 records waiting")
        finally:
            released.set()
