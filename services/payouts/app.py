"""Wiring: one consumer group over the six input topics, the dispatcher, the schedules and
the outbox relay. `python -m services.payouts` runs `setup`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Final

import redis.asyncio as redis
import structlog
import uvicorn
from starlette.types import ASGIApp

from services.payouts import handlers
from services.payouts.brand_api.keys import BrandKeys
from services.payouts.brand_api.web import ApiConfig, brand_api_app
from services.payouts.creator_page.access import CreatorAccess
from services.payouts.creator_page.web import PageConfig, page_app
from services.payouts.destinations import DestinationCipher, UnreadableDestination
from services.payouts.dispatcher import Clock, Dispatcher, utc_now
from services.payouts.domain.lifecycle import RetrySchedule
from services.payouts.fixed_window import Limit
from services.payouts.handlers import PayoutPolicy
from services.payouts.notifications import email_sender
from services.payouts.providers import PayoutProvider
from services.payouts.providers.paypal import PayPalPayouts
from services.payouts.providers.rails import Rails, largest_call
from services.payouts.providers.sandbox import SandboxProvider
from services.payouts.providers.stripe import StripeTransfers
from services.payouts.providers.wise import WiseTransfers
from services.payouts.rate_limit import RailLimit, RateLimiter, RedisBuckets
from services.payouts.schedules import (
    CommissionSchedule,
    CoolOffReleases,
    LedgerCheck,
    SettlementPoller,
)
from services.payouts.settings import PayoutsSettings
from services.payouts.store.port import PayoutsStore, PayoutsTransaction
from services.payouts.store.postgres import OUTBOX_PRODUCER, PostgresPayoutsStore
from services.payouts.webhooks import PREFIX as WEBHOOKS_PREFIX
from services.payouts.webhooks import Nonces, WebhookRoutes
from shared.contract.events import Topic
from shared.runtime.outbox import OutboxRelay
from shared.runtime.service import Background, Resources, ServiceConfigurationError, Setup
from shared.runtime.unit_of_work import UnitsOfWork

log = structlog.get_logger(__name__)

SERVICE: Final = "payouts"
# The consumer group; the inbox is the store's (its consumer name, CONSUMER in store/postgres.py).
GROUP_ID: Final = SERVICE
INPUT_TOPICS: Final = (
    Topic.CAMPAIGN_DEALS,
    Topic.BRAND_FUNDING,
    Topic.DELIVERABLES_CONFIRMED,
    Topic.CREATOR_PAYOUT_ACCOUNTS,
    Topic.TRACKING_ATTRIBUTION,
    Topic.FX_RATES,
)
# Published through the outbox; the registry routes each event type to its topic.
OUTPUT_TOPICS: Final = (Topic.PAYOUTS_STATUS,)
# A batch is one transaction; confirmations come a few at a time, so batches stay small and
# latency low, and a burst is still taken in a few transactions.
MAX_RECORDS: Final = 500


def policy_from(settings: PayoutsSettings, fx_max_move: float = 0.25) -> PayoutPolicy:
    """The handlers' policy; `fx_max_move` is the process-wide `FX_MAX_RATE_MOVE` (every
    service judges the FX snapshots it stores by the same rule)."""
    return PayoutPolicy(
        platform_fee_bps=settings.platform_fee_bps,
        fee_schedule=settings.fee_schedule,
        retry=RetrySchedule(
            settings.retry_initial_seconds, settings.retry_max_seconds, settings.max_attempts
        ),
        lease=timedelta(seconds=settings.dispatch_lease_seconds),
        commission_grace=timedelta(seconds=settings.commission_grace_seconds),
        commission_adjustable=timedelta(days=settings.commission_adjustment_days),
        fx_max_move=Decimal(str(fx_max_move)),
        destination_cool_off=timedelta(seconds=settings.destination_cooloff_seconds),
        fx_max_age=timedelta(seconds=settings.fx_max_age_seconds),
    )


def rails_from(settings: PayoutsSettings) -> Rails:
    """The rails of the settings: the sandbox for every method, or each configured rail."""
    if settings.provider == "sandbox":
        return Rails.single(
            SandboxProvider(
                latency_seconds=settings.sandbox_latency_ms / 1000,
                failure_rate=settings.sandbox_failure_rate,
                seed=settings.sandbox_seed,
                settle_after_seconds=settings.sandbox_settle_after_seconds,
            )
        )
    timeout = settings.provider_timeout_seconds
    rails: dict[str, PayoutProvider] = {}
    if settings.stripe_api_key is not None:
        rails["stripe"] = StripeTransfers(
            settings.stripe_api_key.get_secret_value(),
            base_url=settings.stripe_api_base,
            timeout_seconds=timeout,
        )
    if settings.paypal_client_id is not None and settings.paypal_client_secret is not None:
        rails["paypal"] = PayPalPayouts(
            settings.paypal_client_id.get_secret_value(),
            settings.paypal_client_secret.get_secret_value(),
            base_url=settings.paypal_api_base,
            timeout_seconds=timeout,
        )
    if settings.wise_api_token is not None and settings.wise_profile_id is not None:
        rails["wise"] = WiseTransfers(
            settings.wise_api_token.get_secret_value(),
            settings.wise_profile_id,
            base_url=settings.wise_api_base,
            timeout_seconds=timeout,
        )
    return Rails(rails)


def rail_limits(settings: PayoutsSettings) -> dict[str, RailLimit]:
    """Each rail's rate limit (requests a second) and the most requests one of its calls makes."""
    limits = {
        "stripe": settings.stripe_rate_limit,
        "paypal": settings.paypal_rate_limit,
        "wise": settings.wise_rate_limit,
    }
    return {rail: RailLimit(rate, largest_call(rail)) for rail, rate in limits.items()}


