"""Wiring of the matching service: one consumer group over its six input topics, and in
every replica a follower of the topics its memory is made of.

Both hand their batches to the same units of work (`handlers.py`: one per run of one event
type). Replicas share the group, so each request is answered once, but each replica keeps the
whole index: its `TopicFollower` (shared.runtime.follow) reads every partition of the
profile, FX and attribution topics. The group consumer and the follower handle such an event
alike: the inbox claim lets one of them (in any replica) write it, the other's claim waits for
that commit, and both then take the state from the database. Before answering, a replica
reads those topics to their end, so a request sees every profile published before it.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Final

from services.matching.domain.index import CreatorIndex
from services.matching.handlers import SOURCE, MatchingHandlers, MatchingUnits
from services.matching.settings import MatchingSettings
from services.matching.state import MatchingService, MatchingState
from services.matching.store.postgres import PostgresMatchingStore
from shared.contract.events import Topic
from shared.runtime.follow import TopicFollower
from shared.runtime.kafka import kafka_security
from shared.runtime.service import Background, Resources, Setup

SERVICE: Final = "matching"
GROUP_ID: Final = SERVICE  # the consumer group
BATCH_TIMEOUT_MS: Final = 20  # how long a batch may wait to fill once it has records
INPUT_TOPICS: Final = (
    Topic.CREATOR_PROFILES,
    Topic.BRAND_MATCH_REQUESTS,
    Topic.MATCH_FEEDBACK,
    Topic.TRACKING_ATTRIBUTION,
    Topic.FX_RATES,
    Topic.CAMPAIGN_DEALS,
)
# What every replica keeps in memory: each replica also reads these whole (its follower).
FOLLOWED_TOPICS: Final = (Topic.CREATOR_PROFILES, Topic.FX_RATES, Topic.TRACKING_ATTRIBUTION)
# Published through the outbox; the registry routes each event type to its topic.
OUTPUT_TOPICS: Final = (Topic.MATCH_SUGGESTIONS,)

__all__ = ["INPUT_TOPICS", "OUTPUT_TOPICS", "SERVICE", "SOURCE", "make_setup", "setup"]


def make_setup(
    *,
    settings: MatchingSettings | None = None,
    started: Callable[[MatchingService], None] | None = None,
) -> Setup:
    """The service's setup for `shared.runtime.service.ServiceRuntime`: settings from the
    environment (MATCHING_*) unless given; `started` is handed the running service (its
    memory) once its index is rebuilt."""

    async def setup(resources: Resources) -> Sequence[Background]:
        chosen = settings or MatchingSettings()
        store = PostgresMatchingStore(resources.pool, consumer=SERVICE)
        service = MatchingService(store, chosen, MatchingState(CreatorIndex(seed=chosen.seed)))
        handlers = MatchingHandlers(
            service, store, fx_max_move=Decimal(str(resources.settings.fx_max_rate_move))
        )
        units = MatchingUnits(SERVICE, store, handlers)
        follower = TopicFollower(
            resources.urls.kafka_bootstrap_servers,
            kafka_security(resources.settings),
            FOLLOWED_TOPICS,
            handler=units,
            policy=resources.consumer,
            client_id=f"{SERVICE}-follower",
            max_records=chosen.batch_max_records,
        )
        await follower.start()  # at the topics' ends: what came before is in the database
        handlers.catch_up = follower.catch_up
        await service.rebuild()
        keep_out_of_the_collector()
        consume = resources.consume(
            INPUT_TOPICS,
            group_id=GROUP_ID,
            units=units,
            max_records=chosen.batch_max_records,
            batch_timeout_ms=BATCH_TIMEOUT_MS,
            fetch_max_wait_ms=chosen.fetch_max_wait_ms,
        )
        if started is not None:
            started(service)
        # The outbox relay publishes the suggestions; the group consumer (pipelined batches,
        # as in every service); the retraining schedule; the follower that keeps this
        # replica's index current.
        relay = resources.outbox_relay(SERVICE)
        return [relay.run, service.retrain_loop, consume, follower.run]

    return setup


def keep_out_of_the_collector() -> None:
    """Move what the process holds now, the index just rebuilt above all, out of the cyclic
    collector's sight: at 100k creators it is ~500k objects (profiles' dicts, rate cards)
    that every full collection walked, 0.2-1 s each on a shared 2-core machine, a pause in
    the middle of whichever requests were being answered. Reference counting still frees
    what the index drops; only a cycle among these objects would stay."""
    gc.collect()
    gc.freeze()


setup = make_setup()
