"""What every service process does around its own logic: connect, migrate, consume, stop.

A service provides `setup(resources)`: it registers its subscribers on `resources.broker` (or
a pipelined consumer through `resources.consume_pipelined`) and returns the background loops
to run beside them (outbox relay, schedulers). `run_service` runs that until SIGINT/SIGTERM;
tests use `ServiceRuntime` as an async context manager.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from types import TracebackType
from typing import Any

import asyncpg
import redis.asyncio as redis
import structlog
import uvicorn
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaConnectionError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity
from pydantic import SecretStr, ValidationError

from shared.contract.signing import private_key_from_text
from shared.runtime.cache import create_redis, redis_client
from shared.runtime.config import Settings, settings_problems
from shared.runtime.db import MigrationError, ServiceSchema, create_pool, migrate
from shared.runtime.health import App, Check, HealthApp
from shared.runtime.kafka import (
    AUTHORIZATION_ERRORS,
    FETCH_MAX_WAIT_MS,
    BatchHandler,
    DeadLetters,
    KafkaAccessError,
    KafkaSecurityError,
    RetryPolicy,
    SafeConsumer,
    authorization_failure,
    check_kafka_access,
    ensure_topics,
    is_transient,
    kafka_security,
    make_broker,
    settings_not_applied,
)
from shared.runtime.observability import CONSUMER_LAG, configure_logging
from shared.runtime.outbox import OutboxRelay
from shared.runtime.pipeline import PipelinedBatches, Prepare
from shared.runtime.server_urls import InfraUrls, running_urls
from shared.runtime.trust import KeyReader, KeyRegistry, Trust
from shared.runtime.unit_of_work import UnitsOfWork

log = structlog.get_logger(__name__)

Background = Callable[[], Awaitable[None]]

# How long one step of stopping (the HTTP server, the consumers, a pool) may take. Each takes
# milliseconds when the servers answer; with Kafka or PostgreSQL gone a client can wait for
# them without end, and a service asked to stop must stop (a supervisor sends SIGKILL after
# its own grace period, compose's is 10 s).
STOP_STEP_SECONDS = 5.0


@dataclass
class Resources:
    """Everything a service's setup may use; created and closed by `ServiceRuntime`."""

    name: str
    settings: Settings
    urls: InfraUrls
    pool: asyncpg.Pool
    broker: KafkaBroker
    consumer: SafeConsumer
    pipelines: list[PipelinedBatches] = field(default_factory=list)
    # Connected only for a service that asks for it (ServiceRuntime's `uses_redis`); a service
    # that goes on without Redis (`redis_required=False`) gets it even while it is unreachable.
    redis: redis.Redis | None = None
    redis_required: bool = True
    signing_key: Ed25519PrivateKey | None = None
    # More of the HTTP server (HTTP_PORT), by path prefix: apps that authenticate their
    # callers themselves (shared.runtime.health).
    http_routes: dict[str, App] = field(default_factory=dict)

    def outbox_relay(self, producer: str) -> OutboxRelay:
        """The relay that publishes `producer`'s outbox rows, signed with the service's key
        if it has one (CREATORFLOW_SIGNING_KEY)."""
        return OutboxRelay(self.pool, self.broker, producer=producer, signing_key=self.signing_key)

    def consume_pipelined(
        self,
        topics: Sequence[str],
        *,
        group_id: str,
        handler: BatchHandler,
        prepare: Prepare | None = None,
        max_records: int,
        batch_timeout_ms: int,
        fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
    ) -> Background:
        """A consumer of `topics` in batches, the next one read while the last is applied
        (`shared.runtime.pipeline`); run the returned loop among the setup's background loops."""
        pipeline = PipelinedBatches(
            self.urls.kafka_bootstrap_servers,
            topics,
            group_id=group_id,
            handler=handler,
            consumer=self.consumer,
            prepare=prepare,
            security=kafka_security(self.settings),
            client_id=self.name,
            max_records=max_records,
            batch_timeout_ms=batch_timeout_ms,
            fetch_max_wait_ms=fetch_max_wait_ms,
            group_instance_id=self.settings.group_instance_id,
        )
        self.pipelines.append(pipeline)
        return pipeline.run

    def consume(
        self,
        topics: Sequence[str],
        *,
        group_id: str,
        units: UnitsOfWork[Any],
        max_records: int,
        batch_timeout_ms: int,
        fetch_max_wait_ms: int = FETCH_MAX_WAIT_MS,
    ) -> Background:
        """The service's consumer of `topics`: each batch one unit of work
        (`shared.runtime.unit_of_work`), read ahead while the previous one is applied."""
        return self.consume_pipelined(
            topics,
            group_id=group_id,
            handler=units,
            prepare=units.prepare,
            max_records=max_records,
            batch_timeout_ms=batch_timeout_ms,
            fetch_max_wait_ms=fetch_max_wait_ms,
        )

    def kafka_consumers(self) -> list[AIOKafkaConsumer | None]:
        """The service's Kafka consumers, None for one not started yet."""
        subscribed = [getattr(s, "consumer", None) for s in self.broker.subscribers]
        return subscribed + [p.kafka for p in self.pipelines]