def rate_limiter(settings: PayoutsSettings, resources: Resources) -> RateLimiter:
    """The rails' limiter: buckets shared in the service's Redis, or local ones without it."""
    return RateLimiter(
        None if resources.redis is None else RedisBuckets(resources.redis),
        rail_limits(settings),
        expected_replicas=settings.expected_replicas,
        recheck_seconds=settings.rate_limit_recheck_seconds,
    )


def rail_batches(settings: PayoutsSettings, limiter: RateLimiter | None) -> dict[str, int]:
    """The most payouts of each limited rail one round claims: what that rail takes, at its
    local rate, within half the lease, shared by the rounds run at once, so none waits for a
    token until another replica may take it. Each rail by its own rate: a slow rail must not
    shrink the rounds of a fast one (a round of mostly Stripe payouts is not Wise's)."""
    if limiter is None:
        return {}
    within = settings.dispatch_lease_seconds / 2 / settings.dispatch_rounds
    limits = {rail: limiter.limit(rail) for rail in ("stripe", "paypal", "wise")}
    return {
        rail: max(
            1, int(limit.local(settings.expected_replicas).rate * within / limit.largest_call)
        )
        for rail, limit in limits.items()
        if limit is not None
    }


async def open_destinations(
    db: PostgresPayoutsStore, settings: PayoutsSettings
) -> DestinationCipher:
    """The destination cipher, checked against what is stored: a changed key would make every
    payout fail at the provider call, so the service refuses to start instead (unless the old
    key is its previous one, during a rotation)."""
    destinations = DestinationCipher.from_setting(
        settings.destination_key, settings.destination_key_previous
    )
    try:
        destinations.check_key_ids(await db.destination_key_ids())
    except UnreadableDestination as error:
        raise ServiceConfigurationError(str(error)) from None
    sealed = await db.seal_plain_destinations(destinations.seal)
    if sealed:
        log.info("payout destinations encrypted", accounts=sealed)
    return destinations


def units_of_work(
    db: PayoutsStore,
    policy: PayoutPolicy,
    on_scheduled: Callable[[], None],
    *,
    destinations: DestinationCipher,
    clock: Clock = utc_now,
) -> UnitsOfWork[PayoutsTransaction]:
    """The consumer's batch handler: one unit of work per batch (inbox claim, locks, handlers,
    outbox: shared.runtime.unit_of_work), waking the dispatcher after a commit that scheduled
    payouts."""
    handler = handlers.consume(
        policy, seal=destinations.seal, reseal=destinations.reseal, on_scheduled=on_scheduled
    )
    return UnitsOfWork(SERVICE, db, handler, clock=clock)


@dataclass
class PayoutsService:
    """The running parts, for tests and benchmarks to observe."""

    settings: PayoutsSettings
    db: PostgresPayoutsStore
    # The provider every method goes to (the sandbox, or one given to `make_setup`); None
    # when each method goes to its own rail.
    provider: PayoutProvider | None
    rails: Rails
    dispatcher: Dispatcher
    relay: OutboxRelay
    # The rails' rate limiter; None when nothing is limited (the sandbox, a test's fake).
    limiter: RateLimiter | None = None


def make_setup(
    settings: PayoutsSettings | None = None,
    provider: PayoutProvider | Rails | None = None,
    *,
    group_id: str = GROUP_ID,
    rate_limited: bool | None = None,
    on_started: Callable[[PayoutsService], None] | None = None,
) -> Setup:
    """The service's setup for `ServiceRuntime`; `settings` and `provider` default to the
    environment's. `provider` is one provider for every method, or the `Rails` to route by
    method.

    `group_id` is the Kafka consumer group (offsets); the inbox stays `payouts` whatever the
    group, so a new group, like an offset reset, replays history without paying twice.

    `rate_limited`: whether calls wait for the rails' rate limits; by default the real rails
    do, and one provider for every method (the sandbox, a test's fake) does not.

    `on_started` is given the running parts once they are set up (tests and benchmarks
    observe them).
    """

    async def setup(resources: Resources) -> list[Background]:
        config = settings or PayoutsSettings()
        policy = policy_from(config, resources.settings.fx_max_rate_move)
        db = PostgresPayoutsStore(resources.pool)
        destinations = await open_destinations(db, config)
        rails, single, limiter = _rails(config, provider, rate_limited, resources)
        dispatcher = _dispatcher(db, rails, policy, destinations, config, limiter)
        consume = resources.consume(
            INPUT_TOPICS,
            group_id=group_id,
            units=units_of_work(db, policy, dispatcher.wake, destinations=destinations),
            max_records=MAX_RECORDS,
            batch_timeout_ms=config.batch_timeout_ms,
            fetch_max_wait_ms=config.fetch_max_wait_ms,
        )
        relay = resources.outbox_relay(OUTBOX_PRODUCER)
        resources.http_routes[WEBHOOKS_PREFIX] = _webhook_routes(db, policy, config, resources)
        if on_started is not None:
            on_started(PayoutsService(config, db, single, rails, dispatcher, relay, limiter))
        return [
            *public_servers(resources, config, db),
            consume,
            relay.run,
            dispatcher.run,
            lambda: db.listen_due(dispatcher.wake),
            *_schedules(db, rails, policy, config, dispatcher.wake),
            *email_sender(resources.pool, db, config, utc_now),
            lambda: _close_at_shutdown(rails),
            *([] if limiter is None else [limiter.watch]),
        ]

    return setup


def _dispatcher(
    db: PostgresPayoutsStore,
    rails: Rails,
    policy: PayoutPolicy,
    destinations: DestinationCipher,
    config: PayoutsSettings,
    limiter: RateLimiter | None,
) -> Dispatcher:
    return Dispatcher(
        db,
        rails,
        policy,
        destinations=destinations,
        batch=config.dispatch_batch,
        rail_batches=rail_batches(config, limiter),
        idle_seconds=config.dispatch_idle_seconds,
        rounds=config.dispatch_rounds,
    )


def _rails(
    settings: PayoutsSettings,
    given: PayoutProvider | Rails | None,
    rate_limited: bool | None,
    resources: Resources,
) -> tuple[Rails, PayoutProvider | None, RateLimiter | None]:
    """The rails to pay through, the one provider behind them if there is one, and their
    rate limiter if calls wait for one."""
    rails, single = _given_rails(settings, given)
    if not (rate_limited or (rate_limited is None and not rails.every_method)):
        return rails, single, None
    limiter = rate_limiter(settings, resources)
    return rails.limited(limiter), single, limiter


def _given_rails(
    settings: PayoutsSettings, given: PayoutProvider | Rails | None
) -> tuple[Rails, PayoutProvider | None]:
    if isinstance(given, Rails):
        return given, None
    if given is not None:
        return Rails.single(given), given
    rails = rails_from(settings)
    sandbox = settings.provider == "sandbox"
    return rails, next(iter(rails.providers())) if sandbox else None