Setup = Callable[[Resources], Awaitable[Sequence[Background]]]


class ServiceConfigurationError(RuntimeError):
    pass


def resolve_urls(settings: Settings, service: str, *, uses_redis: bool = False) -> InfraUrls:
    # A service that can do without Redis for a while (payouts) starts while it is down.
    urls = running_urls(settings, service, stopped_redis=True)
    if urls is None or (uses_redis and urls.redis_url is None):
        needed = "KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL" + (" and REDIS_URL" if uses_redis else "")
        raise ServiceConfigurationError(
            f"no servers configured: set {needed}, "
            "or start the embedded ones with `creatorflow infra up`"
        )
    return urls


class ServiceRuntime:
    """Runs one service in this process for the duration of an `async with` block."""

    def __init__(
        self,
        name: str,
        setup: Setup,
        *,
        schema: ServiceSchema,
        settings: Settings | None = None,
        urls: InfraUrls | None = None,
        uses_redis: bool = False,
        redis_required: bool = True,
    ) -> None:
        self.name = name
        # A service that does not use Redis neither connects to it nor waits for it to be
        # ready: an outage of a server it never reads must not take it out of service. One
        # that uses it but goes on without it (`redis_required=False`: payouts' rate limits and
        # webhook event ids) starts while Redis is down and stays ready, /readyz reporting
        # Redis without counting it; the service says itself how it copes.
        self.uses_redis = uses_redis
        self.redis_required = redis_required
        self.schema = schema
        self._setup = setup
        self._settings = settings
        self._urls = urls
        self._tasks: list[asyncio.Task[None]] = []
        self.http_port: int | None = None
        self._stack = contextlib.AsyncExitStack()
        self.stop_step_seconds = STOP_STEP_SECONDS
        self.resources: Resources | None = None

    async def __aenter__(self) -> ServiceRuntime:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def _start(self) -> None:
        settings = self._settings or Settings()
        settings = settings.model_copy(update={"service_name": self.name})
        if settings.require_signatures and settings.signing_key is None:
            # Unsigned, tracking's own confirmations would be refused by payouts: nobody paid.
            raise ServiceConfigurationError(
                "CREATORFLOW_PROFILE=production needs CREATORFLOW_SIGNING_KEY: the services sign "
                "what they publish, and payouts refuses tracking's confirmations unsigned. Make "
                "one with `creatorflow keys new --party service --owner creatorflow --out "
                "service.key` and set CREATORFLOW_SIGNING_KEY to that file's content"
            )
        urls = self._urls or resolve_urls(settings, self.schema.name, uses_redis=self.uses_redis)
        try:
            security = kafka_security(settings)
            # Refused credentials or certificates stop the service with the reason at once;
            # left to the clients, they would be retried forever as an unreachable broker.
            await check_kafka_access(urls.kafka_bootstrap_servers, security)
        except KafkaSecurityError as error:
            raise ServiceConfigurationError(str(error)) from None
        except KafkaAccessError as error:
            if error.refused:
                raise ServiceConfigurationError(str(error)) from None
            # Out of reach: exit for the supervisor to start the service again (run_service).
            raise KafkaConnectionError(str(error)) from None
        await ensure_topics(
            urls.kafka_bootstrap_servers,
            partitions=settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
            security=security,
            skip_unauthorized=True,
        )
        await _warn_of_settings_not_applied(urls.kafka_bootstrap_servers, security)
        pool = await create_pool(
            urls.database_url,
            schema=self.schema.name,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
        )
        self._on_stop("closing the database pool", pool.close, pool.terminate)
        await migrate(pool, self.schema)
        cache = None
        if self.uses_redis:
            assert urls.redis_url is not None
            cache = await self._connect_redis(urls.redis_url)
            self._on_stop("closing the Redis client", cache.aclose)
        broker = make_broker(settings, urls.kafka_bootstrap_servers, logger=None)
        retry = RetryPolicy.from_settings(settings)
        trust, keys = await self._read_signing_keys(
            urls.kafka_bootstrap_servers, security, settings
        )
        consumer = SafeConsumer(
            DeadLetters(broker, service=self.name, retry=retry),
            retry,
            max_bytes=settings.max_message_bytes,
            max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
            check_sender=trust.signer_of,
        )
        signing_key = (
            None
            if settings.signing_key is None
            else private_key_from_text(settings.signing_key.get_secret_value())
        )
        self.resources = Resources(
            self.name,
            settings,
            urls,
            pool,
            broker,
            consumer,
            redis=cache,
            redis_required=self.redis_required,
            signing_key=signing_key,
        )
        background = await self._setup(self.resources)
        await broker.start()
        self._on_stop("stopping the Kafka consumers and producer", broker.stop)
        self._on_stop("stopping the background loops", self._cancel_background)
        resources = self.resources
        for loop in [*background, keys.follow, lambda: _sample_consumer_lag(resources)]:
            self._tasks.append(asyncio.create_task(_supervised(self.name, loop)))
        if settings.http_port is not None:
            await self._serve_http(settings.http_host, settings.http_port, settings.http_token)
        log.info("service started", service=self.name, http_port=self.http_port)

    async def _connect_redis(self, url: str) -> redis.Redis:
        if self.redis_required:
            return await create_redis(url)
        client = redis_client(url)
        try:
            await client.ping()
        except (redis.RedisError, OSError) as error:
            log.warning(
                "Redis unreachable at start; the service goes on without it",
                service=self.name,
                error=f"{type(error).__name__}: {error}",
            )
        return client

    async def _read_signing_keys(
        self, bootstrap: str, security: BaseSecurity | None, settings: Settings
    ) -> tuple[Trust, KeyReader]:
        """The key registry, read whole before any input is consumed, and its reader, whose
        `follow` keeps it current while the service runs (shared.runtime.trust)."""
        registry = KeyRegistry()
        reader = KeyReader(bootstrap, security, registry)
        self._on_stop("stopping the signing-key reader", reader.stop)
        await reader.start()
        log.info("signing keys read", service=self.name, keys=len(registry))
        return Trust(registry, reader, require_signatures=settings.require_signatures), reader

    async def _serve_http(self, host: str, port: int, token: SecretStr | None) -> None:
        assert self.resources is not None
        app = HealthApp(
            self.name,
            readiness_checks(self.resources),
            token=None if token is None else token.get_secret_value(),
            routes=self.resources.http_routes,
            informational=() if self.redis_required else ("cache",),
        )
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()  # raises the bind error, e.g. the port is taken
                raise ServiceConfigurationError(f"HTTP server on {host}:{port} did not start")
            await asyncio.sleep(0.01)
        self.http_port = server.servers[0].sockets[0].getsockname()[1]

        async def stop_http() -> None:
            server.should_exit = True
            await task

        self._on_stop("stopping the HTTP server", stop_http)

    def _on_stop(
        self,
        what: str,
        close: Callable[[], Awaitable[Any]],
        force: Callable[[], Any] | None = None,
    ) -> None:
        """Run `close` when the service stops, in reverse order of registration, bounded in
        time (`stop_step`)."""
        self._stack.push_async_callback(
            stop_step, self.name, what, close, force, self.stop_step_seconds
        )

    async def _cancel_background(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Background loops stop first, then the consumers, then the pools they used.
        await self._stack.aclose()
        log.info("service stopped", service=self.name)


def readiness_checks(resources: Resources) -> dict[str, Check]:
    """What `/readyz` verifies: every server the service uses answers, its consumers hold
    partitions."""

    async def database() -> bool:
        return bool(await resources.pool.fetchval("SELECT 1") == 1)

    async def broker() -> bool:
        return await resources.broker.ping(timeout=1.5)

    async def consumer_assigned() -> bool:
        return all(c is not None and c.assignment() for c in resources.kafka_consumers())

    checks: dict[str, Check] = {
        "database": database,
        "broker": broker,
        "consumer_assigned": consumer_assigned,
    }
    if resources.redis is not None:
        client = resources.redis

        async def cache() -> bool:
            return bool(await client.ping())

        checks["cache"] = cache
    return checks


async def _sample_consumer_lag(resources: Resources, every_seconds: float = 5.0) -> None:
    """Keep `creatorflow_consumer_lag` current for the partitions this process holds: each
    partition's end, asked of the broker, less the group's committed offset (what is in the
    database; offsets are committed after it). Asked, not taken from fetches, because a
    consumer whose handler is blocked (its database away) fetches nothing, and the backlog
    must grow in the metric all the same. A partition is dropped when it is revoked; one the
    broker does not answer for keeps its last value."""
    reported: set[tuple[str, str]] = set()
    while True:
        current: set[tuple[str, str]] = set()
        for consumer in resources.kafka_consumers():
            if consumer is not None:
                current |= await _lag_of(consumer, reported)
        for labels in reported - current:
            CONSUMER_LAG.remove(*labels)
        reported = current
        await asyncio.sleep(every_seconds)


async def _lag_of(
    consumer: AIOKafkaConsumer, reported: set[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Set the lag of `consumer`'s partitions; returns the labels shown for them."""
    held = {(tp.topic, str(tp.partition)): tp for tp in consumer.assignment()}
    shown = set(held) & reported
    try:
        ends = await asyncio.wait_for(consumer.end_offsets(list(held.values())), 2.0)
        starts: dict[TopicPartition, int] = {}
        for labels, tp in held.items():
            done = await asyncio.wait_for(consumer.committed(tp), 1.0)
            if done is None:
                # Nothing committed yet: the group reads the partition from its start.
                if not starts:
                    starts = await asyncio.wait_for(
                        consumer.beginning_offsets(list(held.values())), 2.0
                    )
                done = starts[tp]
            # The embedded broker answers a partition's end as its last batch's first offset
            # plus one: the high watermark of the last fetch may be further. (Asked only of
            # a partition still held: the awaits above may have seen it revoked.)
            fetched = consumer.highwater(tp) if tp in consumer.assignment() else None
            end = max(ends[tp], fetched or 0)
            CONSUMER_LAG.labels(*labels).set(max(0, end - done))
            shown.add(labels)
    except Exception as error:
        # The broker away, the assignment just changed: the rest next time, and what was
        # shown stays known, so a partition revoked later is still taken off.
        log.debug("consumer lag not sampled", error=repr(error))
    return shown


async def stop_step(
    service: str,
    what: str,
    close: Callable[[], Awaitable[Any]],
    force: Callable[[], Any] | None,
    seconds: float,
) -> None:
    """`close()`, given up after `seconds` (then `force()`, if given), and logged by name; a
    step that fails or hangs never keeps the later ones from running."""
    try:
        await asyncio.wait_for(close(), seconds)
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this stop itself is cancelled
        # A client's own task cancelled inside its close (aiokafka's fetcher does this when
        # the broker is gone) is that step failing, not a reason to skip the rest.
        log.warning("a step of stopping failed; going on", service=service, step=what,
                    error="CancelledError inside the client's close")  # fmt: skip
    except TimeoutError:
        log.error("a step of stopping did not finish; going on", service=service, step=what,
                  seconds=seconds)  # fmt: skip
        if force is not None:
            force()
    except Exception as error:
        log.warning("a step of stopping failed; going on", service=service, step=what,
                    error=f"{type(error).__name__}: {error}")  # fmt: skip


async def _supervised(service: str, loop: Background) -> None:
    """A background loop that fails is logged and restarted, never silently gone."""
    while True:
        try:
            await loop()
            return
        except asyncio.CancelledError:
            raise
        except Exception as error:
            pause = 1.0
            if is_transient(error):  # a dependency is down: say so, without a traceback
                log.warning(
                    "background loop waiting for a dependency",
                    service=service,
                    error=f"{type(error).__name__}: {error}",
                )
            elif isinstance(error, AUTHORIZATION_ERRORS):
                # Nothing to debug either: the ACLs lack a grant, which an operator may add
                # while we wait (`creatorflow kafka acls`).
                log.error(
                    "background loop waiting for Kafka ACLs",
                    service=service,
                    error=authorization_failure(error),
                )
                pause = 5.0
            else:
                log.exception("background loop failed; restarting", service=service)
            await asyncio.sleep(pause)


def run_service(
    name: str,
    setup: Setup,
    schema: ServiceSchema,
    *,
    uses_redis: bool = False,
    redis_required: bool = True,
) -> None:
    """`python -m services.<name>`: run until SIGINT or SIGTERM, then stop cleanly
    (`uses_redis`, `redis_required`: as `ServiceRuntime` takes them)."""
    configure_logging(name)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        runtime = ServiceRuntime(
            name, setup, schema=schema, uses_redis=uses_redis, redis_required=redis_required
        )
        # Start-up may wait without end (a migration lock held elsewhere, a consumer group
        # that never assigns partitions): a stop request cancels it, or the process would
        # outlive whoever replaced it, still joining the group.
        starting = asyncio.ensure_future(runtime.__aenter__())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            log.info("service stopped during start-up", service=name)
            return
        stopping.cancel()
        starting.result()  # a failed start-up raises here
        try:
            await stop.wait()
        finally:
            await runtime.__aexit__(None, None, None)

    try:
        asyncio.run(main())
    except ServiceConfigurationError as error:
        log.error(str(error), service=name)
        raise SystemExit(2) from error
    except MigrationError as error:
        # The database is not one this release can migrate: the message says what to do.
        log.error(f"could not migrate the database: {error}", service=name)
        raise SystemExit(2) from error
    except ValidationError as error:
        # The operator's to fix, as the CLI says it: the settings named, no traceback.
        log.error(f"invalid settings: {settings_problems(error)}", service=name)
        raise SystemExit(2) from error
    except AUTHORIZATION_ERRORS as error:
        # A consumer refused its topics or group at start: the ACLs lack a grant.
        log.error(
            "could not start: refused by Kafka's ACLs",
            service=name,
            error=authorization_failure(error),
        )
        raise SystemExit(2) from error
    except Exception as error:
        if not is_transient(error):
            raise
        # Nothing to debug here: a server is down or unreachable. Exit for the supervisor
        # (compose's restart policy) to try again, without a traceback.
        log.error(
            "could not start: a server is unreachable",
            service=name,
            error=f"{type(error).__name__}: {error}",
        )
        raise SystemExit(1) from error


async def _warn_of_settings_not_applied(bootstrap: str, security: BaseSecurity | None) -> None:
    """Log each setting an existing topic lacks (`creatorflow topics create` names them too):
    without LogAppendTime on campaign.deals, a brand's clock dates its cancellations."""
    try:
        lacking = await settings_not_applied(bootstrap, security)
    except Exception as error:  # a principal without DescribeConfigs: not this check's call
        log.info("topic settings not readable", error=repr(error))
        return
    for topic, key, wanted, found in lacking:
        log.warning(
            "topic lacks a setting: add it with kafka-configs.sh --alter --add-config",
            topic=str(topic),
            setting=f"{key}={wanted}",
            found=found,
        )