def _webhook_routes(
    db: PostgresPayoutsStore, policy: PayoutPolicy, settings: PayoutsSettings, resources: Resources
) -> WebhookRoutes:
    """`POST /webhooks/<rail>` on the service's HTTP server (services/payouts/webhooks.py)."""
    return WebhookRoutes(
        db,
        policy,
        settings.webhook_secrets(),
        tolerance_seconds=settings.webhook_tolerance_seconds,
        nonces=Nonces(resources.redis, settings.webhook_nonce_ttl_seconds),
    )


async def _close_at_shutdown(rails: Rails) -> None:
    """Close the rails' clients when the service stops."""
    try:
        await asyncio.Event().wait()
    finally:
        await rails.aclose()


def public_servers(
    resources: Resources, settings: PayoutsSettings, db: PostgresPayoutsStore
) -> list[Background]:
    """What faces the internet, each on a port of its own when set: the creator payout page
    and the brand API."""
    return [*creator_page(resources, settings), *brand_api(resources, settings, db)]


def creator_page(resources: Resources, settings: PayoutsSettings) -> list[Background]:
    """The creator payout page's server, when PAYOUTS_PAGE_PORT is set (docs/architecture.md
    §11): on a port of its own, so the page and the operators' /metrics are exposed apart.
    Its Redis client connects lazily: a Redis outage refuses link redemptions (503), never
    the service's start or its payouts."""
    if settings.page_port is None:
        return []
    if resources.urls.redis_url is None:
        raise ServiceConfigurationError(
            "PAYOUTS_PAGE_PORT needs Redis for the page's rate limits: set REDIS_URL"
        )
    cache = redis.Redis.from_url(resources.urls.redis_url, socket_connect_timeout=2)
    config = PageConfig(session_lifetime=timedelta(hours=settings.page_session_hours))
    app = page_app(resources.pool, cache, config)
    host, port = settings.page_host, settings.page_port

    async def serve() -> None:
        try:
            await serve_asgi(app, host, port)
        finally:
            await cache.aclose()

    async def forget_expired() -> None:
        access = CreatorAccess(resources.pool)
        while True:
            await access.forget_expired(utc_now())
            await asyncio.sleep(3600)

    return [serve, forget_expired]


def brand_api(
    resources: Resources, settings: PayoutsSettings, db: PostgresPayoutsStore
) -> list[Background]:
    """The brand API's server, when PAYOUTS_BRAND_API_PORT is set (docs/architecture.md §12):
    on a port of its own, for brands on the internet. Like the creator page, its Redis client
    connects lazily: with Redis down the API answers 503, and payouts go on."""
    if settings.brand_api_port is None:
        return []
    if resources.urls.redis_url is None:
        raise ServiceConfigurationError(
            "PAYOUTS_BRAND_API_PORT needs Redis for the API's rate limits: set REDIS_URL"
        )
    cache = redis.Redis.from_url(
        resources.urls.redis_url, socket_connect_timeout=2, socket_timeout=2
    )
    limit = Limit(settings.brand_api_rate_limit, settings.brand_api_rate_window_seconds)
    app = brand_api_app(db, BrandKeys(resources.pool), cache, ApiConfig(per_key=limit))
    host, port = settings.brand_api_host, settings.brand_api_port

    async def serve() -> None:
        try:
            await serve_asgi(app, host, port)
        finally:
            await cache.aclose()

    return [serve]


async def serve_asgi(app: ASGIApp, host: str, port: int) -> None:
    """Serve `app` with uvicorn until cancelled, then let open requests finish."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
    )
    task = asyncio.ensure_future(server.serve())
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        server.should_exit = True
        await task
        raise


def _schedules(
    db: PostgresPayoutsStore,
    rails: Rails,
    policy: PayoutPolicy,
    settings: PayoutsSettings,
    wake: Callable[[], None],
) -> list[Background]:
    """The periodic work: commissions falling due, settlement polls, cool-offs ending, and
    the ledger check."""
    return [
        CommissionSchedule(
            db, policy, interval_seconds=settings.commission_check_seconds, on_scheduled=wake
        ).run,
        SettlementPoller(
            db,
            rails,
            policy,
            interval_seconds=settings.settle_check_seconds,
            longest_seconds=settings.settle_check_max_seconds,
        ).run,
        CoolOffReleases(
            db, policy, interval_seconds=settings.cooloff_check_seconds, on_scheduled=wake
        ).run,
        LedgerCheck(db, interval_seconds=settings.ledger_check_seconds).run,
    ]


setup: Final = make_setup()
